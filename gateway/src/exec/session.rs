//! Building sessions and reading model metadata from them.

use std::path::Path;

use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::{TensorElementType, ValueType};
use serde::Serialize;

use super::ort_lib;
use crate::config::{ExecutionProvider, ModelConfig};
use crate::tensor::DType;
use crate::work::ExecError;

/// An input or output as the model declares it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IoMeta {
    /// Tensor name.
    pub name: String,
    /// Element type (v2 spelling when serialized).
    #[serde(rename = "datatype", serialize_with = "ser_dtype")]
    pub dtype: DType,
    /// Shape with -1 for dynamic dimensions.
    pub shape: Vec<i64>,
}

fn ser_dtype<S: serde::Serializer>(d: &DType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(d.as_v2())
}

fn to_dtype(t: TensorElementType) -> Option<DType> {
    Some(match t {
        TensorElementType::Float32 => DType::Fp32,
        TensorElementType::Float64 => DType::Fp64,
        TensorElementType::Int64 => DType::Int64,
        TensorElementType::Int32 => DType::Int32,
        TensorElementType::Uint8 => DType::Uint8,
        TensorElementType::Bool => DType::Bool,
        TensorElementType::String => DType::Bytes,
        _ => return None,
    })
}

fn io_meta(model: &str, name: &str, ty: &ValueType) -> Result<IoMeta, ExecError> {
    match ty {
        ValueType::Tensor { ty, shape, .. } => {
            let dtype = to_dtype(*ty).ok_or_else(|| ExecError::Load {
                model: model.into(),
                message: format!(
                    "tensor '{name}' has element type {ty:?}, which the gateway does not carry"
                ),
            })?;
            Ok(IoMeta {
                name: name.into(),
                dtype,
                shape: shape.to_vec(),
            })
        }
        other => Err(ExecError::Load {
            model: model.into(),
            message: format!("'{name}' is a {other:?}, not a tensor"),
        }),
    }
}

/// Which provider a session actually got (CUDA may fall back to CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveProvider {
    /// CPU provider.
    Cpu,
    /// CUDA provider registered successfully.
    Cuda,
}

fn base_builder(
    model: &str,
    cfg: &ModelConfig,
) -> Result<ort::session::builder::SessionBuilder, ExecError> {
    let env = ort_lib::init(None)?;
    let load = |e: String| ExecError::Load {
        model: model.into(),
        message: e,
    };
    let mut b = Session::builder(env).map_err(|e| load(e.to_string()))?;
    b = b
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| load(e.to_string()))?;
    if cfg.intra_threads > 0 {
        b = b
            .with_intra_threads(cfg.intra_threads)
            .map_err(|e| load(e.to_string()))?;
    }
    Ok(b)
}

/// Builds one session for `path` with the configured provider. CUDA registration failure is
/// logged and the session is built on CPU instead.
pub fn build(
    model: &str,
    path: &Path,
    cfg: &ModelConfig,
) -> Result<(Session, ActiveProvider), ExecError> {
    let load = |e: String| ExecError::Load {
        model: model.into(),
        message: e,
    };
    let mut active = ActiveProvider::Cpu;
    let mut builder = base_builder(model, cfg)?;
    if cfg.execution_provider == ExecutionProvider::Cuda {
        let cuda = ort::ep::CUDA::default().build().error_on_failure();
        match builder.with_execution_providers([cuda]) {
            Ok(b) => {
                builder = b;
                active = ActiveProvider::Cuda;
            }
            Err(e) => {
                tracing::warn!(model, cause = %e, "CUDA execution provider unavailable; falling back to CPU");
                builder = base_builder(model, cfg)?;
            }
        }
    }
    let session = builder
        .commit_from_file(path)
        .map_err(|e| load(e.to_string()))?;
    Ok((session, active))
}

/// Declared inputs and outputs of a session.
pub fn metadata(model: &str, session: &Session) -> Result<(Vec<IoMeta>, Vec<IoMeta>), ExecError> {
    let inputs = session
        .inputs()
        .iter()
        .map(|o| io_meta(model, o.name(), o.dtype()))
        .collect::<Result<_, _>>()?;
    let outputs = session
        .outputs()
        .iter()
        .map(|o| io_meta(model, o.name(), o.dtype()))
        .collect::<Result<_, _>>()?;
    Ok((inputs, outputs))
}

/// The name ONNX gives each input's and output's leading dimension (empty when unnamed or fixed),
/// in the order of `metadata`: what `batchability::by_signature` compares.
pub fn leading_symbols(session: &Session) -> (Vec<String>, Vec<String>) {
    let first = |ty: &ValueType| match ty {
        ValueType::Tensor {
            dimension_symbols, ..
        } => dimension_symbols.first().cloned().unwrap_or_default(),
        _ => String::new(),
    };
    (
        session.inputs().iter().map(|o| first(o.dtype())).collect(),
        session.outputs().iter().map(|o| first(o.dtype())).collect(),
    )
}
