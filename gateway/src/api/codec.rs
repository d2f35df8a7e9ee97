//! Decode and encode stages of the v2 infer API: JSON tensors (flat or nested `data`) and the
//! binary tensor extension (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data`).

use bytes::Bytes;
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::tensor::{checked_numel, DType, Tensor, TensorData};

/// Most inputs, or outputs asked for, in one request (models have a handful; the cap bounds the
/// work of the name checks).
pub const MAX_TENSORS: usize = 256;
/// Most dimensions of one tensor.
pub const MAX_RANK: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestJson {
    id: Option<Value>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputJson>,
    #[serde(default)]
    outputs: Vec<OutputJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// An output the client asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
    /// Return it in the binary section.
    pub binary: bool,
}

/// A decoded infer request.
#[derive(Debug)]
pub struct InferRequest {
    /// Echoed in the response.
    pub id: Option<Value>,
    /// Inputs as sent (validated against the model by the admit stage).
    pub inputs: Vec<Tensor>,
    /// Outputs asked for; empty means all.
    pub outputs: Vec<RequestedOutput>,
    /// `binary_data_output` request parameter: default for outputs not listed.
    pub binary_default: bool,
}

fn flag(params: &Map<String, Value>, key: &str) -> bool {
    params.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

fn parse_json_data(
    name: &str,
    dtype: DType,
    data: &Value,
    expected: usize,
) -> Result<TensorData, ApiError> {
    // never sized from the client's shape alone: at most one slot per element actually sent
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    if flat.len() != expected {
        return Err(ApiError::bad_request(format!(
            "input '{name}' has {} elements in 'data' but its shape holds {expected}",
            flat.len()
        )));
    }
    let bad = |i: usize, v: &Value| {
        ApiError::bad_request(format!(
            "input '{name}': data[{i}] = {v} is not a valid {dtype} value"
        ))
    };
    if dtype == DType::Bytes {
        let mut s = Vec::with_capacity(flat.len());
        for (i, v) in flat.iter().enumerate() {
            s.push(v.as_str().ok_or_else(|| bad(i, v))?.as_bytes().to_vec());
        }
        return Ok(TensorData::Strings(s));
    }
    let mut raw = Vec::with_capacity(flat.len() * dtype.size().unwrap_or(1));
    for (i, v) in flat.iter().enumerate() {
        match dtype {
            DType::Fp32 => {
                // a JSON number beyond f32's range would silently become infinity
                let x = v
                    .as_f64()
                    .map(|x| x as f32)
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| bad(i, v))?;
                raw.extend_from_slice(&x.to_le_bytes())
            }
            DType::Fp64 => {
                raw.extend_from_slice(&v.as_f64().ok_or_else(|| bad(i, v))?.to_le_bytes())
            }
            DType::Int64 => {
                raw.extend_from_slice(&v.as_i64().ok_or_else(|| bad(i, v))?.to_le_bytes())
            }
            DType::Int32 => {
                let x = v
                    .as_i64()
                    .and_then(|x| i32::try_from(x).ok())
                    .ok_or_else(|| bad(i, v))?;
                raw.extend_from_slice(&x.to_le_bytes());
            }
            DType::Uint8 => raw.push(
                v.as_u64()
                    .and_then(|x| u8::try_from(x).ok())
                    .ok_or_else(|| bad(i, v))?,
            ),
            DType::Bool => raw.push(u8::from(v.as_bool().ok_or_else(|| bad(i, v))?)),
            DType::Bytes => unreachable!("handled above"),
        }
    }
    Ok(TensorData::Raw(raw))
}

fn parse_binary_data(
    name: &str,
    dtype: DType,
    bytes: &[u8],
    expected: usize,
) -> Result<TensorData, ApiError> {
    match dtype.size() {
        Some(es) => {
            if expected.checked_mul(es) != Some(bytes.len()) {
                return Err(ApiError::bad_request(format!(
                    "input '{name}' has {} bytes of binary data; {expected} {dtype} elements need {}",
                    bytes.len(),
                    expected as u128 * es as u128
                )));
            }
            Ok(TensorData::Raw(bytes.to_vec()))
        }
        None => {
            // each element has a 4-byte length prefix: never reserve more than the data can hold
            let mut out = Vec::with_capacity(expected.min(bytes.len() / 4));
            let mut rest = bytes;
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err(ApiError::bad_request(format!(
                        "input '{name}': truncated BYTES length prefix"
                    )));
                }
                let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if rest.len() < 4 + n {
                    return Err(ApiError::bad_request(format!(
                        "input '{name}': BYTES element longer than the data"
                    )));
                }
                if out.len() == expected {
                    return Err(ApiError::bad_request(format!(
                        "input '{name}' has more BYTES elements than its shape holds ({expected})"
                    )));
                }
                out.push(rest[4..4 + n].to_vec());
                rest = &rest[4 + n..];
            }
            if out.len() != expected {
                return Err(ApiError::bad_request(format!(
                    "input '{name}' has {} BYTES elements; its shape holds {expected}",
                    out.len()
                )));
            }
            Ok(TensorData::Strings(out))
        }
    }
}

