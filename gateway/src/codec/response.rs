//! Encoding a v2 infer response: JSON `data`, or the binary section for outputs asked for in
//! binary (`binary_data_size`, `Inference-Header-Content-Length`).

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::Value;

use super::binary_form;
use crate::tensor::{DType, Tensor, TensorData};

/// A tensor's elements as a JSON array (BYTES as UTF-8 strings, lossily).
pub struct Data<'a>(pub &'a Tensor);

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let mut seq = s.serialize_seq(Some(t.numel()))?;
        match &t.data {
            TensorData::Strings(v) => {
                for b in v {
                    seq.serialize_element(&String::from_utf8_lossy(b))?;
                }
            }
            TensorData::Raw(r) => match t.dtype {
                DType::Fp32 => r.chunks_exact(4).try_for_each(|c| {
                    seq.serialize_element(&f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                })?,
                DType::Fp64 => r.chunks_exact(8).try_for_each(|c| {
                    seq.serialize_element(&f64::from_le_bytes(c.try_into().expect("8")))
                })?,
                DType::Int64 => r.chunks_exact(8).try_for_each(|c| {
                    seq.serialize_element(&i64::from_le_bytes(c.try_into().expect("8")))
                })?,
                DType::Int32 => r.chunks_exact(4).try_for_each(|c| {
                    seq.serialize_element(&i32::from_le_bytes(c.try_into().expect("4")))
                })?,
                DType::Uint8 => r.iter().try_for_each(|b| seq.serialize_element(b))?,
                DType::Bool => r
                    .iter()
                    .try_for_each(|b| seq.serialize_element(&(*b != 0)))?,
                DType::Bytes => {}
            },
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct OutputOut<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data<'a>>,
}

#[derive(Serialize)]
struct ResponseOut<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    outputs: Vec<OutputOut<'a>>,
}

/// An encoded response: body, and the JSON header length when a binary section follows.
pub struct Encoded {
    /// Whole body.
    pub body: Vec<u8>,
    /// `Inference-Header-Content-Length` value when binary outputs are present.
    pub header_len: Option<usize>,
}

/// Encodes the chosen outputs (each with its binary flag).
pub fn encode(
    model: &str,
    version: &str,
    id: Option<&Value>,
    outputs: &[(&Tensor, bool)],
) -> Encoded {
    let mut binary = Vec::new();
    let outs = outputs
        .iter()
        .map(|(t, bin)| {
            if *bin {
                let b = binary_form(t);
                let size = b.len();
                binary.extend_from_slice(&b);
                OutputOut {
                    name: &t.name,
                    datatype: t.dtype.as_v2(),
                    shape: &t.shape,
                    parameters: Some(serde_json::json!({ "binary_data_size": size })),
                    data: None,
                }
            } else {
                OutputOut {
                    name: &t.name,
                    datatype: t.dtype.as_v2(),
                    shape: &t.shape,
                    parameters: None,
                    data: Some(Data(t)),
                }
            }
        })
        .collect();
    let mut body = serde_json::to_vec(&ResponseOut {
        model_name: model,
        model_version: version,
        id,
        outputs: outs,
    })
    .expect("serializable");
    if binary.is_empty() && !outputs.iter().any(|(_, b)| *b) {
        return Encoded {
            body,
            header_len: None,
        };
    }
    let header_len = body.len();
    body.extend_from_slice(&binary);
    Encoded {
        body,
        header_len: Some(header_len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_json_and_binary() {
        let t = Tensor::from_f32("y", vec![2], &[0.5, 1.0]);
        let e = encode("m", "1", None, &[(&t, false)]);
        assert!(e.header_len.is_none());
        let v: Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(v["outputs"][0]["data"], serde_json::json!([0.5, 1.0]));
        let e = encode("m", "1", None, &[(&t, true)]);
        let n = e.header_len.unwrap();
        assert_eq!(&e.body[n..], &binary_form(&t));
    }
}
