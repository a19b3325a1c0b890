//! The worker API under `/worker/v1`, for `r2v worker --api URL --token T` on other
//! machines. Every call carries `Authorization: Bearer <worker token>`; without a
//! configured token the API does not exist (404). The token is checked by a layer, before
//! a handler runs, so no body is read for a caller without it; bodies are then read up to a
//! limit that fits each call (the output upload up to `--max-body-bytes`).

use crate::error::ApiError;
use crate::routes::read_body;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use r2v_worker::wire::{
    CompleteBody, LogsBody, OutputQuery, OutputStored, ReleaseBody, WorkerBody,
};
use serde::de::DeserializeOwned;
use serde_json::json;
use subtle::ConstantTimeEq;

/// Largest JSON body of a worker's control call (claims, heartbeats, releases). Completions
/// echo the request's reference URLs in their errors, so they get `--max-body-bytes`.
const CONTROL_BODY_BYTES: u64 = 1 << 20;
/// Largest batch of log lines.
const LOGS_BODY_BYTES: u64 = 4 << 20;

/// The worker API's routes, behind the token check.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/worker/v1/claim", post(claim))
        .route("/worker/v1/requests/{id}/heartbeat", post(heartbeat))
        .route("/worker/v1/requests/{id}/logs", post(logs))
        .route("/worker/v1/requests/{id}/output", put(output))
        .route("/worker/v1/requests/{id}/complete", post(complete))
        .route("/worker/v1/requests/{id}/release", post(release))
        .route_layer(middleware::from_fn_with_state(state, require_token))
}

/// Answers 404 (no worker API) or 401 before the handler, and so before the body, is read.
async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_token(&state, request.headers())?;
    Ok(next.run(request).await)
}

/// A JSON body of at most `limit` bytes.
async fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<T, ApiError> {
    let bytes = read_body(headers, body, limit).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("The body is not the expected JSON: {e}")))
}

fn check_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.config.worker_token else {
        return Err(ApiError::NotFound("Not found".into()));
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(expected.0.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("Invalid worker token".into()))
    }
}

/// `POST /worker/v1/claim`: 200 with a job, or 204.
pub async fn claim(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body: WorkerBody = json_body(&headers, body, CONTROL_BODY_BYTES).await?;
    match state.claim_job(&body.worker_id).await? {
        Some(job) => Ok(Json(job).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `POST /worker/v1/requests/{id}/heartbeat`.
pub async fn heartbeat(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body: WorkerBody = json_body(&headers, body, CONTROL_BODY_BYTES).await?;
    Ok(Json(state.heartbeat_job(&id, &body.worker_id).await?).into_response())
}

/// `POST /worker/v1/requests/{id}/logs`.
pub async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let body: LogsBody = json_body(&headers, body, LOGS_BODY_BYTES).await?;
    state.append_job_logs(&id, &body.lines).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /worker/v1/requests/{id}/output`: the body is the mp4; answers its signed URL.
pub async fn output(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<OutputQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, state.config.max_body_bytes).await?;
    let url = state
        .store_job_output(
            &id,
            query.file_name.as_deref().unwrap_or("output.mp4"),
            bytes,
        )
        .await
        .map_err(ApiError::Internal)?;
    Ok(Json(OutputStored { url }).into_response())
}

/// `POST /worker/v1/requests/{id}/complete`: 204, or 409 when the lease was lost.
pub async fn complete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body: CompleteBody = json_body(&headers, body, state.config.max_body_bytes).await?;
    let held = state
        .complete_job(&id, &body.worker_id, body.outcome, body.inference_time)
        .await?;
    Ok(lease_reply(held))
}

/// 204 when the worker still held the request, else 409.
fn lease_reply(held: bool) -> Response {
    if held {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (
            StatusCode::CONFLICT,
            Json(json!({ "detail": "The lease was lost" })),
        )
            .into_response()
    }
}

/// `POST /worker/v1/requests/{id}/release`: 204, or 409 when the lease was lost.
pub async fn release(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body: ReleaseBody = json_body(&headers, body, CONTROL_BODY_BYTES).await?;
    let held = state
        .release_job(&id, &body.worker_id, &body.reason)
        .await?;
    Ok(lease_reply(held))
}
