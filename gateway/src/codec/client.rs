//! The client side of the v2 wire format: what the remote backends (fleet workers, Lambda) and
//! `mark bench` send, and how a binary answer is read back. Answers from a backend are trusted no
//! more than requests from a client: every size is checked against the bytes that carry it.

use serde_json::{json, Value};

use super::response::Data;
use super::{binary_form, split_strings};
use crate::tensor::{DType, Tensor, TensorData};

/// A backend's answer that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not a well-formed v2 binary response.
    #[error("answered garbage: {0}")]
    Malformed(String),
    /// Well-formed, but not an answer to this batch (names, types, shapes or sizes differ).
    #[error("answered a wrong batch: {0}")]
    WrongBatch(String),
}

/// A v2 request body for `inputs` with JSON `data`.
pub fn encode_json_request(inputs: &[Tensor]) -> Vec<u8> {
    let ins: Vec<Value> = inputs
        .iter()
        .map(|t| {
            json!({"name": t.name, "shape": t.shape, "datatype": t.dtype.as_v2(),
                   "data": serde_json::to_value(Data(t)).expect("serializable")})
        })
        .collect();
    json!({ "inputs": ins }).to_string().into_bytes()
}

/// A v2 request body with every input in the binary section and binary outputs asked for, and
/// the length of its JSON header (`Inference-Header-Content-Length`).
pub fn encode_binary_request(inputs: &[Tensor]) -> (Vec<u8>, usize) {
    let mut bin = Vec::new();
    let ins: Vec<Value> = inputs
        .iter()
        .map(|t| {
            let b = binary_form(t);
            let v = json!({"name": t.name, "shape": t.shape, "datatype": t.dtype.as_v2(),
                           "parameters": {"binary_data_size": b.len()}});
            bin.extend_from_slice(&b);
            v
        })
        .collect();
    let header = json!({"inputs": ins, "parameters": {"binary_data_output": true}}).to_string();
    let n = header.len();
    let mut body = header.into_bytes();
    body.extend_from_slice(&bin);
    (body, n)
}

/// Decodes a binary v2 response into its output tensors; any malformed part is an error.
pub fn decode_response(body: &[u8], header_len: Option<usize>) -> Result<Vec<Tensor>, WireError> {
    let bad = |m: String| WireError::Malformed(m);
    let n = header_len.unwrap_or(body.len());
    if n > body.len() {
        return Err(bad(format!(
            "header length {n} exceeds the {}-byte answer",
            body.len()
        )));
    }
    let head: Value = serde_json::from_slice(&body[..n]).map_err(|e| bad(e.to_string()))?;
    let mut rest = &body[n..];
    let mut out = Vec::new();
    let outputs = head["outputs"]
        .as_array()
        .ok_or_else(|| bad("no outputs".into()))?;
    for o in outputs {
        let name = o["name"]
            .as_str()
            .ok_or_else(|| bad("output without name".into()))?
            .to_string();
        let dtype = DType::from_v2(o["datatype"].as_str().unwrap_or(""))
            .ok_or_else(|| bad(format!("output '{name}': bad datatype")))?;
        let shape = o["shape"]
            .as_array()
            .ok_or_else(|| bad(format!("output '{name}': no shape")))?
            .iter()
            .map(|d| d.as_i64())
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| bad(format!("output '{name}': shape holds a non-integer")))?;
        let size = o["parameters"]["binary_data_size"]
            .as_u64()
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| bad(format!("output '{name}' not binary")))?;
        if size > rest.len() {
            return Err(bad(format!("output '{name}': truncated binary output")));
        }
        let (mine, tail) = rest.split_at(size);
        rest = tail;
        let data = if dtype == DType::Bytes {
            let v =
                split_strings(mine, usize::MAX).map_err(|e| bad(format!("output '{name}'{e}")))?;
            TensorData::Strings(v)
        } else {
            TensorData::Raw(mine.to_vec())
        };
        out.push(Tensor {
            name,
            dtype,
            shape,
            data,
        });
    }
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} binary bytes not claimed by any output",
            rest.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::request::decode;
    use crate::codec::response::encode;

    fn strings() -> Tensor {
        Tensor {
            name: "text".into(),
            dtype: DType::Bytes,
            shape: vec![2],
            data: TensorData::Strings(vec![b"hello".to_vec(), b"".to_vec()]),
        }
    }

    #[test]
    fn what_the_client_encodes_the_server_decodes_json_and_binary() {
        let ins = vec![
            Tensor::from_f32("x", vec![2, 2], &[1.0, -2.5, 3.0, 0.0]),
            strings(),
        ];
        for binary in [false, true] {
            let (body, n) = if binary {
                let (b, n) = encode_binary_request(&ins);
                (b, Some(n))
            } else {
                (encode_json_request(&ins), None)
            };
            let r = decode(&bytes::Bytes::from(body), n).unwrap();
            // BYTES elements survive both forms (`mark bench --binary` once sent them empty)
            assert_eq!(r.inputs, ins, "binary = {binary}");
            assert_eq!(r.binary_default, binary);
        }
    }

    #[test]
    fn what_the_server_encodes_in_binary_the_client_decodes() {
        let outs = [
            Tensor::from_f32("y", vec![1, 3], &[0.5, 1.0, 2.0]),
            strings(),
        ];
        let e = encode("m", "1", None, &[(&outs[0], true), (&outs[1], true)]);
        assert_eq!(decode_response(&e.body, e.header_len).unwrap(), outs);
    }

    #[test]
    fn malformed_answers_are_errors() {
        let e = encode("m", "1", None, &[(&strings(), true)]);
        let n = e.header_len.unwrap();
        for (body, hlen, want) in [
            (&e.body[..], Some(e.body.len() + 1), "exceeds"),
            (&e.body[..e.body.len() - 1], Some(n), "truncated"),
            (&b"{}"[..], None, "no outputs"),
        ] {
            let err = decode_response(body, hlen).unwrap_err();
            assert!(matches!(err, WireError::Malformed(_)));
            assert!(err.to_string().contains(want), "{err}");
        }
        let mut extra = e.body.clone();
        extra.push(0);
        let err = decode_response(&extra, Some(n)).unwrap_err();
        assert!(
            err.to_string().contains("1 binary bytes not claimed"),
            "{err}"
        );
    }
}
