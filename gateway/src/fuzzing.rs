//! Entry points of the fuzz targets (`fuzz/`, cargo-fuzz): each takes arbitrary bytes and must
//! return without panicking or allocating beyond what the input justifies, whatever it holds.
//! They live in the library so that the seed corpora and every crash found also run as plain
//! tests on stable (`tests/tests/fuzz_corpora.rs`).

use bytes::Bytes;

use crate::codec::client::decode_response;
use crate::codec::request as codec;
use crate::control::catalog::Catalog;
use crate::exec::session::IoMeta;
use crate::exec::wire;
use crate::sim::workload::{parse_csv, Workload};
use crate::tensor::DType;

/// Splits a fuzz input into a 16-bit length and the rest.
fn split(data: &[u8]) -> Option<(usize, &[u8])> {
    let (n, rest) = data.split_first_chunk::<2>()?;
    Some((usize::from(u16::from_le_bytes(*n)), rest))
}

/// The v2 JSON request decoder (`POST /v2/models/{m}/infer` without the binary extension).
pub fn v2_json(data: &[u8]) {
    let _ = codec::decode(&Bytes::copy_from_slice(data), None);
}

/// The v2 binary tensor extension: the first two bytes are `Inference-Header-Content-Length`.
pub fn v2_binary(data: &[u8]) {
    if let Some((n, body)) = split(data) {
        let _ = codec::decode(&Bytes::copy_from_slice(body), Some(n));
    }
}

/// The batch wire format a worker or Lambda answers with, decoded, checked against an MLP's
/// outputs for a batch of `data[0] % 9` rows, and split per request as the gateway does.
pub fn batch_wire(data: &[u8]) {
    let Some((n, body)) = split(data) else {
        return;
    };
    let total = usize::from(data[0] % 9);
    let Ok(outs) = decode_response(body, Some(n)) else {
        return;
    };
    let expected = [
        IoMeta {
            name: "logits".into(),
            dtype: DType::Fp32,
            shape: vec![-1, 10],
        },
        IoMeta {
            name: "probs".into(),
            dtype: DType::Fp32,
            shape: vec![-1, 10],
        },
    ];
    if let Ok(outs) = wire::check_outputs(outs, &expected, Some(total)) {
        let sizes = vec![1; total];
        for t in outs {
            assert_eq!(t.split(&sizes).len(), total);
        }
    }
}

/// Workload parsers: a `spec:` first line is a `--workload` spec (generators only: no files),
/// anything else the text of a rates CSV. A parsed workload is sampled.
pub fn workload(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = match text.strip_prefix("spec:") {
        Some(spec) if spec.starts_with("twitter-like") || spec.starts_with("stress") => {
            Workload::parse(spec)
        }
        Some(_) => return,
        None => parse_csv(text, "fuzz", 60.0),
    };
    if let Ok(w) = parsed {
        let _ = (w.duration_s(), w.peak_rate(), w.expected_requests());
        let _ = w.arrivals(1).take(1000).count();
    }
}

/// The instance catalog parser and validation.
pub fn catalog(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Catalog::parse(text, "fuzz");
    }
}

/// A fuzz target: its name and entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name, for the corpus replay test.
pub const TARGETS: [Target; 5] = [
    ("v2_json", v2_json),
    ("v2_binary", v2_binary),
    ("batch_wire", batch_wire),
    ("workload", workload),
    ("catalog", catalog),
];
