//! Health, metrics, the webhook JWKS, the OpenAPI document and the error docs.

use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::HealthResponse;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `GET /health`: 200 once the server is serving.
#[utoipa::path(get, path = "/health", tag = "meta", summary = "Liveness and queue size", security(()),
    responses((status = 200, body = HealthResponse), (status = 500, body = crate::wire::PlainError)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<HealthResponse>, ApiError> {
    let counts = state.gauges.read(state.store.as_ref()).await?;
    Ok(Json(HealthResponse {
        status: "ok".to_owned(),
        queued: counts.queued,
        in_progress: counts.in_progress,
    }))
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let counts = state.gauges.read(state.store.as_ref()).await?;
    metrics::gauge!("r2v_queue_depth").set(counts.queued as f64);
    metrics::gauge!("r2v_requests_in_progress").set(counts.in_progress as f64);
    let text = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// `GET /.well-known/jwks.json`.
pub async fn jwks(State(state): State<AppState>) -> Json<Value> {
    Json(state.webhooks.jwks())
}

/// `GET /openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

/// `GET /docs/errors`: the error types every `detail` item links to.
pub async fn error_docs() -> Response {
    (
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        include_str!("../../../../docs/errors.md"),
    )
        .into_response()
}

/// Anything else: a JSON 404.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "detail": "Not found" })),
    )
        .into_response()
}
