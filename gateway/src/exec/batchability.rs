//! Whether a model may be batched: concatenating requests along dim 0, running once and splitting
//! the outputs back must give each request exactly what it would get alone (issue 25: a model
//! whose outputs are not one row per input row handed clients each other's data).
//!
//! Decided at load, in three steps, each able to say no with a reason the log and the status show:
//! 1. the model's config: `max_batch_size = 0` never batches; `force_batching = "why"` skips the
//!    checks (the operator vouches for the model);
//! 2. the ONNX signature: every input and every output has a dynamic leading dimension, and the
//!    dimensions that carry a name all carry the same one (`N`, `batch`, ...). Unnamed dynamic
//!    dimensions (`-1` on each), and the `unk__<n>` names converters such as tf2onnx give a
//!    dimension they know nothing about (magika's input and output), are not proof; they leave
//!    it to step 3;
//! 3. real data: two distinct random rows run as one batch of 2 must equal each row run alone,
//!    within float tolerance (this catches what a signature cannot: batch norm in training mode,
//!    attention or top-k across the batch).
//!
//! A model that is not batchable runs one request at a time (`max_batch_size: 0` in its metadata,
//! as Triton reports one), and so do its workers and Lambda.

use ort::session::Session;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::executor::run_tensors;
use super::session::IoMeta;
use crate::config::ModelConfig;
use crate::tensor::{numel, DType, Tensor, TensorData};

/// How a model's requests reach its executors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Requests are concatenated into batches (signature and data check passed).
    Batched,
    /// Batched because the config forces it (`force_batching`), checks notwithstanding.
    Forced,
    /// One request per run.
    Unbatched,
}

/// The decision and why it was made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Batching {
    /// The mode.
    pub mode: Mode,
    /// Largest batch in rows; 0 when unbatched (Triton's spelling of "no batching").
    pub max_batch_size: u32,
    /// Why: the check that decided, in words.
    pub reason: String,
}

impl Batching {
    /// Unbatched, for `reason`.
    pub fn unbatched(reason: impl Into<String>) -> Self {
        Batching {
            mode: Mode::Unbatched,
            max_batch_size: 0,
            reason: reason.into(),
        }
    }

    /// Whether requests share runs.
    pub fn batches(&self) -> bool {
        self.mode != Mode::Unbatched
    }
}

/// Whether a dimension's name says nothing: empty, or `unk__<digits>` (tf2onnx's and ONNX
/// Runtime's name for a dimension they could not infer).
fn is_anonymous(symbol: &str) -> bool {
    symbol.is_empty()
        || symbol
            .strip_prefix("unk__")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Why a signature does not show batching is row-wise.
#[derive(Debug, Clone, PartialEq)]
pub enum NotRowWise {
    /// Some tensor has no dynamic leading dimension (a scalar, a fixed dim 0): requests cannot
    /// even be concatenated or divided, whatever the config says.
    Shape(String),
    /// The leading dimensions carry different names: maybe not the same batch dimension.
    Names(String),
}

impl std::fmt::Display for NotRowWise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotRowWise::Shape(s) | NotRowWise::Names(s) => f.write_str(s),
        }
    }
}

/// Step 2: the ONNX signature. Each entry is a tensor with the name ONNX gives its leading
/// dimension (empty for an unnamed one) and whether it is an input. `Ok(true)` when named
/// dimensions prove the rule, `Ok(false)` when only unnamed `-1`s are there.
pub fn by_signature(io: &[(&IoMeta, &str, bool)]) -> Result<bool, NotRowWise> {
    if !io.iter().any(|&(_, _, is_input)| is_input) {
        return Err(NotRowWise::Shape("the model has no inputs".into()));
    }
    let mut named: Option<(&str, &str)> = None;
    let mut all_named = true;
    let mut mismatch = None;
    for &(m, symbol, is_input) in io {
        let what = if is_input { "input" } else { "output" };
        match m.shape.first() {
            None => {
                return Err(NotRowWise::Shape(format!(
                    "{what} '{}' is a scalar: it has no batch dimension",
                    m.name
                )))
            }
            Some(&d) if d >= 0 => {
                return Err(NotRowWise::Shape(format!(
                "{what} '{}' has a fixed leading dimension {d} (shape {:?}), not a batch dimension",
                m.name, m.shape
            )))
            }
            Some(_) => {}
        }
        if is_anonymous(symbol) {
            all_named = false;
            continue;
        }
        match named {
            None => named = Some((symbol, &m.name)),
            Some((first, first_name)) if first != symbol => {
                // reported once every tensor's shape was checked (a shape problem wins)
                mismatch.get_or_insert(format!(
                    "{what} '{}' has leading dimension '{symbol}' but '{first_name}' has '{first}': not the same batch dimension",
                    m.name
                ));
            }
            Some(_) => {}
        }
    }
    match mismatch {
        Some(m) => Err(NotRowWise::Names(m)),
        None => Ok(all_named && named.is_some()),
    }
}

