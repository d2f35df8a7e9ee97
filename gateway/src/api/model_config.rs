//! `GET /v2/models/{m}[/versions/{v}]/config`: the model's configuration in Triton's JSON form,
//! which `tritonclient`'s `get_model_config` reads. Its `max_batch_size` is 0 for a model that
//! runs one request at a time, and then `dims` keep the leading dimension (as Triton's do).

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

use super::error::{json_ok, ApiError};
use super::v2::{find, ready};
use super::AppState;
use crate::exec::session::IoMeta;
use crate::tensor::DType;

/// Triton's name of a datatype in a model config.
fn triton_type(d: DType) -> &'static str {
    match d {
        DType::Fp32 => "TYPE_FP32",
        DType::Fp64 => "TYPE_FP64",
        DType::Int64 => "TYPE_INT64",
        DType::Int32 => "TYPE_INT32",
        DType::Uint8 => "TYPE_UINT8",
        DType::Bool => "TYPE_BOOL",
        DType::Bytes => "TYPE_STRING",
    }
}

fn io(list: &[IoMeta], batched: bool) -> Vec<serde_json::Value> {
    list.iter()
        .map(|m| {
            let dims = if batched {
                m.shape.get(1..).unwrap_or(&[])
            } else {
                &m.shape[..]
            };
            serde_json::json!({"name": m.name, "data_type": triton_type(m.dtype), "dims": dims})
        })
        .collect()
}

/// The handler.
pub fn model_config(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let m = find(state, name, version)?;
    let l = ready(m)?;
    let batched = l.batchable();
    let mut body = serde_json::json!({
        "name": m.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"specific": {"versions": [m.cfg.version]}},
        "max_batch_size": l.batching.max_batch_size,
        "input": io(&l.inputs, batched),
        "output": io(&l.outputs, batched),
        "parameters": {
            "batching_mode": {"string_value": l.batching.mode},
            "batching_reason": {"string_value": l.batching.reason},
            "slo_ms": {"string_value": m.cfg.slo_ms.to_string()},
        },
    });
    if batched {
        body["dynamic_batching"] = serde_json::json!({});
    }
    Ok(json_ok(&body))
}
