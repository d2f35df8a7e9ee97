//! gRPC messages to and from the gateway's request and answer: the same checks as the REST
//! decoder (`codec::request::{check_counts, check_input, parse_binary_data}`), then the one request
//! path. Typed contents (`InferTensorContents`) and raw contents (`raw_input_contents`) are both
//! accepted; the answer comes back in the form the request used.

use bytes::Bytes;
use serde_json::Value;

use super::pb::model_infer_request::InferInputTensor;
use super::pb::model_infer_response::InferOutputTensor;
use super::pb::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::api::v2::Answer;
use crate::codec::request::{
    check_counts, check_input, parse_binary_data, InferRequest, RequestedOutput,
};
use crate::codec::{binary_form, DecodeError};
use crate::tensor::{DType, Tensor, TensorData};

/// Decodes `req` (its tensors are moved out). Returns the request and whether it used raw
/// contents.
pub fn decode(req: &mut ModelInferRequest) -> Result<(InferRequest, bool), DecodeError> {
    check_counts(
        req.inputs.len(),
        req.outputs.iter().map(|o| o.name.as_str()),
    )?;
    let raw = std::mem::take(&mut req.raw_input_contents);
    let use_raw = !raw.is_empty();
    if use_raw && raw.len() != req.inputs.len() {
        return Err(DecodeError::new(format!(
            "raw_input_contents has {} entries for {} inputs: send one per input, in the order of 'inputs'",
            raw.len(),
            req.inputs.len()
        )));
    }
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (k, i) in req.inputs.iter_mut().enumerate() {
        let (dtype, expected) = check_input(&i.name, &i.datatype, &i.shape)?;
        let contents = i.contents.take();
        let data = if use_raw {
            if contents.as_ref().is_some_and(|c| held(c) > 0) {
                return Err(DecodeError::new(format!(
                    "input '{}' has typed contents while raw_input_contents is set: use one form for all inputs",
                    i.name
                )));
            }
            parse_binary_data(&i.name, dtype, &raw[k], expected)?
        } else {
            typed(&i.name, dtype, contents.unwrap_or_default(), expected)?
        };
        inputs.push(Tensor {
            name: std::mem::take(&mut i.name),
            dtype,
            shape: std::mem::take(&mut i.shape),
            data,
        });
    }
    let outputs = req
        .outputs
        .iter_mut()
        .map(|o| RequestedOutput {
            name: std::mem::take(&mut o.name),
            binary: false,
        })
        .collect();
    let id = (!req.id.is_empty()).then(|| Value::String(std::mem::take(&mut req.id)));
    Ok((
        InferRequest {
            id,
            inputs,
            outputs,
            binary_default: false,
            // the gRPC message's own model_name and model_version route it
            model_name: None,
            model_version: None,
        },
        use_raw,
    ))
}

/// Elements held in all fields of `c`.
fn held(c: &InferTensorContents) -> usize {
    c.bool_contents.len()
        + c.int_contents.len()
        + c.int64_contents.len()
        + c.uint_contents.len()
        + c.uint64_contents.len()
        + c.fp32_contents.len()
        + c.fp64_contents.len()
        + c.bytes_contents.len()
}

/// The field of `InferTensorContents` that carries `dtype`.
fn field(dtype: DType) -> &'static str {
    match dtype {
        DType::Fp32 => "fp32_contents",
        DType::Fp64 => "fp64_contents",
        DType::Int64 => "int64_contents",
        DType::Int32 => "int_contents",
        DType::Uint8 => "uint_contents",
        DType::Bool => "bool_contents",
        DType::Bytes => "bytes_contents",
    }
}

