//! Decoding a v2 infer request, as the gateway, `mark worker` and `mark lambda` receive it: JSON
//! tensors (flat or nested `data`) and the binary tensor extension. Every size that comes from the
//! client is checked before anything is allocated for it.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::json_data::decode_data;
use super::json_skim::skim;
use super::{split_strings, DecodeError, MAX_RANK, MAX_TENSORS};
use crate::tensor::{checked_numel, DType, Tensor, TensorData};

// Unknown fields are ignored, at every level, as Triton, KServe and MLServer do: stock clients
// and protocol extensions send more than the core protocol names (KServe's Python SDK sends
// `model_name`, issue 25). What the gateway reads is still checked strictly.
#[derive(Deserialize)]
struct RequestJson<'a> {
    id: Option<Value>,
    /// Sent by KServe's SDK; must name the model of the URL when present.
    model_name: Option<String>,
    /// Sent by some clients; must name the URL's version (or the model's) when present.
    model_version: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(borrow)]
    inputs: Vec<InputJson<'a>>,
    #[serde(default)]
    outputs: Vec<OutputJson>,
}

#[derive(Deserialize)]
struct InputJson<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    /// The text of `data`, parsed once its datatype is known (`json_data`).
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
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
    /// `model_name` of the body, when sent (checked against the URL by the caller).
    pub model_name: Option<String>,
    /// `model_version` of the body, when sent.
    pub model_version: Option<String>,
}

