//! Batches on the wire between the gateway and its remote backends (fleet workers and Lambda):
//! one KServe v2 request with binary tensors per batch (`codec::client`), answered with binary
//! outputs that are checked against the model before they are split among the requests.

use super::batch_ctx::BatchCtx;
use super::executor::{finish_pending, Job};
use super::session::IoMeta;
use crate::codec::client::WireError;
use crate::tensor::{checked_numel, Tensor, TensorData};
use crate::work::{ExecError, Pending};

/// Concatenates the batch's inputs along dim 0; returns them and each request's item count.
pub fn merge(batch: &[Pending]) -> (Vec<Tensor>, Vec<usize>) {
    let sizes: Vec<usize> = batch.iter().map(|p| p.items as usize).collect();
    let n_inputs = batch[0].inputs.len();
    let merged = (0..n_inputs)
        .map(|i| Tensor::concat(&batch.iter().map(|p| &p.inputs[i]).collect::<Vec<_>>()))
        .collect();
    (merged, sizes)
}

/// Each request's share of a batch's outputs, request by request: one request gets the outputs
/// whole; several get their rows of each output, which must then be declared with a dynamic
/// leading dimension (`divisible`, in the outputs' order) and lead with one row per input row.
/// `None` when an output cannot be divided so (a scalar, a reduction over the batch, a
/// transpose, a fixed dim 0 that happens to equal the rows): no request may then be answered
/// from this run, since every answer would hold other requests' data (issue 25).
pub fn split_rows(
    outs: &[Tensor],
    sizes: &[usize],
    divisible: &[bool],
) -> Option<Vec<Vec<Tensor>>> {
    if sizes.len() == 1 {
        return Some(vec![outs.to_vec()]);
    }
    let total: usize = sizes.iter().sum();
    let rows_ok = |(i, t): (usize, &Tensor)| {
        divisible.get(i).copied().unwrap_or(false) && !t.shape.is_empty() && t.batch() == total
    };
    if !outs.iter().enumerate().all(rows_ok) {
        return None;
    }
    let split: Vec<Vec<Tensor>> = outs.iter().map(|t| t.split(sizes)).collect();
    Some(
        (0..sizes.len())
            .map(|i| split.iter().map(|s| s[i].clone()).collect())
            .collect(),
    )
}

/// Answers every request of `batch` with its slice of the batch outputs `outs` (already checked
/// by `check_outputs`). Outputs that cannot be divided by rows (`split_rows`) fail the backend's
/// answer: the batch is run again on the gateway's executors, which run such a batch request
/// by request.
pub fn finish_batch(batch: Vec<Pending>, sizes: &[usize], outs: &[Tensor], ctx: &BatchCtx) {
    let Some(split) = split_rows(outs, sizes, &ctx.divisible()) else {
        tracing::error!(model = %ctx.model, requests = sizes.len(), "a backend's batch answer is not one row per input row; running its requests one by one");
        ctx.metrics
            .remote_retries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        retry_locally(batch, ctx);
        return;
    };
    let total: usize = sizes.iter().sum();
    ctx.metrics.batch_size.observe(total as f64);
    for (p, mine) in batch.into_iter().zip(split) {
        finish_pending(p, Ok(mine), &ctx.metrics, ctx.slo);
    }
}

/// Runs a batch a remote backend failed on the gateway's own executors (queued behind what they
/// run); if the pool is gone, answers every request with the error.
pub fn retry_locally(batch: Vec<Pending>, ctx: &BatchCtx) {
    if let Err(batch) = ctx.pool.submit_or_return(Job {
        batch,
        permit: None,
        timing: None,
    }) {
        for p in batch {
            finish_pending(
                p,
                Err(ExecError::Gone(ctx.model.clone())),
                &ctx.metrics,
                ctx.slo,
            );
        }
    }
}

/// Checks a backend's answer for a batch of `total` rows against the model's declared outputs
/// before anything is split: every declared output exactly once, its datatype, its rank and fixed
/// dimensions, `total` rows on a dynamic dim 0, and data that matches the shape. Returns the
/// outputs in the declared order. A backend that fails this has failed the batch. `total` is
/// `None` for a model that is not batched: its dim 0 is whatever the one request's rows make.
pub fn check_outputs(
    outs: Vec<Tensor>,
    expected: &[IoMeta],
    total: Option<usize>,
) -> Result<Vec<Tensor>, WireError> {
    check(outs, expected, total).map_err(WireError::WrongBatch)
}