fn typed(
    name: &str,
    dtype: DType,
    c: InferTensorContents,
    expected: usize,
) -> Result<TensorData, DecodeError> {
    let total = held(&c);
    let le = |v: Vec<u8>| Ok(TensorData::Raw(v));
    let sent = match dtype {
        DType::Fp32 => c.fp32_contents.len(),
        DType::Fp64 => c.fp64_contents.len(),
        DType::Int64 => c.int64_contents.len(),
        DType::Int32 => c.int_contents.len(),
        DType::Uint8 => c.uint_contents.len(),
        DType::Bool => c.bool_contents.len(),
        DType::Bytes => c.bytes_contents.len(),
    };
    if sent != expected || total != sent {
        let elsewhere = if total != sent {
            format!(
                " ({} elements are in other fields: {dtype} goes in {})",
                total - sent,
                field(dtype)
            )
        } else {
            String::new()
        };
        return Err(DecodeError::new(format!(
            "input '{name}' has {sent} elements in contents.{} but its shape holds {expected}{elsewhere}",
            field(dtype)
        )));
    }
    match dtype {
        DType::Fp32 => le(c
            .fp32_contents
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect()),
        DType::Fp64 => le(c
            .fp64_contents
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect()),
        DType::Int64 => le(c
            .int64_contents
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect()),
        DType::Int32 => le(c
            .int_contents
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect()),
        DType::Bool => le(c.bool_contents.iter().map(|&b| u8::from(b)).collect()),
        DType::Uint8 => {
            let mut v = Vec::with_capacity(expected);
            for (i, &x) in c.uint_contents.iter().enumerate() {
                v.push(u8::try_from(x).map_err(|_| {
                    DecodeError::new(format!(
                        "input '{name}': contents.uint_contents[{i}] = {x} is not a valid UINT8 value"
                    ))
                })?);
            }
            le(v)
        }
        DType::Bytes => Ok(TensorData::Strings(
            c.bytes_contents.into_iter().map(|b| b.to_vec()).collect(),
        )),
    }
}

/// The response for `answer`: raw contents when the request sent raw contents, typed otherwise.
pub fn encode(model: &str, version: &str, answer: Answer, raw: bool) -> ModelInferResponse {
    let mut outputs = Vec::with_capacity(answer.outputs.len());
    let mut raw_out = Vec::new();
    for (t, _) in answer.outputs {
        let contents = if raw {
            raw_out.push(match t.data {
                TensorData::Raw(v) => Bytes::from(v),
                TensorData::Strings(_) => Bytes::from(binary_form(&t)),
            });
            None
        } else {
            Some(contents_of(&t))
        };
        outputs.push(InferOutputTensor {
            name: t.name,
            datatype: t.dtype.as_v2().to_string(),
            shape: t.shape,
            parameters: Default::default(),
            contents,
        });
    }
    ModelInferResponse {
        model_name: model.to_string(),
        model_version: version.to_string(),
        id: match answer.id {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        },
        parameters: Default::default(),
        outputs,
        raw_output_contents: raw_out,
    }
}

