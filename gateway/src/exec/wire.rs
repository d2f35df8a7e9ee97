//! The batch wire format between the gateway and its remote backends (fleet workers and Lambda):
//! one KServe v2 request with binary tensors per batch, answered with binary outputs.

use std::time::Duration;

use super::executor::{finish_pending, ExecutorPool, Job};
use super::ExecError;
use crate::batching::queue::Pending;
use crate::metrics::ModelMetrics;
use crate::tensor::{DType, Tensor, TensorData};

/// Concatenates the batch's inputs along dim 0; returns them and each request's item count.
pub fn merge(batch: &[Pending]) -> (Vec<Tensor>, Vec<usize>) {
    let sizes: Vec<usize> = batch.iter().map(|p| p.items as usize).collect();
    let n_inputs = batch[0].inputs.len();
    let merged = (0..n_inputs)
        .map(|i| Tensor::concat(&batch.iter().map(|p| &p.inputs[i]).collect::<Vec<_>>()))
        .collect();
    (merged, sizes)
}

/// A v2 request body with every input binary and binary outputs asked for; returns the body and
/// the length of its JSON header (the `Inference-Header-Content-Length`).
pub fn encode_batch(inputs: &[Tensor]) -> (Vec<u8>, usize) {
    let mut bin = Vec::new();
    let ins: Vec<serde_json::Value> = inputs
        .iter()
        .map(|t| {
            let b = match &t.data {
                TensorData::Raw(r) => r.clone(),
                TensorData::Strings(s) => s
                    .iter()
                    .flat_map(|x| (x.len() as u32).to_le_bytes().into_iter().chain(x.iter().copied()))
                    .collect(),
            };
            let v = serde_json::json!({"name": t.name, "shape": t.shape, "datatype": t.dtype.as_v2(), "parameters": {"binary_data_size": b.len()}});
            bin.extend_from_slice(&b);
            v
        })
        .collect();
    let header =
        serde_json::json!({"inputs": ins, "parameters": {"binary_data_output": true}}).to_string();
    let n = header.len();
    let mut body = header.into_bytes();
    body.extend_from_slice(&bin);
    (body, n)
}

/// Answers every request of `batch` with its slice of the batch outputs `outs`.
pub fn finish_batch(
    batch: Vec<Pending>,
    sizes: &[usize],
    outs: &[Tensor],
    metrics: &ModelMetrics,
    slo: Duration,
) {
    metrics
        .batch_size
        .observe(sizes.iter().sum::<usize>() as f64);
    let total: usize = sizes.iter().sum();
    let split: Vec<Vec<Tensor>> = outs
        .iter()
        .map(|t| {
            if t.batch() == total {
                t.split(sizes)
            } else {
                vec![t.clone(); sizes.len()]
            }
        })
        .collect();
    for (i, p) in batch.into_iter().enumerate() {
        finish_pending(
            p,
            Ok(split.iter().map(|s| s[i].clone()).collect()),
            metrics,
            slo,
        );
    }
}

/// Runs a batch a remote backend failed on the gateway's own executors (queued behind what they
/// run); if the pool is gone, answers every request with the error.
pub fn retry_locally(
    pool: &ExecutorPool,
    batch: Vec<Pending>,
    model: &str,
    metrics: &ModelMetrics,
    slo: Duration,
) {
    if let Err((_, job)) = pool.submit_or_return(Job {
        batch,
        permit: None,
    }) {
        for p in job.batch {
            finish_pending(p, Err(ExecError::Gone(model.to_string())), metrics, slo);
        }
    }
}

/// Decodes a binary v2 response into its output tensors.
pub fn decode_outputs(body: &[u8], header_len: Option<usize>) -> Result<Vec<Tensor>, String> {
    let n = header_len.unwrap_or(body.len()).min(body.len());
    let head: serde_json::Value = serde_json::from_slice(&body[..n]).map_err(|e| e.to_string())?;
    let mut rest = &body[n..];
    let mut out = Vec::new();
    for o in head["outputs"].as_array().ok_or("no outputs")? {
        let name = o["name"].as_str().ok_or("output without name")?.to_string();
        let dtype = DType::from_v2(o["datatype"].as_str().unwrap_or("")).ok_or("bad datatype")?;
        let shape: Vec<i64> = o["shape"]
            .as_array()
            .ok_or("no shape")?
            .iter()
            .filter_map(|d| d.as_i64())
            .collect();
        let size = o["parameters"]["binary_data_size"]
            .as_u64()
            .ok_or("output not binary")? as usize;
        if size > rest.len() {
            return Err("truncated binary output".into());
        }
        let (mine, tail) = rest.split_at(size);
        rest = tail;
        let data = if dtype == DType::Bytes {
            let mut v = Vec::new();
            let mut r = mine;
            while r.len() >= 4 {
                let l = u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize;
                v.push(r[4..4 + l.min(r.len() - 4)].to_vec());
                r = &r[(4 + l).min(r.len())..];
            }
            TensorData::Strings(v)
        } else {
            TensorData::Raw(mine.to_vec())
        };
        out.push(Tensor {
            name,
            dtype,
            shape,
            data,
        });
    }
    Ok(out)
}
