//! A v2 JSON `data` array decoded straight into a tensor's little-endian bytes.
//!
//! The request parser hands over the array's text unparsed (serde_json's `RawValue`: it has
//! checked that the text is valid JSON, and nothing was allocated per element). Here one pass over
//! that text parses each number with the standard library's correctly rounded parser and appends
//! its bytes: no `Value` tree, no intermediate vector of elements. Nesting is flattened (the v2
//! protocol accepts `[[1,2],[3,4]]` for `[1,2,3,4]`). BYTES (strings) go through serde_json, a rare
//! and small case.

use serde_json::Value;

use super::DecodeError;
use crate::tensor::{DType, TensorData};

/// Decodes `text` (a valid JSON value: an array, possibly nested, or a scalar) as `expected`
/// elements of `dtype`. The output is never sized from `expected` alone: at most one slot per
/// element the text can hold.
pub fn decode_data(
    name: &str,
    dtype: DType,
    text: &str,
    expected: usize,
) -> Result<TensorData, DecodeError> {
    let Some(size) = dtype.size() else {
        return decode_strings(name, text, expected);
    };
    let b = text.as_bytes();
    // every element takes at least one byte and a separator
    let room = expected.min(b.len() / 2 + 1);
    let mut out = Vec::with_capacity(room * size);
    let mut count = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'[' | b']' | b',' | b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            c @ (b'-' | b'0'..=b'9' | b't' | b'f') => {
                let start = i;
                i += 1;
                while i < b.len() && !matches!(b[i], b',' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    i += 1;
                }
                let tok = &text[start..i];
                if count < expected {
                    let ok = if c == b't' || c == b'f' {
                        push_bool(dtype, tok, &mut out)
                    } else {
                        push_number(dtype, tok, &mut out)
                    };
                    if !ok {
                        return Err(bad(name, dtype, count, tok));
                    }
                }
                count += 1;
            }
            // a string, null or object where a number belongs: name it as JSON shows it
            _ => {
                let v = serde_json::Deserializer::from_str(&text[i..])
                    .into_iter::<Value>()
                    .next()
                    .and_then(Result::ok)
                    .map_or_else(|| text[i..].chars().take(32).collect(), |v| v.to_string());
                return Err(bad(name, dtype, count, &v));
            }
        }
    }
    if count != expected {
        return Err(count_mismatch(name, count, expected));
    }
    Ok(TensorData::Raw(out))
}

fn count_mismatch(name: &str, count: usize, expected: usize) -> DecodeError {
    DecodeError::new(format!(
        "input '{name}' has {count} elements in 'data' but its shape holds {expected}"
    ))
}

fn bad(name: &str, dtype: DType, i: usize, shown: &str) -> DecodeError {
    // numbers as serde_json prints them (1e39 -> 1e+39), everything else as sent
    let shown = shown
        .parse::<f64>()
        .ok()
        .filter(|_| shown.contains(['e', 'E']))
        .map_or_else(|| shown.to_string(), |x| Value::from(x).to_string());
    DecodeError::new(format!(
        "input '{name}': data[{i}] = {shown} is not a valid {dtype} value"
    ))
}

fn push_bool(dtype: DType, tok: &str, out: &mut Vec<u8>) -> bool {
    match (dtype, tok) {
        (DType::Bool, "true") => out.push(1),
        (DType::Bool, "false") => out.push(0),
        _ => return false,
    }
    true
}