fn flag(params: &Map<String, Value>, key: &str) -> bool {
    params.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Checks `bytes` as the binary form of `expected` elements of `dtype` (the binary tensor
/// extension over REST, `raw_input_contents` over gRPC) and takes them.
pub fn parse_binary_data(
    name: &str,
    dtype: DType,
    bytes: &[u8],
    expected: usize,
) -> Result<TensorData, DecodeError> {
    match dtype.size() {
        Some(es) => {
            if expected.checked_mul(es) != Some(bytes.len()) {
                return Err(DecodeError::new(format!(
                    "input '{name}' has {} bytes of binary data; {expected} {dtype} elements need {}",
                    bytes.len(),
                    expected as u128 * es as u128
                )));
            }
            Ok(TensorData::Raw(bytes.to_vec()))
        }
        None => {
            let out = split_strings(bytes, expected)
                .map_err(|e| DecodeError::new(format!("input '{name}'{e}")))?;
            if out.len() != expected {
                return Err(DecodeError::new(format!(
                    "input '{name}' has {} BYTES elements; its shape holds {expected}",
                    out.len()
                )));
            }
            Ok(TensorData::Strings(out))
        }
    }
}

/// Checks of a request's tensor lists, the same over REST and gRPC: at least one input, at most
/// `MAX_TENSORS` inputs and outputs, no output asked for twice.
pub fn check_counts<'a>(
    inputs: usize,
    outputs: impl ExactSizeIterator<Item = &'a str> + Clone,
) -> Result<(), DecodeError> {
    if inputs == 0 {
        return Err(DecodeError::new("request has no inputs"));
    }
    if inputs > MAX_TENSORS || outputs.len() > MAX_TENSORS {
        return Err(DecodeError::new(format!(
            "request has {inputs} inputs and {} outputs; at most {MAX_TENSORS} of each are accepted",
            outputs.len()
        )));
    }
    for (i, o) in outputs.clone().enumerate() {
        if outputs.clone().take(i).any(|p| p == o) {
            return Err(DecodeError::new(format!(
                "output '{o}' is requested more than once"
            )));
        }
    }
    Ok(())
}

/// Checks of one input's header, the same over REST and gRPC: a supported datatype, at most
/// `MAX_RANK` non-negative dimensions whose product fits. Returns the dtype and element count.
/// Nothing is sized from the shape beyond what the request holds (see the parsers): a shape
/// that promises more elements than were sent is refused by the count checks that follow.
pub fn check_input(
    name: &str,
    datatype: &str,
    shape: &[i64],
) -> Result<(DType, usize), DecodeError> {
    let dtype = DType::from_v2(datatype).ok_or_else(|| {
        DecodeError::new(format!(
            "input '{name}' has datatype '{datatype}'; supported: FP32, FP64, INT64, INT32, UINT8, BOOL, BYTES"
        ))
    })?;
    if let Some(d) = shape.iter().find(|&&d| d < 0) {
        return Err(DecodeError::new(format!(
            "input '{name}' has negative dimension {d} in shape {shape:?}"
        )));
    }
    if shape.len() > MAX_RANK {
        return Err(DecodeError::new(format!(
            "input '{name}' has {} dimensions; at most {MAX_RANK} are accepted",
            shape.len()
        )));
    }
    let expected = checked_numel(shape).ok_or_else(|| {
        DecodeError::new(format!(
            "input '{name}' has shape {shape:?}, whose element count overflows"
        ))
    })?;
    Ok((dtype, expected))
}

/// Decodes a request body. `header_len` is `Inference-Header-Content-Length` when present: the JSON
/// header is that many bytes, the binary tensor data follows.
pub fn decode(body: &Bytes, header_len: Option<usize>) -> Result<InferRequest, DecodeError> {
    let (json, mut binary) = match header_len {
        Some(n) if n > body.len() => {
            return Err(DecodeError::new(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )))
        }
        Some(n) => (&body[..n], &body[n..]),
        None => (&body[..], &body[..0]),
    };
    // the `data` arrays are cut out and parsed once their datatype is known (`json_skim`); a
    // body the scan does not follow, or whose skeleton is not valid, goes to serde_json whole,
    // which names the error
    let invalid =
        |e: serde_json::Error| DecodeError::new(format!("request is not valid v2 JSON: {e}"));
    let skim = skim(json);
    let (req, spans): (RequestJson, _) = match &skim {
        Some(s) => match serde_json::from_slice(&s.skeleton) {
            Ok(r) => (r, s.spans.as_slice()),
            Err(_) => (serde_json::from_slice(json).map_err(invalid)?, &[][..]),
        },
        None => (serde_json::from_slice(json).map_err(invalid)?, &[][..]),
    };
    check_counts(
        req.inputs.len(),
        req.outputs.iter().map(|o| o.name.as_str()),
    )?;
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (k, i) in req.inputs.into_iter().enumerate() {
        // the input's data text: cut out of the body, or as the skeleton holds it
        let cut = spans.get(k).cloned().flatten().map(|r| &json[r]);
        let (dtype, expected) = check_input(&i.name, &i.datatype, &i.shape)?;
        let data = match (i.parameters.get("binary_data_size"), &i.data) {
            (Some(size), _) => {
                let size = size
                    .as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| {
                        DecodeError::new(format!(
                            "input '{}': binary_data_size must be a non-negative integer",
                            i.name
                        ))
                    })?;
                if size > binary.len() {
                    return Err(DecodeError::new(format!(
                        "input '{}' declares binary_data_size {size} but only {} binary bytes remain",
                        i.name,
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                parse_binary_data(&i.name, dtype, mine, expected)?
            }
            (None, Some(data)) => {
                let text = match cut {
                    Some(t) => std::str::from_utf8(t).map_err(|_| {
                        DecodeError::new(format!("input '{}': 'data' is not UTF-8", i.name))
                    })?,
                    None => data.get(),
                };
                decode_data(&i.name, dtype, text, expected)?
            }
            (None, None) => {
                return Err(DecodeError::new(format!(
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
        return Err(DecodeError::new(format!(
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
        model_name: req.model_name,
        model_version: req.model_version,
    })
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
    fn fields_of_stock_clients_and_extensions_are_accepted() {
        // KServe's Python SDK (issue 25), plus fields of extensions at every level
        let body = r#"{"id":"k","model_name":"mlp","model_version":"1","trace":{"x":1},
            "inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2],"extra":{"data":[9]}}],
            "outputs":[{"name":"y","classification":3}]}"#;
        let r = decode(&Bytes::from(body), None).unwrap();
        assert_eq!(r.model_name.as_deref(), Some("mlp"));
        assert_eq!(r.model_version.as_deref(), Some("1"));
        assert_eq!(r.inputs[0].to_f32(), vec![1.0, 2.0]);
        assert_eq!(r.outputs[0].name, "y");
        // what the gateway reads is still checked
        let bad =
            r#"{"model_name":7,"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
        assert!(decode(&Bytes::from(bad), None).is_err());
        let bad = r#"{"model_name":"m","inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1]}]}"#;
        assert!(decode(&Bytes::from(bad), None).is_err());
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
        assert!(e.0.contains("binary_data_size 8"), "{}", e.0);
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
            assert!(e.0.contains(want), "{body}: {}", e.0);
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
            assert!(e.0.contains(want), "{body}: {}", e.0);
        }
        let many: Vec<String> = (0..=MAX_TENSORS)
            .map(|i| format!(r#"{{"name":"o{i}"}}"#))
            .collect();
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":[1],"datatype":"FP32","data":[1]}}],"outputs":[{}]}}"#,
            many.join(",")
        );
        let e = decode(&Bytes::from(body), None).unwrap_err();
        assert!(e.0.contains("at most 256"), "{}", e.0);
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
            assert!(e.0.contains("input 'x'"), "{}", e.0);
        }
    }
}
