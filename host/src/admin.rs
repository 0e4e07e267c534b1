//! The host's one HTTP server: plugin versions, feature lookups, metrics and
//! probes of the running pipeline.
//!
//! - `GET /features/{view}/{entity}`: the entity's features as stored in the
//!   online store (Redis in any layout, or the embedded store) as the feature
//!   record JSON, 404 when absent;
//! - `GET /metrics`: Prometheus text format (see `docs/operations.md`);
//! - `GET /views`: the views' names;
//! - `GET /views/{view}/plugins`: every version seen (name, version, sha256,
//!   state, origin, reason, counters, the pause of its swap);
//! - `POST /views/{view}/plugins` (body: the component bytes): validate and
//!   queue a new version; 422 with the reason when it is rejected (the running
//!   version keeps running);
//! - `POST /views/{view}/plugins/rollback`: queue the previous version again;
//! - `/plugins` and `/plugins/rollback`: the same for a pipeline with one view;
//! - `GET /healthz`: liveness; `GET /readyz`: 200 while the sources run, each
//!   consumer group (input and repartitioned views') has assigned at least once
//!   and every assigned partition's window state is rebuilt, else 503;
//! - `GET /partitions`: each assigned partition's state (assigned, rebuilding,
//!   ready) with its transitions and replay, and the host's readiness (JSON);
//! - `GET /` and `GET /status`: the status page (static HTML, no data in it);
//!   `GET /status.json`: what the page shows.
//!
//! Bound to loopback by default; with a token, every request but the probes
//! (`/healthz`, `/readyz`) and the page itself needs
//! `Authorization: Bearer <token>`; the page sends the token it is given.

use std::net::SocketAddr;
use std::sync::Arc;

use std::collections::BTreeMap;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::plugin::{PluginManager, ReloadError};
use crate::serving::Serving;
use crate::status::{self, Status};

/// Largest plugin upload accepted (Python and JavaScript components are tens of MiB).
const MAX_UPLOAD: usize = 256 << 20;

#[derive(Clone)]
struct AdminState {
    managers: Arc<BTreeMap<String, Arc<PluginManager>>>,
    token: Option<String>,
    serving: Serving,
    status: Status,
}

impl AdminState {
    /// The manager of `view`, or of the only view when `view` is `None`.
    fn manager(&self, view: Option<&str>) -> Result<Arc<PluginManager>, Box<Response>> {
        match view {
            Some(v) => self
                .managers
                .get(v)
                .cloned()
                .ok_or_else(|| refusal(StatusCode::NOT_FOUND, format!("no view named `{v}`"))),
            None if self.managers.len() == 1 => {
                Ok(self.managers.values().next().expect("one view").clone())
            }
            None => Err(refusal(
                StatusCode::BAD_REQUEST,
                "this pipeline has several views: use /views/{view}/plugins".into(),
            )),
        }
    }
}

/// Starts the server on `listen`, and the status page's sampler; both stop
/// when `shutdown` is cancelled.
pub async fn serve(
    listen: &str,
    token: Option<String>,
    serving: Serving,
    status: Status,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let managers: BTreeMap<String, Arc<PluginManager>> = serving
        .views
        .iter()
        .map(|v| (v.name.clone(), v.manager.clone()))
        .collect();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && token.is_none() {
        tracing::warn!(%addr, "admin endpoint listens beyond loopback without a token");
    }
    let app = Router::new()
        .route("/views", get(views))
        .route("/views/{view}/plugins", get(list_view).post(load_view))
        .route("/views/{view}/plugins/rollback", post(rollback_view))
        .route("/plugins", get(list).post(load))
        .route("/plugins/rollback", post(rollback))
        .route("/features/{view}/{entity}", get(features))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/partitions", get(partitions))
        .route("/", get(page))
        .route("/status", get(page))
        .route("/status.json", get(status_json))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .with_state(AdminState {
            managers: Arc::new(managers),
            token,
            serving: serving.clone(),
            status: status.clone(),
        });
    status.spawn_sampler(serving, status::SAMPLE_EVERY, shutdown.clone());
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    tracing::info!(%addr, "HTTP server listening (admin, features, metrics)");
    Ok(addr)
}

fn authorized(state: &AdminState, headers: &HeaderMap) -> Result<(), Box<Response>> {
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
        Err(refusal(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".into(),
        ))
    }
}

/// An early answer of a handler (boxed: a `Response` is large).
fn refusal(status: StatusCode, message: String) -> Box<Response> {
    Box::new(error(status, message))
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn features(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path((view, entity)): Path<(String, String)>,
) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return *denied;
    }
    let Some(served) = state.serving.view(&view) else {
        return error(StatusCode::NOT_FOUND, format!("no view named `{view}`"));
    };
    match state.serving.store.get(served, &entity).await {
        Ok(Some(json)) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no features for `{entity}` in view `{view}`"),
        ),
        Err(e) => error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return *denied;
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.serving.render_metrics() + &state.status.render_metrics(&state.serving),
    )
        .into_response()
}

async fn partitions(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return *denied;
    }
    Json(state.status.readiness.report()).into_response()
}

/// The page holds no data (it fetches `/status.json` with the token it is
/// given), so it is served without one.
async fn page() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        status::PAGE,
    )
        .into_response()
}

async fn status_json(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return *denied;
    }
    Json(state.status.summary(&state.serving)).into_response()
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.serving.is_ready() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn views(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return *denied;
    }
    let names: Vec<&String> = state.managers.keys().collect();
    Json(serde_json::json!({ "views": names })).into_response()
}

async fn list(state: State<AdminState>, headers: HeaderMap) -> Response {
    list_of(state, headers, None).await
}

async fn list_view(
    state: State<AdminState>,
    headers: HeaderMap,
    Path(view): Path<String>,
) -> Response {
    list_of(state, headers, Some(view)).await
}

async fn list_of(
    State(state): State<AdminState>,
    headers: HeaderMap,
    view: Option<String>,
) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return *denied;
    }
    match state.manager(view.as_deref()) {
        Ok(m) => Json(serde_json::json!({ "versions": m.versions() })).into_response(),
        Err(e) => *e,
    }
}

async fn load(state: State<AdminState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    load_into(state, headers, None, body).await
}

async fn load_view(
    state: State<AdminState>,
    headers: HeaderMap,
    Path(view): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    load_into(state, headers, Some(view), body).await
}

async fn load_into(
    State(state): State<AdminState>,
    headers: HeaderMap,
    view: Option<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return *denied;
    }
    let manager = match state.manager(view.as_deref()) {
        Ok(m) => m,
        Err(e) => return *e,
    };
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

async fn rollback(state: State<AdminState>, headers: HeaderMap) -> Response {
    rollback_of(state, headers, None).await
}

async fn rollback_view(
    state: State<AdminState>,
    headers: HeaderMap,
    Path(view): Path<String>,
) -> Response {
    rollback_of(state, headers, Some(view)).await
}

async fn rollback_of(
    State(state): State<AdminState>,
    headers: HeaderMap,
    view: Option<String>,
) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return *denied;
    }
    let manager = match state.manager(view.as_deref()) {
        Ok(m) => m,
        Err(e) => return *e,
    };
    match manager.rollback() {
        Ok(info) => Json(info).into_response(),
        Err(e @ ReloadError::NothingToRollBack) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}