fn check(
    outs: Vec<Tensor>,
    expected: &[IoMeta],
    total: Option<usize>,
) -> Result<Vec<Tensor>, String> {
    if outs.len() != expected.len() {
        let names: Vec<&str> = outs.iter().map(|t| t.name.as_str()).collect();
        return Err(format!(
            "answered {} outputs {names:?}; the model declares {}",
            outs.len(),
            expected.len()
        ));
    }
    let mut outs: Vec<Option<Tensor>> = outs.into_iter().map(Some).collect();
    let mut ordered = Vec::with_capacity(expected.len());
    for m in expected {
        let t = outs
            .iter_mut()
            .find(|t| t.as_ref().is_some_and(|t| t.name == m.name))
            .and_then(Option::take)
            .ok_or_else(|| format!("output '{}' is missing from the answer", m.name))?;
        if t.dtype != m.dtype {
            return Err(format!(
                "output '{}' is {}; the model declares {}",
                m.name, t.dtype, m.dtype
            ));
        }
        let dims_fit = t.shape.len() == m.shape.len()
            && t.shape
                .iter()
                .zip(&m.shape)
                .enumerate()
                .all(|(i, (&a, &b))| {
                    a >= 0
                        && match total {
                            Some(total) if i == 0 && b < 0 => a as u64 == total as u64,
                            _ => b < 0 || a == b,
                        }
                });
        if !dims_fit {
            return Err(match total {
                Some(total) => format!(
                    "output '{}' has shape {:?}; a batch of {total} needs {:?}",
                    m.name, t.shape, m.shape
                ),
                None => format!(
                    "output '{}' has shape {:?}; the model declares {:?}",
                    m.name, t.shape, m.shape
                ),
            });
        }
        let n = checked_numel(&t.shape)
            .ok_or_else(|| format!("output '{}' has shape {:?}", m.name, t.shape))?;
        let fits = match (&t.data, t.dtype.size()) {
            (TensorData::Raw(r), Some(es)) => n.checked_mul(es) == Some(r.len()),
            (TensorData::Strings(s), None) => s.len() == n,
            _ => false,
        };
        if !fits {
            return Err(format!(
                "output '{}' carries {} bytes, which does not match its shape {:?}",
                m.name,
                t.byte_len(),
                t.shape
            ));
        }
        ordered.push(t);
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    fn meta() -> Vec<IoMeta> {
        vec![
            IoMeta {
                name: "logits".into(),
                dtype: DType::Fp32,
                shape: vec![-1, 2],
            },
            IoMeta {
                name: "probs".into(),
                dtype: DType::Fp32,
                shape: vec![-1, 2],
            },
        ]
    }

    fn answer(rows: i64) -> Vec<Tensor> {
        let vals: Vec<f32> = (0..rows * 2).map(|v| v as f32).collect();
        vec![
            Tensor::from_f32("probs", vec![rows, 2], &vals),
            Tensor::from_f32("logits", vec![rows, 2], &vals),
        ]
    }

    #[test]
    fn only_outputs_declared_row_wise_are_divided_among_requests() {
        let rows = |n: i64| Tensor::from_f32("y", vec![n, 2], &vec![1.0; (n * 2) as usize]);
        // 1 + 3 rows, an output of 4 rows declared [N,2]: divided
        let s = split_rows(&[rows(4)], &[1, 3], &[true]).unwrap();
        assert_eq!(
            (s[0][0].shape.clone(), s[1][0].shape.clone()),
            (vec![1, 2], vec![3, 2])
        );
        // the same 4 rows from an output declared [4,2] (a reduction that happens to match): never
        assert!(split_rows(&[rows(4)], &[1, 3], &[false]).is_none());
        // rows that do not add up, a scalar, an output the flags do not cover: never
        assert!(split_rows(&[rows(1)], &[1, 3], &[true]).is_none());
        let scalar = Tensor::from_f32("s", vec![], &[1.0]);
        assert!(split_rows(std::slice::from_ref(&scalar), &[1, 1], &[true]).is_none());
        assert!(split_rows(&[rows(2)], &[1, 1], &[]).is_none());
        // one request gets its outputs whole, whatever they are
        assert_eq!(
            split_rows(std::slice::from_ref(&scalar), &[3], &[false]).unwrap()[0][0],
            scalar
        );
    }

    #[test]
    fn an_unbatched_models_answer_has_the_rows_its_request_made() {
        // no row count to check: 3 rows for a request counted as one item
        let outs = check_outputs(answer(3), &meta(), None).unwrap();
        assert_eq!(outs[0].shape, vec![3, 2]);
        assert!(check_outputs(answer(3), &meta(), Some(1)).is_err());
        // its other dimensions are still checked
        let wide = vec![
            Tensor::from_f32("probs", vec![1, 3], &[0.0; 3]),
            Tensor::from_f32("logits", vec![1, 2], &[0.0; 2]),
        ];
        let e = check_outputs(wide, &meta(), None).unwrap_err();
        assert!(e.to_string().contains("the model declares"), "{e}");
    }

    #[test]
    fn a_good_answer_is_put_in_declared_order() {
        let outs = check_outputs(answer(3), &meta(), Some(3)).unwrap();
        assert_eq!(outs[0].name, "logits");
        assert_eq!(outs[1].name, "probs");
    }

    #[test]
    fn lying_answers_are_refused() {
        let check_outputs = |o, m: &[IoMeta], t: Option<usize>| {
            super::check_outputs(o, m, t).map_err(|e| e.to_string())
        };
        // the whole batch's rows for a batch of 2 (would send every client others' results)
        let e = check_outputs(answer(3), &meta(), Some(2)).unwrap_err();
        assert!(e.contains("a batch of 2"), "{e}");
        // short data
        let mut short = answer(2);
        if let TensorData::Raw(r) = &mut short[0].data {
            r.truncate(5);
        }
        let e = check_outputs(short, &meta(), Some(2)).unwrap_err();
        assert!(e.contains("does not match its shape"), "{e}");
        // a missing output
        let mut missing = answer(2);
        missing.pop();
        assert!(check_outputs(missing, &meta(), Some(2)).is_err());
        // a duplicated output instead of the other
        let mut dup = answer(2);
        dup[1].name = "probs".into();
        let e = check_outputs(dup, &meta(), Some(2)).unwrap_err();
        assert!(e.contains("'logits' is missing"), "{e}");
        // wrong dtype
        let mut ty = answer(2);
        ty[0].dtype = DType::Int32;
        assert!(check_outputs(ty, &meta(), Some(2))
            .unwrap_err()
            .contains("INT32"));
    }
}
