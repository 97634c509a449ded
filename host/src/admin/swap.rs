//! `POST /policy`: swap the policy through the pipeline and answer with the outcome.
//!
//! Either a JSON body `{"scaling": "NAME|PATH", "params": {...}, "limits": {...}}` (each key
//! optional; what is left out stays as configured), or the component itself with
//! `Content-Type: application/wasm` and the params as `?params=JSON`.
//! 200 with the outcome when installed; 422 when a stage rejected it; 400 for a malformed request.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AdminState;
use crate::policy::candidate::{self, Origin};
use crate::policy::{PolicySource, ScalingLimits};
use crate::server::swap::{SwapRequest, SwapTrigger};

/// The largest component `POST /policy` takes (an interpreter-based guest is tens of MiB).
pub const MAX_UPLOAD_BYTES: usize = 128 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapBody {
    scaling: Option<String>,
    params: Option<serde_json::Value>,
    limits: Option<ScalingLimits>,
}

#[derive(Deserialize)]
pub(super) struct SwapQuery {
    params: Option<String>,
}

pub(super) async fn post_policy(
    State(state): State<AdminState>,
    Query(query): Query<SwapQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = match parse(&headers, query, &body) {
        Ok(r) => r,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    match state.scheduler.swap(request).await {
        Ok(outcome) => {
            let code = if outcome.accepted { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
            (code, Json(outcome)).into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the scheduler is shutting down\n").into_response(),
    }
}

fn parse(headers: &HeaderMap, query: SwapQuery, body: &[u8]) -> Result<SwapRequest, String> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("application/wasm") {
        let params = query.params.map(|p| object(&p)).transpose()?;
        let origin = Some(Origin::Upload(Arc::new(body.to_vec())));
        return Ok(SwapRequest { trigger: SwapTrigger::Admin, origin, params, limits: None });
    }
    let body: SwapBody = serde_json::from_slice(body).map_err(|e| {
        format!(
            "expected a JSON body such as {{\"scaling\": \"vanilla\", \"params\": {{\"upper_task_ratio\": 8}}}} (keys: scaling, params, limits), or a component with Content-Type: application/wasm: {e}"
        )
    })?;
    let origin = body
        .scaling
        .map(|spec| PolicySource::parse(&spec, None).map(Origin::Source).map_err(|e| format!("scaling: {e}")))
        .transpose()?;
    let params = body.params.map(|p| object(&p.to_string())).transpose()?;
    Ok(SwapRequest { trigger: SwapTrigger::Admin, origin, params, limits: body.limits })
}

/// Params must be a JSON object.
fn object(text: &str) -> Result<String, String> {
    candidate::json_object(text).map(|()| text.to_owned())
}