/// A request for `model` carrying `tensors` as raw contents or typed contents (the client side:
/// `mark bench --protocol grpc`).
pub fn request_message(model: &str, tensors: &[Tensor], raw: bool) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.to_string(),
        inputs: tensors
            .iter()
            .map(|t| InferInputTensor {
                name: t.name.clone(),
                datatype: t.dtype.as_v2().to_string(),
                shape: t.shape.clone(),
                parameters: Default::default(),
                contents: (!raw).then(|| contents_of(t)),
            })
            .collect(),
        raw_input_contents: if raw {
            tensors
                .iter()
                .map(|t| Bytes::from(binary_form(t)))
                .collect()
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

fn contents_of(t: &Tensor) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    let r = match &t.data {
        TensorData::Strings(s) => {
            c.bytes_contents = s.iter().map(|b| Bytes::copy_from_slice(b)).collect();
            return c;
        }
        TensorData::Raw(r) => r,
    };
    fn words<const N: usize>(r: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        r.chunks_exact(N)
            .map(|w| w.try_into().expect("chunk of N bytes"))
    }
    match t.dtype {
        DType::Fp32 => c.fp32_contents = words(r).map(f32::from_le_bytes).collect(),
        DType::Fp64 => c.fp64_contents = words(r).map(f64::from_le_bytes).collect(),
        DType::Int64 => c.int64_contents = words(r).map(i64::from_le_bytes).collect(),
        DType::Int32 => c.int_contents = words(r).map(i32::from_le_bytes).collect(),
        DType::Uint8 => c.uint_contents = r.iter().map(|&b| u32::from(b)).collect(),
        DType::Bool => c.bool_contents = r.iter().map(|&b| b != 0).collect(),
        DType::Bytes => {}
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, dtype: &str, shape: Vec<i64>, c: InferTensorContents) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: dtype.into(),
            shape,
            parameters: Default::default(),
            contents: Some(c),
        }
    }

    #[test]
    fn typed_and_raw_decode_to_the_same_tensor() {
        let typed_req = ModelInferRequest {
            inputs: vec![input(
                "x",
                "FP32",
                vec![1, 2],
                InferTensorContents {
                    fp32_contents: vec![0.5, -1.0],
                    ..Default::default()
                },
            )],
            id: "r1".into(),
            ..Default::default()
        };
        let mut raw_req = typed_req.clone();
        raw_req.inputs[0].contents = None;
        raw_req.raw_input_contents = vec![Bytes::from(
            [0.5f32, -1.0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<_>>(),
        )];
        let (a, a_raw) = decode(&mut typed_req.clone()).unwrap();
        let (b, b_raw) = decode(&mut raw_req).unwrap();
        assert_eq!(a.inputs, b.inputs);
        assert!(!a_raw && b_raw);
        assert_eq!(a.id, Some(Value::String("r1".into())));
    }

    #[test]
    fn wrong_counts_fields_and_mixed_forms_are_named() {
        let fp64_for_fp32 = InferTensorContents {
            fp64_contents: vec![1.0, 2.0],
            ..Default::default()
        };
        let cases = [
            (
                input("x", "FP32", vec![2], fp64_for_fp32),
                vec![],
                "input 'x' has 0 elements in contents.fp32_contents but its shape holds 2 (2 elements are in other fields: FP32 goes in fp32_contents)",
            ),
            (
                input(
                    "x",
                    "UINT8",
                    vec![1],
                    InferTensorContents {
                        uint_contents: vec![300],
                        ..Default::default()
                    },
                ),
                vec![],
                "uint_contents[0] = 300 is not a valid UINT8",
            ),
            (
                input("x", "FP32", vec![1], Default::default()),
                vec![Bytes::from_static(&[0, 0, 0]), Bytes::new()],
                "raw_input_contents has 2 entries for 1 inputs",
            ),
            (
                input("x", "FP32", vec![1], Default::default()),
                vec![Bytes::from_static(&[0, 0, 0])],
                "input 'x' has 3 bytes of binary data",
            ),
            (
                input("x", "FP32", vec![1 << 62, 1 << 62], Default::default()),
                vec![],
                "element count overflows",
            ),
        ];
        for (i, raw, want) in cases {
            let mut r = ModelInferRequest {
                inputs: vec![i],
                raw_input_contents: raw,
                ..Default::default()
            };
            let e = decode(&mut r).unwrap_err();
            assert!(e.0.contains(want), "{}", e.0);
        }
    }

    #[test]
    fn answers_come_back_in_the_request_form() {
        let t = Tensor::from_f32("y", vec![2], &[0.25, 4.0]);
        let answer = || Answer {
            id: None,
            outputs: vec![(t.clone(), false)],
        };
        let raw = encode("m", "1", answer(), true);
        assert_eq!(raw.raw_output_contents[0].as_ref(), binary_form(&t));
        assert!(raw.outputs[0].contents.is_none());
        let typed = encode("m", "1", answer(), false);
        assert_eq!(
            typed.outputs[0].contents.as_ref().unwrap().fp32_contents,
            vec![0.25, 4.0]
        );
        assert!(typed.raw_output_contents.is_empty());
        // the client side builds what the server decodes, in both forms
        for raw in [false, true] {
            let mut m = request_message("m", std::slice::from_ref(&t), raw);
            let (r, used_raw) = decode(&mut m).unwrap();
            assert_eq!((r.inputs, used_raw), (vec![t.clone()], raw));
        }
    }
}
