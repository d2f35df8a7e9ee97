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
/// whole; several get their rows of each output, which must then lead with one row per input row.
/// `None` when an output cannot be divided so (a scalar, a reduction over the batch, a
/// transpose): no request may then be answered from this run, since every answer would hold
/// other requests' data (issue 25).
pub fn split_rows(outs: &[Tensor], sizes: &[usize]) -> Option<Vec<Vec<Tensor>>> {
    if sizes.len() == 1 {
        return Some(vec![outs.to_vec()]);
    }
    let total: usize = sizes.iter().sum();
    if outs
        .iter()
        .any(|t| t.shape.is_empty() || t.batch() != total)
    {
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
    let Some(split) = split_rows(outs, sizes) else {
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
    if let Err((_, job)) = ctx.pool.submit_or_return(Job {
        batch,
        permit: None,
    }) {
        for p in job.batch {
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
/// outputs in the declared order. A backend that fails this has failed the batch.
pub fn check_outputs(
    outs: Vec<Tensor>,
    expected: &[IoMeta],
    total: usize,
) -> Result<Vec<Tensor>, WireError> {
    check(outs, expected, total).map_err(WireError::WrongBatch)
}

fn check(outs: Vec<Tensor>, expected: &[IoMeta], total: usize) -> Result<Vec<Tensor>, String> {
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
                        && (if i == 0 && b < 0 {
                            a as u64 == total as u64
                        } else {
                            b < 0 || a == b
                        })
                });
        if !dims_fit {
            return Err(format!(
                "output '{}' has shape {:?}; a batch of {total} needs {:?}",
                m.name, t.shape, m.shape
            ));
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
    fn a_good_answer_is_put_in_declared_order() {
        let outs = check_outputs(answer(3), &meta(), 3).unwrap();
        assert_eq!(outs[0].name, "logits");
        assert_eq!(outs[1].name, "probs");
    }

    #[test]
    fn lying_answers_are_refused() {
        let check_outputs =
            |o, m: &[IoMeta], t| super::check_outputs(o, m, t).map_err(|e| e.to_string());
        // the whole batch's rows for a batch of 2 (would send every client others' results)
        let e = check_outputs(answer(3), &meta(), 2).unwrap_err();
        assert!(e.contains("a batch of 2"), "{e}");
        // short data
        let mut short = answer(2);
        if let TensorData::Raw(r) = &mut short[0].data {
            r.truncate(5);
        }
        let e = check_outputs(short, &meta(), 2).unwrap_err();
        assert!(e.contains("does not match its shape"), "{e}");
        // a missing output
        let mut missing = answer(2);
        missing.pop();
        assert!(check_outputs(missing, &meta(), 2).is_err());
        // a duplicated output instead of the other
        let mut dup = answer(2);
        dup[1].name = "probs".into();
        let e = check_outputs(dup, &meta(), 2).unwrap_err();
        assert!(e.contains("'logits' is missing"), "{e}");
        // wrong dtype
        let mut ty = answer(2);
        ty[0].dtype = DType::Int32;
        assert!(check_outputs(ty, &meta(), 2).unwrap_err().contains("INT32"));
    }
}