/// Decodes a request body. `header_len` is `Inference-Header-Content-Length` when present: the JSON
/// header is that many bytes, the binary tensor data follows.
pub fn decode(body: &Bytes, header_len: Option<usize>) -> Result<InferRequest, ApiError> {
    let (json, mut binary) = match header_len {
        Some(n) if n > body.len() => {
            return Err(ApiError::bad_request(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )))
        }
        Some(n) => (&body[..n], &body[n..]),
        None => (&body[..], &body[..0]),
    };
    let req: RequestJson = serde_json::from_slice(json)
        .map_err(|e| ApiError::bad_request(format!("request is not valid v2 JSON: {e}")))?;
    if req.inputs.is_empty() {
        return Err(ApiError::bad_request("request has no inputs"));
    }
    if req.inputs.len() > MAX_TENSORS || req.outputs.len() > MAX_TENSORS {
        return Err(ApiError::bad_request(format!(
            "request has {} inputs and {} outputs; at most {MAX_TENSORS} of each are accepted",
            req.inputs.len(),
            req.outputs.len()
        )));
    }
    for (i, o) in req.outputs.iter().enumerate() {
        if req.outputs[..i].iter().any(|p| p.name == o.name) {
            return Err(ApiError::bad_request(format!(
                "output '{}' is requested more than once",
                o.name
            )));
        }
    }
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for i in req.inputs {
        let dtype = DType::from_v2(&i.datatype).ok_or_else(|| {
            ApiError::bad_request(format!(
                "input '{}' has datatype '{}'; supported: FP32, FP64, INT64, INT32, UINT8, BOOL, BYTES",
                i.name, i.datatype
            ))
        })?;
        if let Some(d) = i.shape.iter().find(|&&d| d < 0) {
            return Err(ApiError::bad_request(format!(
                "input '{}' has negative dimension {d} in shape {:?}",
                i.name, i.shape
            )));
        }
        if i.shape.len() > MAX_RANK {
            return Err(ApiError::bad_request(format!(
                "input '{}' has {} dimensions; at most {MAX_RANK} are accepted",
                i.name,
                i.shape.len()
            )));
        }
        // Nothing is sized from the shape beyond what the body holds (see the parsers): a shape
        // that promises more elements than were sent is refused by the count check that follows.
        let expected = checked_numel(&i.shape).ok_or_else(|| {
            ApiError::bad_request(format!(
                "input '{}' has shape {:?}, whose element count overflows",
                i.name, i.shape
            ))
        })?;
        let data = match (i.parameters.get("binary_data_size"), &i.data) {
            (Some(size), _) => {
                let size = size
                    .as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "input '{}': binary_data_size must be a non-negative integer",
                            i.name
                        ))
                    })?;
                if size > binary.len() {
                    return Err(ApiError::bad_request(format!(
                        "input '{}' declares binary_data_size {size} but only {} binary bytes remain",
                        i.name,
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                parse_binary_data(&i.name, dtype, mine, expected)?
            }
            (None, Some(data)) => parse_json_data(&i.name, dtype, data, expected)?,
            (None, None) => {
                return Err(ApiError::bad_request(format!(
                    "input '{}' has neither 'data' nor binary_data_size",
                    i.name
                )))
            }
        };
        inputs.push(Tensor {
            name: i.name,
            dtype,
            shape: i.shape,
            data,
        });
    }
    if !binary.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} bytes of binary data are not claimed by any input",
            binary.len()
        )));
    }
    let binary_default = flag(&req.parameters, "binary_data_output");
    let outputs = req
        .outputs
        .into_iter()
        .map(|o| RequestedOutput {
            binary: o
                .parameters
                .get("binary_data")
                .and_then(Value::as_bool)
                .unwrap_or(binary_default),
            name: o.name,
        })
        .collect();
    Ok(InferRequest {
        id: req.id,
        inputs,
        outputs,
        binary_default,
    })
}

struct Data<'a>(&'a Tensor);

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