/// Inputs of one row whose values come from `rng`: floats in (-1, 1), integers in `0..int_range`,
/// other dynamic dimensions 1 (as the warm-up's synthetic inputs).
fn random_row(inputs: &[IoMeta], rng: &mut rand::rngs::StdRng, int_range: i64) -> Vec<Tensor> {
    inputs
        .iter()
        .map(|m| {
            let shape: Vec<i64> = m.shape.iter().map(|&d| if d < 0 { 1 } else { d }).collect();
            let n = numel(&shape);
            let data = match m.dtype {
                DType::Fp32 => TensorData::Raw(
                    (0..n)
                        .flat_map(|_| rng.random_range(-1.0f32..1.0).to_le_bytes())
                        .collect(),
                ),
                DType::Fp64 => TensorData::Raw(
                    (0..n)
                        .flat_map(|_| rng.random_range(-1.0f64..1.0).to_le_bytes())
                        .collect(),
                ),
                DType::Int64 => TensorData::Raw(
                    (0..n)
                        .flat_map(|_| rng.random_range(0..int_range).to_le_bytes())
                        .collect(),
                ),
                DType::Int32 => TensorData::Raw(
                    (0..n)
                        .flat_map(|_| (rng.random_range(0..int_range) as i32).to_le_bytes())
                        .collect(),
                ),
                DType::Uint8 => TensorData::Raw(
                    (0..n)
                        .map(|_| rng.random_range(0..int_range.min(256)) as u8)
                        .collect(),
                ),
                DType::Bool => TensorData::Raw((0..n).map(|_| rng.random_range(0..2u8)).collect()),
                DType::Bytes => TensorData::Strings(
                    (0..n)
                        .map(|_| format!("r{}", rng.random_range(0..1000u32)).into_bytes())
                        .collect(),
                ),
            };
            Tensor {
                name: m.name.clone(),
                dtype: m.dtype,
                shape,
                data,
            }
        })
        .collect()
}

/// Whether two outputs are equal: the same shape, integers and strings exactly, floats within
/// `1e-4 + 1e-3·|x|` (a batch of 2 may take another kernel than a batch of 1).
pub fn outputs_match(batched: &Tensor, alone: &Tensor) -> Result<(), String> {
    if batched.shape != alone.shape || batched.dtype != alone.dtype {
        return Err(format!(
            "output '{}' is {} {:?} from a batch but {} {:?} alone",
            alone.name, batched.dtype, batched.shape, alone.dtype, alone.shape
        ));
    }
    let close = |x: f64, y: f64| {
        (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= 1e-4 + 1e-3 * x.abs().max(y.abs())
    };
    let worst = match (&batched.data, &alone.data, batched.dtype) {
        (TensorData::Raw(a), TensorData::Raw(b), DType::Fp32) => a
            .chunks_exact(4)
            .zip(b.chunks_exact(4))
            .map(|(x, y)| {
                let (x, y) = (
                    f32::from_le_bytes(x.try_into().expect("4 bytes")) as f64,
                    f32::from_le_bytes(y.try_into().expect("4 bytes")) as f64,
                );
                (close(x, y), (x - y).abs())
            })
            .find(|(ok, _)| !ok),
        (TensorData::Raw(a), TensorData::Raw(b), DType::Fp64) => a
            .chunks_exact(8)
            .zip(b.chunks_exact(8))
            .map(|(x, y)| {
                let (x, y) = (
                    f64::from_le_bytes(x.try_into().expect("8 bytes")),
                    f64::from_le_bytes(y.try_into().expect("8 bytes")),
                );
                (close(x, y), (x - y).abs())
            })
            .find(|(ok, _)| !ok),
        (a, b, _) => (a != b).then_some((false, f64::NAN)),
    };
    match worst {
        None => Ok(()),
        Some((_, diff)) if diff.is_nan() => Err(format!(
            "output '{}' differs between a batch of 2 and each row alone",
            alone.name
        )),
        Some((_, diff)) => Err(format!(
            "output '{}' differs by {diff:.3e} between a batch of 2 and each row alone",
            alone.name
        )),
    }
}

/// Step 3: two distinct random rows as one batch of 2 against each alone. Integer inputs are
/// tried in `0..8`, then in `0..2` (a model that indexes with them may refuse larger values).
pub fn rows_check(
    session: &mut Session,
    inputs: &[IoMeta],
    outputs: &[String],
) -> Result<(), String> {
    let mut last_run_error = String::new();
    for (seed, int_range) in [(25u64, 8i64), (26, 2)] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let a = random_row(inputs, &mut rng, int_range);
        // two equal rows would let a row-mixing model pass: draw until they differ (a model whose
        // inputs hold a single bool has only two rows to offer)
        let mut b = random_row(inputs, &mut rng, int_range);
        for _ in 0..32 {
            if b != a {
                break;
            }
            b = random_row(inputs, &mut rng, int_range);
        }
        let both: Vec<Tensor> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| Tensor::concat(&[x, y]))
            .collect();
        let run = |s: &mut Session, t: &[Tensor]| run_tensors(s, t, outputs);
        let (ra, rb, rboth) = match (run(session, &a), run(session, &b), run(session, &both)) {
            (Ok(x), Ok(y), Ok(z)) => (x, y, z),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                last_run_error = e;
                continue;
            }
        };
        for ((ya, yb), yboth) in ra.iter().zip(&rb).zip(&rboth) {
            if yboth.batch() != 2 {
                return Err(format!(
                    "output '{}' has {} rows for a batch of 2 (shape {:?})",
                    yboth.name,
                    yboth.batch(),
                    yboth.shape
                ));
            }
            let parts = yboth.split(&[1, 1]);
            outputs_match(&parts[0], ya)?;
            outputs_match(&parts[1], yb)?;
        }
        return Ok(());
    }
    Err(format!(
        "a batch of 2 random rows could not be run: {last_run_error}"
    ))
}

