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

/// Decodes `text` (the JSON value of `data`: an array, possibly nested, or a scalar) as
/// `expected` elements of `dtype`. The text is checked here (the request parser did not look
/// inside it): brackets, commas and every token, with JSON's number grammar. The output is never
/// sized from `expected` alone: at most one slot per element the text can hold.
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
    let mut depth = 0usize;
    // a value may come next (start, after '[' or ','); after '[' a ']' may too
    let (mut want_value, mut just_opened) = (true, false);
    let mut i = 0;
    let malformed = |at: usize| {
        DecodeError::new(format!(
            "request is not valid v2 JSON: malformed 'data' of input '{name}' at byte {at} of it"
        ))
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'[' if want_value => {
                depth += 1;
                just_opened = true;
                i += 1;
            }
            b']' if depth > 0 && (!want_value || just_opened) => {
                depth -= 1;
                (want_value, just_opened) = (false, false);
                i += 1;
            }
            b',' if depth > 0 && !want_value => {
                want_value = true;
                i += 1;
            }
            b'-' | b'0'..=b'9' if want_value => {
                let (n, end) = scan_number(b, i).ok_or_else(|| malformed(i))?;
                if end < b.len() && !matches!(b[end], b',' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    return Err(malformed(end));
                }
                if count < expected && !push_number(dtype, &b[i..end], &n, &mut out) {
                    return Err(bad(
                        name,
                        dtype,
                        count,
                        &String::from_utf8_lossy(&b[i..end]),
                    ));
                }
                count += 1;
                (want_value, just_opened) = (false, false);
                i = end;
            }
            b't' | b'f' if want_value => {
                let start = i;
                while i < b.len() && !matches!(b[i], b',' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    i += 1;
                }
                let tok = &b[start..i];
                let v = match tok {
                    b"true" => 1,
                    b"false" => 0,
                    _ => return Err(malformed(start)),
                };
                if count < expected {
                    if dtype != DType::Bool {
                        return Err(bad(name, dtype, count, &String::from_utf8_lossy(tok)));
                    }
                    out.push(v);
                }
                count += 1;
                (want_value, just_opened) = (false, false);
            }
            // a string, null or object where a number belongs: name it as JSON shows it
            b'"' | b'n' | b'{' if want_value => {
                return Err(
                    match serde_json::Deserializer::from_str(&text[i..])
                        .into_iter::<Value>()
                        .next()
                    {
                        Some(Ok(v)) => bad(name, dtype, count, &v.to_string()),
                        _ => malformed(i),
                    },
                );
            }
            _ => return Err(malformed(i)),
        }
        if depth == 0 && !want_value {
            // the value is complete: only whitespace may follow
            if b[i..]
                .iter()
                .any(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
            {
                return Err(malformed(i));
            }
            break;
        }
    }
    if depth != 0 || want_value {
        return Err(malformed(b.len()));
    }
    if count != expected {
        return Err(count_mismatch(name, count, expected));
    }
    Ok(TensorData::Raw(out))
}

/// A JSON number, split: sign, decimal mantissa (its first 19 significant digits), power of
/// ten, whether digits were dropped, and whether it is written as an integer.
struct Number {
    neg: bool,
    mantissa: u64,
    exp10: i32,
    truncated: bool,
    integral: bool,
}