fn binary_bytes(t: &Tensor) -> Vec<u8> {
    match &t.data {
        TensorData::Raw(r) => r.clone(),
        TensorData::Strings(s) => {
            let mut out = Vec::with_capacity(t.byte_len());
            for b in s {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            out
        }
    }
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
                let b = binary_bytes(t);
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
    fn nested_and_flat_json_decode_the_same() {
        let flat = r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#;
        let nested = r#"{"id":"a","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}]}"#;
        let a = decode(&Bytes::from(flat), None).unwrap();
        let b = decode(&Bytes::from(nested), None).unwrap();
        assert_eq!(a.inputs, b.inputs);
        assert_eq!(b.id, Some(Value::String("a".into())));
        assert_eq!(a.inputs[0].to_f32(), vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn binary_inputs_and_errors() {
        let header = r#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&7i32.to_le_bytes());
        body.extend_from_slice(&(-1i32).to_le_bytes());
        let r = decode(&Bytes::from(body.clone()), Some(header.len())).unwrap();
        assert_eq!(
            r.inputs[0].data,
            TensorData::Raw(body[header.len()..].to_vec())
        );
        assert!(r.outputs[0].binary);
        // short data
        let e = decode(
            &Bytes::from(body[..body.len() - 1].to_vec()),
            Some(header.len()),
        )
        .unwrap_err();
        assert!(e.message.contains("binary_data_size 8"), "{}", e.message);
    }

    #[test]
    fn errors_name_the_input() {
        let cases = [
            (
                r#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
                "input 'x' has 2 elements",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[1]}]}"#,
                "datatype 'FP16'",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":["a"]}]}"#,
                "not a valid INT32",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT32"}]}"#,
                "neither 'data'",
            ),
            (r#"{"inputs": ["#, "not valid v2 JSON"),
        ];
        for (body, want) in cases {
            let e = decode(&Bytes::from(body), None).unwrap_err();
            assert!(e.message.contains(want), "{body}: {}", e.message);
        }
    }

    #[test]
    fn hostile_sizes_are_refused_before_allocation() {
        let cases = [
            // would reserve 4 PiB of pointers (issue 9: aborted the process)
            (
                r#"{"inputs":[{"name":"input","shape":[1125899906842624],"datatype":"FP32","data":[0]}]}"#,
                "input 'input' has 1 elements in 'data' but its shape holds 1125899906842624",
            ),
            // product overflows usize (panicked the handler)
            (
                r#"{"inputs":[{"name":"x","shape":[4294967296,4294967296,16],"datatype":"FP32","data":[0]}]}"#,
                "element count overflows",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"datatype":"FP32","data":[0]}]}"#,
                "at most 16 are accepted",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1e39]}]}"#,
                "data[0] = 1e+39 is not a valid FP32",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{"name":"y"},{"name":"y"}]}"#,
                "output 'y' is requested more than once",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":-1}}]}"#,
                "binary_data_size must be a non-negative integer",
            ),
        ];
        for (body, want) in cases {
            let e = decode(&Bytes::from(body), None).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(want), "{body}: {}", e.message);
        }
        let many: Vec<String> = (0..=MAX_TENSORS)
            .map(|i| format!(r#"{{"name":"o{i}"}}"#))
            .collect();
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":[1],"datatype":"FP32","data":[1]}}],"outputs":[{}]}}"#,
            many.join(",")
        );
        let e = decode(&Bytes::from(body), None).unwrap_err();
        assert!(e.message.contains("at most 256"), "{}", e.message);
    }

    #[test]
    fn hostile_binary_sizes_are_refused() {
        // element count times size overflows; BYTES claims more elements than its bytes hold
        for (shape, dtype, data) in [
            ("[2305843009213693952]", "FP64", vec![0u8; 8]),
            ("[3]", "BYTES", vec![0u8; 8]),
            ("[1]", "BYTES", vec![0u8; 8]),
        ] {
            let header = format!(
                r#"{{"inputs":[{{"name":"x","shape":{shape},"datatype":"{dtype}","parameters":{{"binary_data_size":{}}}}}]}}"#,
                data.len()
            );
            let mut body = header.as_bytes().to_vec();
            body.extend_from_slice(&data);
            let e = decode(&Bytes::from(body), Some(header.len())).unwrap_err();
            assert_eq!(e.status, 400, "{shape} {dtype}: {}", e.message);
            assert!(e.message.contains("input 'x'"), "{}", e.message);
        }
    }

    #[test]
    fn encode_json_and_binary() {
        let t = Tensor::from_f32("y", vec![2], &[0.5, 1.0]);
        let e = encode("m", "1", None, &[(&t, false)]);
        assert!(e.header_len.is_none());
        let v: Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(v["outputs"][0]["data"], serde_json::json!([0.5, 1.0]));
        let e = encode("m", "1", None, &[(&t, true)]);
        let n = e.header_len.unwrap();
        assert_eq!(&e.body[n..], &t.split(&[2])[0].data_bytes());
    }
}
