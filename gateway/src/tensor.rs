//! Tensors as the gateway moves them: a dtype, a shape and little-endian bytes.
//!
//! Keeping data as raw bytes (instead of typed arrays) makes the batching stages dtype-agnostic:
//! concatenating along dim 0 and splitting back are byte copies. Only the codec (JSON) and the
//! executor (ort values) look at element types.

use std::fmt;

/// Element types of the Open Inference Protocol v2 that the gateway supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE-754 single precision.
    Fp32,
    /// IEEE-754 double precision.
    Fp64,
    /// Signed 64-bit integer.
    Int64,
    /// Signed 32-bit integer.
    Int32,
    /// Unsigned 8-bit integer.
    Uint8,
    /// Boolean stored as one byte (0 or 1).
    Bool,
    /// Variable-length byte strings (ONNX `string`).
    Bytes,
}

impl DType {
    /// The v2 protocol's spelling (`"FP32"`, ...).
    pub fn as_v2(self) -> &'static str {
        match self {
            DType::Fp32 => "FP32",
            DType::Fp64 => "FP64",
            DType::Int64 => "INT64",
            DType::Int32 => "INT32",
            DType::Uint8 => "UINT8",
            DType::Bool => "BOOL",
            DType::Bytes => "BYTES",
        }
    }

    /// Parses the v2 spelling; `None` for a datatype the gateway does not carry.
    pub fn from_v2(s: &str) -> Option<Self> {
        Some(match s {
            "FP32" => DType::Fp32,
            "FP64" => DType::Fp64,
            "INT64" => DType::Int64,
            "INT32" => DType::Int32,
            "UINT8" => DType::Uint8,
            "BOOL" => DType::Bool,
            "BYTES" => DType::Bytes,
            _ => return None,
        })
    }

    /// Bytes per element; `None` for variable-length `Bytes`.
    pub fn size(self) -> Option<usize> {
        match self {
            DType::Fp64 | DType::Int64 => Some(8),
            DType::Fp32 | DType::Int32 => Some(4),
            DType::Uint8 | DType::Bool => Some(1),
            DType::Bytes => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_v2())
    }
}

/// Tensor payload.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Fixed-size elements, little-endian, row-major.
    Raw(Vec<u8>),
    /// One byte string per element (dtype `Bytes`).
    Strings(Vec<Vec<u8>>),
}

/// A named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Input or output name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Concrete shape (no -1).
    pub shape: Vec<i64>,
    /// Elements.
    pub data: TensorData,
}

/// Number of elements of a shape (1 for a scalar). Only for shapes already checked (see
/// `checked_numel`): it saturates instead of overflowing.
pub fn numel(shape: &[i64]) -> usize {
    checked_numel(shape).unwrap_or(usize::MAX)
}

/// Number of elements of a shape from outside: `None` when a dimension is negative or the
/// product overflows `usize`.
pub fn checked_numel(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d).ok()?;
        acc.checked_mul(d)
    })
}

impl Tensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Size of dim 0, the batch dimension (1 for a scalar).
    pub fn batch(&self) -> usize {
        self.shape.first().map(|&d| d as usize).unwrap_or(1)
    }

    /// Builds an FP32 tensor from values.
    pub fn from_f32(name: &str, shape: Vec<i64>, values: &[f32]) -> Self {
        let mut raw = Vec::with_capacity(values.len() * 4);
        for v in values {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        Tensor {
            name: name.into(),
            dtype: DType::Fp32,
            shape,
            data: TensorData::Raw(raw),
        }
    }

    /// Reads FP32 values (empty for another dtype).
    pub fn to_f32(&self) -> Vec<f32> {
        match (&self.data, self.dtype) {
            (TensorData::Raw(raw), DType::Fp32) => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Size of the data as carried (raw bytes, or the v2 length-prefixed form for strings).
    pub fn byte_len(&self) -> usize {
        match &self.data {
            TensorData::Raw(r) => r.len(),
            TensorData::Strings(s) => s.iter().map(|b| b.len() + 4).sum(),
        }
    }

    /// Concatenates tensors of equal dtype and non-batch dims along dim 0.
    pub fn concat(parts: &[&Tensor]) -> Tensor {
        let first = parts[0];
        let batch: i64 = parts.iter().map(|t| t.shape[0]).sum();
        let mut shape = first.shape.clone();
        shape[0] = batch;
        let data = match &first.data {
            TensorData::Raw(_) => {
                let mut raw = Vec::with_capacity(parts.iter().map(|t| t.byte_len()).sum());
                for p in parts {
                    if let TensorData::Raw(r) = &p.data {
                        raw.extend_from_slice(r);
                    }
                }
                TensorData::Raw(raw)
            }
            TensorData::Strings(_) => TensorData::Strings(
                parts
                    .iter()
                    .flat_map(|p| match &p.data {
                        TensorData::Strings(s) => s.clone(),
                        TensorData::Raw(_) => Vec::new(),
                    })
                    .collect(),
            ),
        };
        Tensor {
            name: first.name.clone(),
            dtype: first.dtype,
            shape,
            data,
        }
    }

    /// Splits along dim 0 into pieces of the given batch sizes (which must sum to dim 0).
    pub fn split(&self, sizes: &[usize]) -> Vec<Tensor> {
        let rows = self.batch().max(1);
        let per_row = self.numel() / rows;
        let mut out = Vec::with_capacity(sizes.len());
        let mut start = 0usize;
        for &n in sizes {
            let mut shape = self.shape.clone();
            if !shape.is_empty() {
                shape[0] = n as i64;
            }
            let data = match &self.data {
                TensorData::Raw(r) => {
                    let es = self.dtype.size().unwrap_or(1);
                    TensorData::Raw(r[start * per_row * es..(start + n) * per_row * es].to_vec())
                }
                TensorData::Strings(s) => {
                    TensorData::Strings(s[start * per_row..(start + n) * per_row].to_vec())
                }
            };
            out.push(Tensor {
                name: self.name.clone(),
                dtype: self.dtype,
                shape,
                data,
            });
            start += n;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_then_split_round_trips() {
        let a = Tensor::from_f32("x", vec![1, 2], &[1.0, 2.0]);
        let b = Tensor::from_f32("x", vec![2, 2], &[3.0, 4.0, 5.0, 6.0]);
        let c = Tensor::concat(&[&a, &b]);
        assert_eq!(c.shape, vec![3, 2]);
        assert_eq!(c.to_f32(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let parts = c.split(&[1, 2]);
        assert_eq!(parts[0], a);
        assert_eq!(parts[1], b);
    }

    #[test]
    fn strings_split() {
        let t = Tensor {
            name: "s".into(),
            dtype: DType::Bytes,
            shape: vec![2],
            data: TensorData::Strings(vec![b"a".to_vec(), b"bc".to_vec()]),
        };
        let p = t.split(&[1, 1]);
        assert_eq!(p[1].data, TensorData::Strings(vec![b"bc".to_vec()]));
    }

    #[test]
    fn dtype_names_round_trip() {
        for d in [
            DType::Fp32,
            DType::Fp64,
            DType::Int64,
            DType::Int32,
            DType::Uint8,
            DType::Bool,
            DType::Bytes,
        ] {
            assert_eq!(DType::from_v2(d.as_v2()), Some(d));
        }
        assert_eq!(DType::from_v2("FP16"), None);
    }
}