fn push_number(dtype: DType, tok: &str, out: &mut Vec<u8>) -> bool {
    match dtype {
        DType::Fp32 => match tok.parse::<f64>().map(|x| x as f32) {
            // a number beyond f32's range would silently become infinity
            Ok(x) if x.is_finite() => out.extend_from_slice(&x.to_le_bytes()),
            _ => return false,
        },
        DType::Fp64 => match tok.parse::<f64>() {
            Ok(x) if x.is_finite() => out.extend_from_slice(&x.to_le_bytes()),
            _ => return false,
        },
        DType::Int64 => match tok.parse::<i64>() {
            Ok(x) => out.extend_from_slice(&x.to_le_bytes()),
            Err(_) => return false,
        },
        DType::Int32 => match tok.parse::<i32>() {
            Ok(x) => out.extend_from_slice(&x.to_le_bytes()),
            Err(_) => return false,
        },
        DType::Uint8 => match tok.parse::<u8>() {
            Ok(x) => out.push(x),
            Err(_) => return false,
        },
        DType::Bool | DType::Bytes => return false,
    }
    true
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

fn decode_strings(name: &str, text: &str, expected: usize) -> Result<TensorData, DecodeError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| DecodeError::new(format!("input '{name}': 'data' is not valid JSON: {e}")))?;
    let mut flat = Vec::new();
    flatten(&v, &mut flat);
    if flat.len() != expected {
        return Err(count_mismatch(name, flat.len(), expected));
    }
    let mut s = Vec::with_capacity(flat.len());
    for (i, v) in flat.iter().enumerate() {
        match v.as_str() {
            Some(x) => s.push(x.as_bytes().to_vec()),
            None => return Err(bad(name, DType::Bytes, i, &v.to_string())),
        }
    }
    Ok(TensorData::Strings(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(dtype: DType, text: &str, n: usize) -> Result<Vec<u8>, String> {
        match decode_data("x", dtype, text, n) {
            Ok(TensorData::Raw(r)) => Ok(r),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn numbers_decode_as_the_standard_parser_reads_them() {
        let text = "[[0.1, -2.5e-3], [3, 1E2 ]]";
        let want: Vec<u8> = [0.1f64 as f32, -2.5e-3f64 as f32, 3.0, 100.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(raw(DType::Fp32, text, 4).unwrap(), want);
        assert_eq!(
            raw(DType::Int64, "[-9223372036854775808, 7]", 2).unwrap(),
            [i64::MIN, 7]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<_>>()
        );
        assert_eq!(raw(DType::Uint8, "[0,255]", 2).unwrap(), vec![0, 255]);
        assert_eq!(raw(DType::Bool, "[true,false]", 2).unwrap(), vec![1, 0]);
        assert_eq!(raw(DType::Int32, "5", 1).unwrap(), 5i32.to_le_bytes());
    }

    #[test]
    fn wrong_values_and_counts_are_named() {
        let cases = [
            (
                DType::Int32,
                r#"[1, "a"]"#,
                2,
                "data[1] = \"a\" is not a valid INT32",
            ),
            (
                DType::Int64,
                "[1.5]",
                1,
                "data[0] = 1.5 is not a valid INT64",
            ),
            (
                DType::Uint8,
                "[256]",
                1,
                "data[0] = 256 is not a valid UINT8",
            ),
            (
                DType::Fp32,
                "[1e39]",
                1,
                "data[0] = 1e+39 is not a valid FP32",
            ),
            (
                DType::Fp32,
                "[null]",
                1,
                "data[0] = null is not a valid FP32",
            ),
            (
                DType::Fp32,
                "[true]",
                1,
                "data[0] = true is not a valid FP32",
            ),
            (DType::Bool, "[1]", 1, "data[0] = 1 is not a valid BOOL"),
            (
                DType::Fp32,
                r#"[{"a":1}]"#,
                1,
                r#"data[0] = {"a":1} is not"#,
            ),
            (
                DType::Fp32,
                "[1,2,3]",
                2,
                "has 3 elements in 'data' but its shape holds 2",
            ),
            (
                DType::Fp32,
                "[]",
                2,
                "has 0 elements in 'data' but its shape holds 2",
            ),
        ];
        for (dtype, text, n, want) in cases {
            let e = raw(dtype, text, n).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn strings_and_hostile_counts() {
        let s = decode_data("x", DType::Bytes, r#"[["ab"],[""]]"#, 2).unwrap();
        assert_eq!(s, TensorData::Strings(vec![b"ab".to_vec(), vec![]]));
        let e = decode_data("x", DType::Bytes, "[1]", 1).unwrap_err();
        assert!(e.0.contains("data[0] = 1 is not a valid BYTES"), "{}", e.0);
        // a shape promising 2^50 elements reserves only what the text can hold
        let e = raw(DType::Fp32, "[0]", 1 << 50).unwrap_err();
        assert!(e.contains("has 1 elements"), "{e}");
    }
}
