//! The worker API under `/worker/v1`, for `r2v worker --api URL --token T` on other
//! machines. Every call carries `Authorization: Bearer <worker token>`; without a
//! configured token the API does not exist (404).

use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use r2v_api::Outcome;
use r2v_worker::LogEntry;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

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

/// A body naming the worker.
#[derive(Debug, Deserialize)]
pub struct WorkerBody {
    worker_id: String,
}

/// `POST /worker/v1/claim`: 200 with a job, or 204.
pub async fn claim(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<WorkerBody>,
) -> Result<Response, ApiError> {
    check_token(&state, &headers)?;
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
    Json(body): Json<WorkerBody>,
) -> Result<Response, ApiError> {
    check_token(&state, &headers)?;
    Ok(Json(state.heartbeat_job(&id, &body.worker_id).await?).into_response())
}

/// The body of a log append.
#[derive(Debug, Deserialize)]
pub struct LogsBody {
    lines: Vec<LogEntry>,
}

/// `POST /worker/v1/requests/{id}/logs`.
pub async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<LogsBody>,
) -> Result<StatusCode, ApiError> {
    check_token(&state, &headers)?;
    state.append_job_logs(&id, &body.lines).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of an output upload.
#[derive(Debug, Deserialize)]
pub struct OutputQuery {
    file_name: Option<String>,
}

/// `PUT /worker/v1/requests/{id}/output`: the body is the mp4; answers its signed URL.
pub async fn output(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<OutputQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_token(&state, &headers)?;
    let bytes = crate::routes::read_body(&headers, body, state.config.max_body_bytes).await?;
    let url = state
        .store_job_output(
            &id,
            query.file_name.as_deref().unwrap_or("output.mp4"),
            bytes,
        )
        .await
        .map_err(ApiError::Internal)?;
    Ok(Json(json!({ "url": url })).into_response())
}

/// The body of a completion.
#[derive(Debug, Deserialize)]
pub struct CompleteBody {
    worker_id: String,
    outcome: Outcome,
    inference_time: f64,
}

/// `POST /worker/v1/requests/{id}/complete`: 204, or 409 when the lease was lost.
pub async fn complete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<CompleteBody>,
) -> Result<Response, ApiError> {
    check_token(&state, &headers)?;
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

/// The body of a release.
#[derive(Debug, Deserialize)]
pub struct ReleaseBody {
    worker_id: String,
    reason: String,
}

/// `POST /worker/v1/requests/{id}/release`: 204, or 409 when the lease was lost.
pub async fn release(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<ReleaseBody>,
) -> Result<Response, ApiError> {
    check_token(&state, &headers)?;
    let held = state
        .release_job(&id, &body.worker_id, &body.reason)
        .await?;
    Ok(lease_reply(held))
}
