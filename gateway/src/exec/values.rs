//! Conversions between gateway tensors (little-endian bytes) and ort values.

use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, ValueType};

use crate::tensor::{DType, Tensor, TensorData};

fn typed<T, const N: usize>(raw: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunk of N bytes")))
        .collect()
}

/// Builds an ort value holding a copy of `t`.
pub fn to_ort(t: &Tensor) -> Result<DynValue, String> {
    let shape = t.shape.clone();
    let v = match (&t.data, t.dtype) {
        (TensorData::Raw(r), DType::Fp32) => {
            OrtTensor::from_array((shape, typed(r, f32::from_le_bytes))).map(|x| x.into_dyn())
        }
        (TensorData::Raw(r), DType::Fp64) => {
            OrtTensor::from_array((shape, typed(r, f64::from_le_bytes))).map(|x| x.into_dyn())
        }
        (TensorData::Raw(r), DType::Int64) => {
            OrtTensor::from_array((shape, typed(r, i64::from_le_bytes))).map(|x| x.into_dyn())
        }
        (TensorData::Raw(r), DType::Int32) => {
            OrtTensor::from_array((shape, typed(r, i32::from_le_bytes))).map(|x| x.into_dyn())
        }
        (TensorData::Raw(r), DType::Uint8) => {
            OrtTensor::from_array((shape, r.clone())).map(|x| x.into_dyn())
        }
        (TensorData::Raw(r), DType::Bool) => {
            OrtTensor::from_array((shape, r.iter().map(|&b| b != 0).collect::<Vec<bool>>()))
                .map(|x| x.into_dyn())
        }
        (TensorData::Strings(s), DType::Bytes) => {
            let strings: Vec<String> = s
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            let arr = ndarray::ArrayD::from_shape_vec(
                shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
                strings,
            )
            .map_err(|e| e.to_string())?;
            OrtTensor::from_string_array(&arr).map(|x| x.into_dyn())
        }
        _ => {
            return Err(format!(
                "tensor '{}' holds data that does not match its datatype {}",
                t.name, t.dtype
            ))
        }
    };
    v.map_err(|e| e.to_string())
}

fn le_bytes<T: Copy, const N: usize>(xs: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(xs.len() * N);
    for &x in xs {
        out.extend_from_slice(&f(x));
    }
    out
}

/// Copies an ort output value into a gateway tensor.
pub fn from_ort(name: &str, v: &DynValue) -> Result<Tensor, String> {
    let ValueType::Tensor { ty, .. } = v.dtype() else {
        return Err(format!("output '{name}' is not a tensor"));
    };
    let (dtype, shape, data) = match ty {
        TensorElementType::Float32 => {
            let (s, d) = v.try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
            (
                DType::Fp32,
                s.to_vec(),
                TensorData::Raw(le_bytes(d, f32::to_le_bytes)),
            )
        }
        TensorElementType::Float64 => {
            let (s, d) = v.try_extract_tensor::<f64>().map_err(|e| e.to_string())?;
            (
                DType::Fp64,
                s.to_vec(),
                TensorData::Raw(le_bytes(d, f64::to_le_bytes)),
            )
        }
        TensorElementType::Int64 => {
            let (s, d) = v.try_extract_tensor::<i64>().map_err(|e| e.to_string())?;
            (
                DType::Int64,
                s.to_vec(),
                TensorData::Raw(le_bytes(d, i64::to_le_bytes)),
            )
        }
        TensorElementType::Int32 => {
            let (s, d) = v.try_extract_tensor::<i32>().map_err(|e| e.to_string())?;
            (
                DType::Int32,
                s.to_vec(),
                TensorData::Raw(le_bytes(d, i32::to_le_bytes)),
            )
        }
        TensorElementType::Uint8 => {
            let (s, d) = v.try_extract_tensor::<u8>().map_err(|e| e.to_string())?;
            (DType::Uint8, s.to_vec(), TensorData::Raw(d.to_vec()))
        }
        TensorElementType::Bool => {
            let (s, d) = v.try_extract_tensor::<bool>().map_err(|e| e.to_string())?;
            (
                DType::Bool,
                s.to_vec(),
                TensorData::Raw(d.iter().map(|&b| u8::from(b)).collect()),
            )
        }
        TensorElementType::String => {
            let (s, d) = v.try_extract_strings().map_err(|e| e.to_string())?;
            (
                DType::Bytes,
                s.to_vec(),
                TensorData::Strings(d.into_iter().map(String::into_bytes).collect()),
            )
        }
        other => {
            return Err(format!(
                "output '{name}' has element type {other:?}, which the gateway does not carry"
            ))
        }
    };
    Ok(Tensor {
        name: name.into(),
        dtype,
        shape,
        data,
    })
}
