//! `POST /policy`: swap the policy through the pipeline and answer with the outcome.
//!
//! Either a JSON body `{"scaling": "NAME|PATH", "params": {...}, "limits": {...}}` (each key
//! optional; what is left out stays as configured), or the component itself with
//! `Content-Type: application/wasm` and the params as `?params=JSON`.
//! 200 with the outcome when installed; 422 when a stage rejected it; 400 for a malformed request;
//! 415 for any other content type (a cross-site form post cannot swap the policy); 413 for a body
//! over `max_policy_bytes`; 408 for a body slower than `admin_body_timeout_ms`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AdminState;
use crate::policy::candidate::{self, Origin};
use crate::policy::{PolicySource, ScalingLimits};
use crate::server::swap::{SwapRequest, SwapTrigger};

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
    body: Body,
) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let kind = match content_type.split(';').next().unwrap_or("").trim() {
        "application/json" => Kind::Json,
        "application/wasm" => Kind::Wasm,
        other => {
            let message =
                format!("POST /policy takes Content-Type application/json or application/wasm, not {other:?}\n");
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response();
        }
    };
    let (max, limits) = (state.limits.max_policy_bytes, &state.limits);
    let body = match tokio::time::timeout(
        std::time::Duration::from_millis(limits.admin_body_timeout_ms),
        axum::body::to_bytes(body, max),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            let message = format!("the body is over {max} bytes (max_policy_bytes), or was cut off\n");
            return (StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
        }
        Err(_) => {
            let message =
                format!("the body did not arrive within {} ms (admin_body_timeout_ms)\n", limits.admin_body_timeout_ms);
            return (StatusCode::REQUEST_TIMEOUT, message).into_response();
        }
    };
    let request = match parse(kind, query, &body) {
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

enum Kind {
    Json,
    Wasm,
}

fn parse(kind: Kind, query: SwapQuery, body: &[u8]) -> Result<SwapRequest, String> {
    if let Kind::Wasm = kind {
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