/// Reads the number that starts at `b[i]`; returns it and the index just past it. `None` if
/// JSON's grammar is broken (`01` reads as `0` followed by `1`: the caller's delimiter check
/// refuses it; `1.`, `.5`, `+1`, `1e` are refused here).
#[inline(always)]
fn scan_number(b: &[u8], mut i: usize) -> Option<(Number, usize)> {
    let len = b.len();
    let neg = b.get(i) == Some(&b'-');
    if neg {
        i += 1;
    }
    let (mut m, mut digits, mut exp10, mut truncated) = (0u64, 0u32, 0i32, false);
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => {
            while i < len {
                let d = b[i].wrapping_sub(b'0');
                if d > 9 {
                    break;
                }
                if digits < 19 {
                    m = m * 10 + u64::from(d);
                    digits += 1;
                } else {
                    truncated = true;
                    exp10 += 1;
                }
                i += 1;
            }
        }
        _ => return None,
    }
    let mut integral = true;
    if i < len && b[i] == b'.' {
        integral = false;
        i += 1;
        let from = i;
        // eight digits at a time while they fit the mantissa (the long fractions of floats)
        while digits <= 11 {
            let Some(v) = eight_digits(b, i) else {
                break;
            };
            // leading zeros of a fraction are not significant digits
            digits = if m == 0 {
                v.checked_ilog10().map_or(0, |d| d + 1)
            } else {
                digits + 8
            };
            m = m * 100_000_000 + v;
            exp10 -= 8;
            i += 8;
        }
        while i < len {
            let d = b[i].wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            if digits < 19 {
                m = m * 10 + u64::from(d);
                digits += u32::from(m != 0);
                exp10 -= 1;
            } else {
                truncated = true;
            }
            i += 1;
        }
        if i == from {
            return None;
        }
    }
    if i < len && (b[i] | 0x20) == b'e' {
        integral = false;
        i += 1;
        let eneg = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let from = i;
        let mut e = 0i32;
        while i < len && b[i].is_ascii_digit() {
            e = (e * 10 + i32::from(b[i] - b'0')).min(100_000);
            i += 1;
        }
        if i == from {
            return None;
        }
        exp10 += if eneg { -e } else { e };
    }
    Some((
        Number {
            neg,
            mantissa: m,
            exp10,
            truncated,
            integral,
        },
        i,
    ))
}

