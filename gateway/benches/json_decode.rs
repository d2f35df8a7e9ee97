//! JSON tensor decoding speed: the gateway's decoder (`codec::request::decode`: the `data` text
//! parsed straight into tensor bytes) against the previous approach (a `serde_json::Value` tree,
//! flattened, then converted), on the body a stock Python client sends for one ResNet-18 image
//! (150,528 FP32 values written as f64, ~3 MB) and for one MLP row.
//!
//! `cargo bench -p mark-gateway --bench json_decode` prints ms per body and MB/s. Not a test:
//! nothing is asserted about speed.

use std::time::Instant;

use bytes::Bytes;
use mark_gateway::codec::request::decode;
use serde_json::Value;

fn body(shape: &[usize]) -> Bytes {
    let n: usize = shape.iter().product();
    let data: Vec<Value> = (0..n)
        .map(|i| Value::from(f64::from((i * 7919 % 256) as f32 / 255.0)))
        .collect();
    let v = serde_json::json!({"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": data}]});
    Bytes::from(v.to_string())
}

/// The decoder before issue 11: a Value tree, flattened, each element converted.
fn value_tree(body: &Bytes) -> Vec<u8> {
    fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
            other => out.push(other),
        }
    }
    let v: Value = serde_json::from_slice(body).expect("valid JSON");
    let mut flat = Vec::new();
    flatten(&v["inputs"][0]["data"], &mut flat);
    let mut raw = Vec::with_capacity(flat.len() * 4);
    for x in flat {
        let f = x.as_f64().map(|x| x as f32).filter(|x| x.is_finite());
        raw.extend_from_slice(&f.expect("number").to_le_bytes());
    }
    raw
}

fn time(what: &str, bytes: usize, reps: u32, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    let per = t.elapsed().as_secs_f64() / f64::from(reps);
    println!(
        "{what:<44} {:>9.3} ms/body {:>8.0} MB/s",
        per * 1e3,
        bytes as f64 / per / 1e6
    );
    per
}

fn main() {
    for (name, shape, reps) in [
        ("resnet18 [1,3,224,224]", vec![1, 3, 224, 224], 20),
        ("mlp [1,784]", vec![1, 784], 2000),
    ] {
        let b = body(&shape);
        println!("{name}: {} bytes of JSON", b.len());
        let ours = decode(&b, None).expect("decodes").inputs.remove(0).data;
        assert_eq!(
            ours,
            mark_gateway::tensor::TensorData::Raw(value_tree(&b)),
            "both decoders read the same values"
        );
        let new = time(
            "  gateway decoder (raw text -> bytes)",
            b.len(),
            reps,
            || {
                std::hint::black_box(decode(&b, None).expect("decodes"));
            },
        );
        let old = time(
            "  Value tree, flatten, convert (before)",
            b.len(),
            reps,
            || {
                std::hint::black_box(value_tree(&b));
            },
        );
        println!("  speed-up {:.2}x", old / new);
        if std::env::var("PARTS").is_ok() {
            let sk = mark_gateway::codec::json_skim::skim(&b).unwrap();
            time("  (part) skim", b.len(), reps, || {
                std::hint::black_box(mark_gateway::codec::json_skim::skim(&b).unwrap());
            });
            let r = sk.spans[0].clone().unwrap();
            let text = std::str::from_utf8(&b[r]).unwrap();
            let n: usize = shape.iter().product();
            time("  (part) elements", text.len(), reps, || {
                std::hint::black_box(
                    mark_gateway::codec::json_data::decode_data(
                        "x",
                        mark_gateway::tensor::DType::Fp32,
                        text,
                        n,
                    )
                    .unwrap(),
                );
            });
        }
    }
}
