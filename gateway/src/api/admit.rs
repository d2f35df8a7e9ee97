//! Admit stage: check a decoded request against the model's declared inputs and outputs, and
//! order its inputs as the model declares them.

use super::error::ApiError;
use crate::codec::request::{InferRequest, RequestedOutput};
use crate::model::{Loaded, Model};
use crate::tensor::Tensor;

fn shape_str(s: &[i64]) -> String {
    format!(
        "[{}]",
        s.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    )
}

/// The admitted request: inputs in model order, its rows, its batching signature and the outputs to return.
pub struct Admitted {
    /// Inputs in the model's order.
    pub inputs: Vec<Tensor>,
    /// Rows along dim 0.
    pub items: u32,
    /// Non-batch dimensions of each input.
    pub signature: Vec<Vec<i64>>,
    /// Outputs to return, with their binary flags.
    pub outputs: Vec<RequestedOutput>,
}

/// Validates `req` for `model`.
pub fn admit(model: &Model, loaded: &Loaded, req: InferRequest) -> Result<Admitted, ApiError> {
    let name = &model.name;
    // KServe's SDK names the model in the body too: it must be the URL's
    if let Some(n) = req
        .model_name
        .as_deref()
        .filter(|n| !n.is_empty() && *n != name)
    {
        return Err(ApiError::bad_request(format!(
            "the request body names model '{n}' but the URL names '{name}'"
        )));
    }
    if let Some(v) = req
        .model_version
        .as_deref()
        .filter(|v| !v.is_empty() && *v != model.cfg.version)
    {
        return Err(ApiError::bad_request(format!(
            "the request body names version '{v}' of model '{name}', which serves version '{}'",
            model.cfg.version
        )));
    }
    let mut sent = req.inputs;
    for t in &sent {
        if !loaded.inputs.iter().any(|m| m.name == t.name) {
            let known: Vec<&str> = loaded.inputs.iter().map(|m| m.name.as_str()).collect();
            return Err(ApiError::bad_request(format!(
                "model '{name}' has no input '{}'; its inputs are {known:?}",
                t.name
            )));
        }
        if sent.iter().filter(|o| o.name == t.name).count() > 1 {
            return Err(ApiError::bad_request(format!(
                "input '{}' is given more than once",
                t.name
            )));
        }
    }
    let mut inputs = Vec::with_capacity(loaded.inputs.len());
    for m in &loaded.inputs {
        let pos = sent.iter().position(|t| t.name == m.name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "missing input '{}' ({} {}) for model '{name}'",
                m.name,
                m.dtype,
                shape_str(&m.shape)
            ))
        })?;
        let t = sent.swap_remove(pos);
        if t.dtype != m.dtype {
            return Err(ApiError::bad_request(format!(
                "input '{}' has datatype {}; model expects {}",
                t.name, t.dtype, m.dtype
            )));
        }
        let fits = t.shape.len() == m.shape.len()
            && t.shape.iter().zip(&m.shape).all(|(&a, &b)| b < 0 || a == b);
        if !fits {
            return Err(ApiError::bad_request(format!(
                "input '{}' has shape {}; model expects {}",
                t.name,
                shape_str(&t.shape),
                shape_str(&m.shape)
            )));
        }
        inputs.push(t);
    }
    let items = if loaded.batchable() {
        // a batched model leads every input with the batch dimension (`exec::batchability`)
        let rows = inputs
            .first()
            .and_then(|t| t.shape.first())
            .copied()
            .unwrap_or(0);
        if let Some(t) = inputs.iter().find(|t| t.shape.first() != Some(&rows)) {
            return Err(ApiError::bad_request(format!(
                "input '{}' has shape {} but input '{}' has {rows} rows: all inputs must share dim 0",
                t.name,
                shape_str(&t.shape),
                inputs[0].name
            )));
        }
        if rows < 1 || rows > i64::from(loaded.batching.max_batch_size) {
            return Err(ApiError::bad_request(format!(
                "batch of {rows} rows; model '{name}' accepts 1..={} per request",
                loaded.batching.max_batch_size
            )));
        }
        rows as u32
    } else {
        1
    };
    let signature = inputs
        .iter()
        .map(|t| t.shape.iter().skip(1).copied().collect())
        .collect();
    let outputs = if req.outputs.is_empty() {
        loaded
            .outputs
            .iter()
            .map(|o| RequestedOutput {
                name: o.name.clone(),
                binary: req.binary_default,
            })
            .collect()
    } else {
        for o in &req.outputs {
            if !loaded.outputs.iter().any(|m| m.name == o.name) {
                let known: Vec<&str> = loaded.outputs.iter().map(|m| m.name.as_str()).collect();
                return Err(ApiError::bad_request(format!(
                    "model '{name}' has no output '{}'; its outputs are {known:?}",
                    o.name
                )));
            }
        }
        req.outputs
    };
    Ok(Admitted {
        inputs,
        items,
        signature,
        outputs,
    })
}