/// The eight ASCII digits at `b[i..i + 8]` as a number, if they are all digits (SWAR: one load,
/// three multiplications).
#[inline(always)]
fn eight_digits(b: &[u8], i: usize) -> Option<u64> {
    let chunk: [u8; 8] = b.get(i..i + 8)?.try_into().ok()?;
    let v = u64::from_le_bytes(chunk);
    let all_digits = (v & 0xF0F0_F0F0_F0F0_F0F0)
        | (((v.wrapping_add(0x0606_0606_0606_0606)) & 0xF0F0_F0F0_F0F0_F0F0) >> 4)
        == 0x3333_3333_3333_3333;
    if !all_digits {
        return None;
    }
    let mut v = v - 0x3030_3030_3030_3030;
    v = v * 10 + (v >> 8);
    v = ((v & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32))
        + ((v >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    Some(v)
}

/// The whole of `t` as a JSON number.
#[cfg(test)]
fn number(t: &[u8]) -> Option<Number> {
    match scan_number(t, 0) {
        Some((n, end)) if end == t.len() => Some(n),
        _ => None,
    }
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `n` times its power of ten in f64 arithmetic: exact inputs, two roundings (within 1 ulp).
fn scaled(n: &Number) -> Option<f64> {
    if n.truncated || !(-22..=22).contains(&n.exp10) {
        return None;
    }
    let m = n.mantissa as f64;
    let x = if n.exp10 < 0 {
        m / POW10[(-n.exp10) as usize]
    } else {
        m * POW10[n.exp10 as usize]
    };
    Some(if n.neg { -x } else { x })
}

const NEG_POW10: [f64; 23] = [
    1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14,
    1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22,
];

/// As `scaled`, multiplying by the nearest f64 of 10^-k instead of dividing by 10^k: three
/// roundings (within 2 ulp), a multiplication instead of a much slower division.
#[inline(always)]
fn scaled_fast(n: &Number) -> Option<f64> {
    if n.truncated || !(-22..=22).contains(&n.exp10) {
        return None;
    }
    // below 2^63 (at most 19 digits, the first not 9...): the signed conversion, one instruction
    let m = if n.mantissa <= i64::MAX as u64 {
        n.mantissa as i64 as f64
    } else {
        n.mantissa as f64
    };
    let x = if n.exp10 < 0 {
        m * NEG_POW10[(-n.exp10) as usize]
    } else {
        m * POW10[n.exp10 as usize]
    };
    Some(if n.neg { -x } else { x })
}

fn parse_std(tok: &[u8]) -> Option<f64> {
    std::str::from_utf8(tok).ok()?.parse::<f64>().ok()
}

/// The f64 nearest the number, as the standard parser gives it. Fast (Clinger's) when the
/// mantissa and power of ten are exact in f64, so that one operation rounds once.
fn to_f64(tok: &[u8], n: &Number) -> Option<f64> {
    if n.mantissa <= 1 << 53 {
        if let Some(x) = scaled(n) {
            return Some(x);
        }
    }
    parse_std(tok)
}

/// The f32 that the nearest f64 rounds to (the gateway's FP32 rule). The f64 computed in three
/// roundings is within 2 ulp of the nearest f64, so the two round to the same f32 unless they
/// sit next to an f32 rounding midpoint: checked on the 29 bits an f32 drops (8 ulp of margin
/// for the 2 ulp of error), and such values
/// (and those outside f32's normal range) go through the standard parser.
#[inline(always)]
fn to_f32(tok: &[u8], n: &Number) -> Option<f32> {
    if let Some(x) = scaled_fast(n) {
        let a = x.abs();
        let low = x.to_bits() & ((1 << 29) - 1);
        let normal = a == 0.0 || (1.2e-38..3.4e38).contains(&a);
        if normal && low.abs_diff(1 << 28) > 8 {
            return Some(x as f32);
        }
    }
    parse_std(tok).map(|x| x as f32)
}

#[inline(always)]
fn int(n: &Number) -> Option<i64> {
    if !n.integral || n.truncated {
        return None;
    }
    let m = i128::from(n.mantissa);
    i64::try_from(if n.neg { -m } else { m }).ok()
}

/// Appends the number `n` (written `tok`) as `dtype`; false if it is not a valid value of it.
#[inline(always)]
fn push_number(dtype: DType, tok: &[u8], n: &Number, out: &mut Vec<u8>) -> bool {
    match dtype {
        DType::Fp32 => match to_f32(tok, n) {
            // a number beyond f32's range would silently become infinity
            Some(x) if x.is_finite() => out.extend_from_slice(&x.to_le_bytes()),
            _ => return false,
        },
        DType::Fp64 => match to_f64(tok, n) {
            Some(x) if x.is_finite() => out.extend_from_slice(&x.to_le_bytes()),
            _ => return false,
        },
        DType::Int64 => match int(n) {
            Some(x) => out.extend_from_slice(&x.to_le_bytes()),
            None => return false,
        },
        DType::Int32 => match int(n).and_then(|x| i32::try_from(x).ok()) {
            Some(x) => out.extend_from_slice(&x.to_le_bytes()),
            None => return false,
        },
        DType::Uint8 => match int(n).and_then(|x| u8::try_from(x).ok()) {
            Some(x) => out.push(x),
            None => return false,
        },
        DType::Bool | DType::Bytes => return false,
    }
    true
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

    /// The fast paths give the standard parser's answer, bit for bit: on every f32 printed as
    /// Python prints it (its f64 repr), on random f64 at many scales, and on exact f32 rounding
    /// midpoints (where rounding twice could differ).
    #[test]
    fn fast_numbers_equal_the_standard_parser() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut texts = Vec::new();
        for _ in 0..100_000 {
            let x = f32::from_bits(rng.random::<u32>());
            if x.is_finite() {
                texts.push(format!("{}", f64::from(x)));
                texts.push(format!("{x:e}"));
                let next = f32::from_bits(x.to_bits() + 1);
                if next.is_finite() {
                    texts.push(format!("{:e}", (f64::from(x) + f64::from(next)) / 2.0));
                }
            }
            let y = rng.random::<f64>() * 10f64.powi(rng.random_range(-40..40));
            texts.push(format!("{y}"));
            texts.push(format!("{y:.3}"));
            texts.push(format!("-{:e}", rng.random::<u32>() % 1000));
        }
        for t in &texts {
            let want = t.parse::<f64>().unwrap();
            let n = number(t.as_bytes()).unwrap_or_else(|| panic!("{t} is a JSON number"));
            let got64 = to_f64(t.as_bytes(), &n).unwrap();
            assert_eq!(got64.to_bits(), want.to_bits(), "FP64 {t}");
            let got32 = to_f32(t.as_bytes(), &n).unwrap();
            assert_eq!(got32.to_bits(), (want as f32).to_bits(), "FP32 {t}");
        }
        for bad in [
            "01", "1.", ".5", "+1", "1e", "-", "1e+", "0x1", "1.5.2", "--1",
        ] {
            assert!(number(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn malformed_data_text_is_refused() {
        for text in [
            "[1,,2]", "[1 2]", "[1,]", "[,1]", "[[1],2", "[1]]", "[1]x", "[nul]", "[1e]", "[01]",
        ] {
            let e = raw(DType::Fp32, text, 2).unwrap_err();
            assert!(
                e.contains("not valid v2 JSON") || e.contains("elements"),
                "{text}: {e}"
            );
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
