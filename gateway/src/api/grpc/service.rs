//! `GRPCInferenceService`: the v2 endpoints over gRPC, answered by the same functions as REST
//! (`api::v2`): model lookup, readiness, the one infer path after decoding, the same metrics.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use super::pb::grpc_inference_service_server::GrpcInferenceService;
use super::pb::model_metadata_response::TensorMetadata;
use super::pb::*;
use super::status::to_status;
use crate::api::error::ApiError;
use crate::api::v2::{self, find, infer_decoded};
use crate::api::AppState;
use crate::exec::session::IoMeta;
use crate::model::ModelState;

/// The service over the gateway's state.
#[derive(Clone)]
pub struct V2Grpc {
    /// The models, metrics and settings REST serves too.
    pub state: Arc<AppState>,
}

fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

fn metadata(io: &[IoMeta]) -> Vec<TensorMetadata> {
    io.iter()
        .map(|t| TensorMetadata {
            name: t.name.clone(),
            datatype: t.dtype.as_v2().to_string(),
            shape: t.shape.clone(),
        })
        .collect()
}

impl V2Grpc {
    async fn infer(&self, mut req: ModelInferRequest) -> Result<ModelInferResponse, ApiError> {
        let model = find(&self.state, &req.model_name, version(&req.model_version))?;
        v2::ready(model)?;
        let (decoded, raw) = convert::decode(&mut req)?;
        drop(req);
        let answer = infer_decoded(&self.state, model, decoded).await?;
        Ok(convert::encode(
            &model.name,
            &model.cfg.version,
            answer,
            raw,
        ))
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for V2Grpc {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self
            .state
            .models
            .values()
            .all(|m| m.state() == ModelState::Ready);
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        req: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let r = req.into_inner();
        let m = find(&self.state, &r.name, version(&r.version)).map_err(to_status)?;
        Ok(Response::new(ModelReadyResponse {
            ready: m.state() == ModelState::Ready,
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "mark-rs".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec![],
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = req.into_inner();
        let m = find(&self.state, &r.name, version(&r.version)).map_err(to_status)?;
        let l = v2::ready(m).map_err(to_status)?;
        Ok(Response::new(ModelMetadataResponse {
            name: m.name.clone(),
            versions: vec![m.cfg.version.clone()],
            platform: "onnxruntime_onnx".into(),
            inputs: metadata(&l.inputs),
            outputs: metadata(&l.outputs),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let started = std::time::Instant::now();
        let req = req.into_inner();
        let model = req.model_name.clone();
        let label = if self.state.models.contains_key(&req.model_name) {
            req.model_name.clone()
        } else {
            String::new()
        };
        let r = self.infer(req).await;
        let status = match &r {
            Ok(_) => 200,
            Err(e) => e.status.as_u16(),
        };
        self.state.metrics.request(&label, status);
        v2::log_request(
            &self.state,
            &model,
            "grpc",
            status,
            started,
            r.as_ref().err(),
        );
        r.map(Response::new).map_err(to_status)
    }
}
