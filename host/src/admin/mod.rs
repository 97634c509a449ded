//! The admin HTTP endpoints: `GET /status` (JSON), `GET /metrics` (Prometheus text),
//! `POST /policy` (swap) and the live dashboard (`GET /`, `/history`, `/decision/SEQ`: see
//! [`dashboard`]). Loopback by default; when a token is set every request needs
//! `Authorization: Bearer TOKEN` (or, for the dashboard's reads, its session cookie).

mod dashboard;
mod metrics;
mod swap;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::scheduler::Limits;
use crate::scheduler::status::Status;
use crate::server::{Handle, ShellStatus};

#[derive(Clone)]
pub(crate) struct AdminState {
    scheduler: Handle,
    token: Option<String>,
    limits: Arc<Limits>,
}

/// Serves the admin endpoints on `address`; returns the bound address.
pub async fn serve(
    address: SocketAddr,
    scheduler: Handle,
    token: Option<String>,
    limits: &Limits,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        let setting = "`admin_address` (--admin, EBBTIDE_ADMIN_ADDRESS, or [scheduler] admin_address)";
        anyhow::anyhow!("cannot listen for admin HTTP on {address}: {}", crate::protocol::bind_error(&e, setting))
    })?;
    let bound = listener.local_addr()?;
    let state = AdminState { scheduler, token, limits: Arc::new(limits.clone()) };
    // The body is read by the handler, under admin_body_timeout_ms and max_policy_bytes.
    let app = Router::new()
        .route("/status", get(status))
        .route("/metrics", get(prometheus))
        .route("/policy", post(swap::post_policy).layer(axum::extract::DefaultBodyLimit::disable()))
        .merge(dashboard::routes())
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .merge(dashboard::public_routes())
        .with_state(state);
    tokio::spawn(accept_loop(listener, app, limits.clone()));
    tracing::debug!(address = %bound, "admin HTTP listening");
    Ok(bound)
}

/// HTTP/1 with the bounds axum::serve lacks: at most `admin_max_connections` at once, and headers due
/// within `admin_header_timeout_ms`, so an idle or trickling client cannot hold a connection.
async fn accept_loop(listener: tokio::net::TcpListener, app: Router, limits: Limits) {
    let open = Arc::new(tokio::sync::Semaphore::new(limits.admin_max_connections));
    let header_timeout = Duration::from_millis(limits.admin_header_timeout_ms);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::error!("admin HTTP: accepting failed: {e}; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            tracing::warn!(
                "admin HTTP: refused a connection: {} are open (admin_max_connections)",
                limits.admin_max_connections
            );
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!("admin HTTP connection ended: {e}");
            }
        });
    }
}

async fn authorize(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::scheduler::constant_time_eq(given.as_bytes(), token.as_bytes())
            && !dashboard::session_allows(&request, token)
        {
            if let Some(login) = dashboard::login_instead(&request) {
                return login;
            }
            return (StatusCode::UNAUTHORIZED, "this scheduler requires Authorization: Bearer TOKEN\n").into_response();
        }
    }
    next.run(request).await
}

async fn current(state: &AdminState) -> Result<(ShellStatus, Status), Response> {
    state
        .scheduler
        .status()
        .await
        .ok_or_else(|| (StatusCode::SERVICE_UNAVAILABLE, "the scheduler is shutting down\n").into_response())
}

async fn status(State(state): State<AdminState>) -> Response {
    match current(&state).await {
        Ok((shell, status)) => axum::Json(status_json(&shell, &status)).into_response(),
        Err(response) => response,
    }
}

/// The `/status` document: the policy, then the cluster.
pub fn status_json(shell: &ShellStatus, status: &Status) -> serde_json::Value {
    let c = &status.counters;
    serde_json::json!({
        "policy": shell.policy,
        "fallback_active": shell.policy.fallback_active,
        "swaps": shell.swaps,
        "shadow": shell.shadow,
        "decisions": {
            "total": c.decisions,
            "failed": c.decisions_failed,
            "in_flight": status.decisions_in_flight,
            "last": status.last_decision,
        },
        "adapters": status.adapters,
        "groups": status.groups,
        "workers": status.workers,
        "tasks": status.tasks,
        "diagnostics": status.diagnostics,
        "counters": c,
    })
}

async fn prometheus(State(state): State<AdminState>) -> Response {
    match current(&state).await {
        Ok((shell, status)) => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics::render(&shell, &status)).into_response()
        }
        Err(response) => response,
    }
}
