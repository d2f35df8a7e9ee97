//! The KServe v2 wire format, written once: requests decoded by every server (`mark serve`,
//! `mark worker`, `mark lambda`), responses encoded by them, and the client side that the remote
//! backends and `mark bench` use to send batches and read answers.
//!
//! - `request`: decoding a request (JSON and binary tensors), sizes checked before allocation.
//! - `response`: encoding a response (JSON `data` or the binary section).
//! - `client`: encoding a request and decoding a binary response, strictly.
//!
//! The binary form of a tensor is [`binary_form`]: raw little-endian bytes, or for BYTES each
//! element as a 4-byte little-endian length and its bytes.

pub mod client;
pub mod json_data;
pub mod json_skim;
pub mod readiness;
pub mod request;
pub mod response;

use std::fmt;

use crate::tensor::{Tensor, TensorData};

/// Most inputs, or outputs asked for, in one request (models have a handful; the cap bounds the
/// work of the name checks).
pub const MAX_TENSORS: usize = 256;
/// Most dimensions of one tensor.
pub const MAX_RANK: usize = 16;

/// A request the gateway cannot decode: the message says what was wrong (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl DecodeError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        DecodeError(message.into())
    }
}

/// A tensor's binary form on the wire.
pub fn binary_form(t: &Tensor) -> Vec<u8> {
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

/// Why length-prefixed BYTES data could not be split; shown after the tensor's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringsError {
    /// Fewer than 4 bytes where a length prefix should be.
    TruncatedPrefix,
    /// A length prefix larger than the bytes left.
    Overlong,
    /// More elements than the limit.
    TooMany(usize),
}

impl fmt::Display for StringsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StringsError::TruncatedPrefix => f.write_str(": truncated BYTES length prefix"),
            StringsError::Overlong => f.write_str(": BYTES element longer than the data"),
            StringsError::TooMany(n) => {
                write!(f, " has more BYTES elements than its shape holds ({n})")
            }
        }
    }
}

/// Splits length-prefixed BYTES data into at most `max` elements. Never reserves more than the
/// data can hold (each element takes at least its 4-byte prefix).
pub fn split_strings(bytes: &[u8], max: usize) -> Result<Vec<Vec<u8>>, StringsError> {
    let mut out = Vec::with_capacity(max.min(bytes.len() / 4));
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(StringsError::TruncatedPrefix);
        }
        let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() - 4 < n {
            return Err(StringsError::Overlong);
        }
        if out.len() == max {
            return Err(StringsError::TooMany(max));
        }
        out.push(rest[4..4 + n].to_vec());
        rest = &rest[4 + n..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    #[test]
    fn strings_round_trip_through_their_binary_form() {
        let t = Tensor {
            name: "s".into(),
            dtype: DType::Bytes,
            shape: vec![3],
            data: TensorData::Strings(vec![b"ab".to_vec(), vec![], b"xyz".to_vec()]),
        };
        let b = binary_form(&t);
        assert_eq!(b.len(), t.byte_len());
        assert_eq!(
            split_strings(&b, 3).unwrap(),
            vec![b"ab".to_vec(), vec![], b"xyz".to_vec()]
        );
        assert_eq!(split_strings(&b, 2), Err(StringsError::TooMany(2)));
        assert_eq!(
            split_strings(&b[..3], 3),
            Err(StringsError::TruncatedPrefix)
        );
        assert_eq!(split_strings(&b[..5], 3), Err(StringsError::Overlong));
    }
}
