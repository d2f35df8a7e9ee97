//! Finds the `data` arrays of a v2 JSON request without parsing their elements, so that the
//! request's small skeleton goes through serde_json and each tensor's text goes to the fast
//! element parser (`json_data`) once its datatype is known.
//!
//! One pass over the body tracks only what a JSON structure needs: strings (with escapes),
//! nesting and which string is a key. Each array under `inputs[i].data` is replaced by `[]` in the
//! skeleton and its byte range kept for input `i`. The scan gives up (and the caller parses the
//! whole body with serde_json, which then names any syntax error precisely) on anything it does
//! not expect: unbalanced brackets, an unterminated string, nesting deeper than `MAX_DEPTH`.

use std::ops::Range;

/// Deepest nesting the scan follows (a tensor of rank 16 inside the request's 3 levels fits).
const MAX_DEPTH: usize = 32;

/// The request without its `data` arrays, and where each was.
pub struct Skim {
    /// The body with every `inputs[i].data` array replaced by `[]`.
    pub skeleton: Vec<u8>,
    /// Byte range of `inputs[i].data` in the body, by input position.
    pub spans: Vec<Option<Range<usize>>>,
}

/// Index just past the string whose opening quote is at `start`, or `None` if unterminated.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        let j = i + memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
        if b[j] == b'\\' {
            i = j + 2;
        } else {
            return Some(j + 1);
        }
    }
}

/// Index just past the array that opens at `start`: brackets matched outside strings (braces
/// inside are the element parser's to refuse), found with SIMD `memchr`.
fn array_end(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    loop {
        i += memchr::memchr3(b'[', b']', b'"', b.get(i..)?)?;
        match b[i] {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {
                i = string_end(b, i)?;
                continue;
            }
        }
        i += 1;
    }
}

fn next_non_ws(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    (i < b.len()).then_some(i)
}

/// Scans `b`; `None` when the body is not a JSON object this scan follows to its end.
pub fn skim(b: &[u8]) -> Option<Skim> {
    // per depth (1 = the request object): is it an object, its last key, its element index
    let mut is_obj = [false; MAX_DEPTH + 1];
    let mut key: [&[u8]; MAX_DEPTH + 1] = [b""; MAX_DEPTH + 1];
    let mut index = [0usize; MAX_DEPTH + 1];
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut copied = 0usize;
    let mut spans: Vec<Option<Range<usize>>> = Vec::new();
    let mut i = next_non_ws(b, 0)?;
    if b[i] != b'{' {
        return None;
    }
    while i < b.len() {
        match b[i] {
            c @ (b'{' | b'[') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return None;
                }
                is_obj[depth] = c == b'{';
                key[depth] = b"";
                index[depth] = 0;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    // only whitespace may follow the request object
                    if next_non_ws(b, i + 1).is_some() {
                        return None;
                    }
                    out.extend_from_slice(&b[copied..]);
                    return Some(Skim {
                        skeleton: out,
                        spans,
                    });
                }
            }
            b',' => index[depth] += 1,
            b'"' => {
                let end = string_end(b, i)?;
                let colon = next_non_ws(b, end)?;
                if b[colon] == b':' && is_obj[depth] {
                    key[depth] = &b[i + 1..end - 1];
                    let value = next_non_ws(b, colon + 1)?;
                    let is_data = depth == 3
                        && key[3] == b"data"
                        && !is_obj[2]
                        && is_obj[1]
                        && key[1] == b"inputs"
                        && b[value] == b'[';
                    if is_data {
                        let vend = array_end(b, value)?;
                        let input = index[2];
                        if spans.len() <= input {
                            spans.resize(input + 1, None);
                        }
                        spans[input] = Some(value..vend);
                        out.extend_from_slice(&b[copied..value]);
                        out.extend_from_slice(b"[]");
                        copied = vend;
                        i = vend;
                        continue;
                    }
                    i = value;
                    continue;
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_arrays_are_cut_out_and_located() {
        let body = br#"{"id":"a\"data\":","inputs":[{"name":"x","data":[[1,2],[3]],"shape":[3],"datatype":"FP32"},{"data":5,"name":"y"},{"name":"z","data" : ["s]", "t"]}],"outputs":[{"name":"data"}]}"#;
        let s = skim(body).unwrap();
        let text =
            |r: &Option<Range<usize>>| std::str::from_utf8(&body[r.clone().unwrap()]).unwrap();
        assert_eq!(s.spans.len(), 3);
        assert_eq!(text(&s.spans[0]), "[[1,2],[3]]");
        assert!(s.spans[1].is_none(), "a scalar stays in the skeleton");
        assert_eq!(text(&s.spans[2]), r#"["s]", "t"]"#);
        let skeleton: serde_json::Value = serde_json::from_slice(&s.skeleton).unwrap();
        assert_eq!(skeleton["inputs"][0]["data"], serde_json::json!([]));
        assert_eq!(skeleton["inputs"][1]["data"], serde_json::json!(5));
        assert_eq!(skeleton["id"], "a\"data\":");
    }

    #[test]
    fn what_the_scan_does_not_follow_is_left_to_serde() {
        for body in [
            &br#"{"inputs":[{"data":[1,2}]}"#[..],
            br#"{"inputs":[{"data":[1,2]}]"#,
            br#"{"inputs":[{"name":"x}]}"#,
            br#"[1]"#,
            br#"{"a":1} trailing"#,
            b"",
        ] {
            assert!(skim(body).is_none(), "{}", String::from_utf8_lossy(body));
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert!(skim(deep.as_bytes()).is_none());
    }
}
