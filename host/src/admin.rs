//! The admin HTTP endpoint: plugin versions of the running pipeline.
//!
//! - `GET /plugins`: every version seen (name, version, sha256, state, origin, reason);
//! - `POST /plugins` (body: the component bytes): validate and queue a new version;
//!   422 with the reason when it is rejected (the running version keeps running);
//! - `POST /plugins/rollback`: queue the previous version again;
//! - `GET /healthz`: liveness.
//!
//! Bound to loopback by default; with a token, every request needs
//! `Authorization: Bearer <token>`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::plugin::{PluginManager, ReloadError};

/// Largest plugin upload accepted (Python and JavaScript components are tens of MiB).
const MAX_UPLOAD: usize = 256 << 20;

#[derive(Clone)]
struct AdminState {
    manager: Arc<PluginManager>,
    token: Option<String>,
}

/// Starts the endpoint on `listen`; it stops when `shutdown` is cancelled.
pub async fn serve(
    listen: &str,
    token: Option<String>,
    manager: Arc<PluginManager>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && token.is_none() {
        tracing::warn!(%addr, "admin endpoint listens beyond loopback without a token");
    }
    let app = Router::new()
        .route("/plugins", get(list).post(load))
        .route("/plugins/rollback", post(rollback))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .with_state(AdminState { manager, token });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    });
    tracing::info!(%addr, "admin endpoint listening");
    Ok(addr)
}

fn authorized(state: &AdminState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = &state.token else {
        return Ok(());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(token.as_str()) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".into(),
        ))
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn list(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return denied;
    }
    Json(serde_json::json!({ "versions": state.manager.versions() })).into_response()
}

async fn load(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return denied;
    }
    let manager = state.manager.clone();
    let result =
        tokio::task::spawn_blocking(move || manager.load(&body, "admin upload", false)).await;
    match result {
        Ok(Ok(info)) => Json(info).into_response(),
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("validation task failed: {e}"),
        ),
    }
}

async fn rollback(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return denied;
    }
    match state.manager.rollback() {
        Ok(info) => Json(info).into_response(),
        Err(e @ ReloadError::NothingToRollBack) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}