/// Steps 1 to 3 for a model with `cfg`. `signature` is step 2's verdict; `check` runs step 3 and is
/// called only when steps 1 and 2 leave the question open.
pub fn decide(
    cfg: &ModelConfig,
    signature: Result<bool, NotRowWise>,
    check: impl FnOnce() -> Result<(), String>,
) -> Batching {
    let max = cfg.max_batch_size as u32;
    if max == 0 {
        return Batching::unbatched("max_batch_size = 0 in the model's config");
    }
    if let Some(why) = &cfg.force_batching {
        // force overrides names and the data check (a model with random ops fails it), never
        // shapes: requests that cannot be concatenated and divided by rows cannot share a run
        let note = match &signature {
            Err(NotRowWise::Shape(e)) => {
                return Batching::unbatched(format!("force_batching ignored: {e}"))
            }
            Err(NotRowWise::Names(e)) => format!("; the signature alone would not batch it: {e}"),
            Ok(_) => match check() {
                Err(e) => format!("; WARNING, the check with real rows failed: {e}"),
                Ok(()) => String::new(),
            },
        };
        return Batching {
            mode: Mode::Forced,
            max_batch_size: max,
            reason: format!("forced by the model's config: {why}{note}"),
        };
    }
    let named = match signature {
        Err(e) => return Batching::unbatched(e.to_string()),
        Ok(named) => named,
    };
    match check() {
        Err(e) => Batching::unbatched(format!("the check with real rows failed: {e}")),
        Ok(()) => Batching {
            mode: Mode::Batched,
            max_batch_size: max,
            reason: if named {
                "every input and output leads with the same named batch dimension, and a batch of 2 random rows equals each row alone".into()
            } else {
                "every input and output leads with a dynamic dimension, and a batch of 2 random rows equals each row alone".into()
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(name: &str, shape: &[i64]) -> IoMeta {
        IoMeta {
            name: name.into(),
            dtype: DType::Fp32,
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn signature_needs_the_same_leading_batch_dimension_everywhere() {
        let (x, y) = (io("x", &[-1, 4]), io("y", &[-1, 10]));
        assert_eq!(by_signature(&[(&x, "N", true), (&y, "N", false)]), Ok(true));
        // unnamed on one side: not proof, the data check decides
        assert_eq!(by_signature(&[(&x, "N", true), (&y, "", false)]), Ok(false));
        // magika, converted by tf2onnx: unknown dims named unk__214 and unk__215
        assert_eq!(
            by_signature(&[(&x, "unk__214", true), (&y, "unk__215", false)]),
            Ok(false)
        );
        assert!(by_signature(&[(&x, "unk_a", true), (&y, "unk__215", false)]).is_ok());
        assert!(by_signature(&[(&x, "unk_a", true), (&y, "b", false)]).is_err());
        let e = by_signature(&[(&x, "N", true), (&y, "M", false)]).unwrap_err();
        assert!(
            matches!(&e, NotRowWise::Names(m) if m.contains("'y' has leading dimension 'M'")),
            "{e}"
        );
        // the shapes: a reduction over the batch, a transpose, a scalar
        let reduce = io("y", &[4]);
        let e = by_signature(&[(&x, "N", true), (&reduce, "", false)]).unwrap_err();
        assert!(
            matches!(&e, NotRowWise::Shape(m) if m.contains("fixed leading dimension 4")),
            "{e}"
        );
        let transpose = io("y", &[4, -1]);
        assert!(by_signature(&[(&x, "N", true), (&transpose, "", false)]).is_err());
        let scalar = io("y", &[]);
        let e = by_signature(&[(&x, "N", true), (&scalar, "", false)]).unwrap_err();
        assert!(e.to_string().contains("scalar"), "{e}");
        let fixed_in = io("x", &[1, 4]);
        assert!(by_signature(&[(&fixed_in, "", true), (&y, "N", false)]).is_err());
        // a shape problem wins over a name mismatch; no inputs at all is a shape problem
        let e = by_signature(&[(&x, "N", true), (&y, "M", false), (&scalar, "", false)]);
        assert!(matches!(e, Err(NotRowWise::Shape(_))), "{e:?}");
        assert!(matches!(
            by_signature(&[(&y, "N", false)]),
            Err(NotRowWise::Shape(_))
        ));
    }

    #[test]
    fn config_decides_first_then_signature_then_data() {
        let mut cfg = ModelConfig::default();
        let never = |_: ()| -> Result<(), String> { panic!("check must not run") };
        let scalar = || Err(NotRowWise::Shape("output 'y' is a scalar".into()));
        let names = || {
            Err(NotRowWise::Names(
                "output 'y' has leading dimension 'M'".into(),
            ))
        };
        cfg.max_batch_size = 0;
        let b = decide(&cfg, Ok(true), || never(()));
        assert_eq!((b.mode, b.max_batch_size), (Mode::Unbatched, 0));
        cfg.max_batch_size = 8;
        cfg.force_batching = Some("rows are independent by construction".into());
        let b = decide(&cfg, names(), || never(()));
        assert_eq!((b.mode, b.max_batch_size), (Mode::Forced, 8));
        assert!(b.reason.contains("by construction") && b.reason.contains("'M'"));
        // force never overrides a shape that cannot be divided by rows
        let b = decide(&cfg, scalar(), || never(()));
        assert_eq!(b.mode, Mode::Unbatched);
        assert!(b.reason.contains("force_batching ignored"), "{}", b.reason);
        // nor hides a failed data check
        let b = decide(&cfg, Ok(true), || Err("output 'y' differs".into()));
        assert_eq!(b.mode, Mode::Forced);
        assert!(b.reason.contains("WARNING"), "{}", b.reason);
        cfg.force_batching = None;
        let b = decide(&cfg, scalar(), || never(()));
        assert_eq!(b.mode, Mode::Unbatched);
        let b = decide(&cfg, Ok(false), || Err("output 'y' differs".into()));
        assert_eq!((b.mode, b.max_batch_size), (Mode::Unbatched, 0));
        assert!(b.reason.contains("real rows"), "{}", b.reason);
        let b = decide(&cfg, Ok(true), || Ok(()));
        assert_eq!((b.mode, b.max_batch_size), (Mode::Batched, 8));
    }

    #[test]
    fn outputs_compare_floats_within_tolerance_and_the_rest_exactly() {
        let t = |v: &[f32]| Tensor {
            name: "y".into(),
            dtype: DType::Fp32,
            shape: vec![1, v.len() as i64],
            data: TensorData::Raw(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        };
        assert!(outputs_match(&t(&[1.0, 2.0]), &t(&[1.0000001, 2.0])).is_ok());
        let e = outputs_match(&t(&[1.0, 2.0]), &t(&[1.0, 2.5])).unwrap_err();
        assert!(e.contains("differs by 5.000e-1"), "{e}");
        assert!(outputs_match(&t(&[1.0]), &t(&[1.0, 2.0])).is_err());
        let i = |v: i64| Tensor {
            name: "k".into(),
            dtype: DType::Int64,
            shape: vec![1],
            data: TensorData::Raw(v.to_le_bytes().to_vec()),
        };
        assert!(outputs_match(&i(3), &i(3)).is_ok());
        assert!(outputs_match(&i(3), &i(4)).is_err());
    }
}
