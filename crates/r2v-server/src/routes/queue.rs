//! The queue API (PROTOCOL §2): submit, status, result and cancel.

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::jobs;
use crate::routes::{read_body, require_json};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use r2v_api::body::RequestBody;
use r2v_api::{ErrorDetail, Preset, RequestError, ValidateOptions, loc};
use r2v_store::{CancelOutcome, NewRequest, RequestRow, Status, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Query parameters of a submit.
#[derive(Debug, Deserialize)]
pub struct SubmitQuery {
    /// Where to deliver the signed webhook.
    pub fal_webhook: Option<String>,
}

/// `POST /{owner}/{alias}/{path…}`.
pub async fn submit(
    State(state): State<AppState>,
    Path((owner, alias, path)): Path<(String, String, String)>,
    Query(query): Query<SubmitQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let endpoint = format!("{owner}/{alias}/{path}");
    let caller = auth::authenticate(&state, &headers).await?;
    let row = enqueue(
        &state,
        &caller,
        &endpoint,
        query.fal_webhook,
        &headers,
        body,
    )
    .await?;
    let base = state.base_url(&headers);
    let mut response = json!({
        "status": "IN_QUEUE",
        "request_id": row.id,
        "queue_position": state.store.queue_position(&row).await?,
    });
    add_urls(&mut response, &base, &row);
    if row.webhook_url.is_some() {
        response["gateway_request_id"] = json!(row.id);
    }
    Ok(with_request_id(
        (StatusCode::OK, Json(response)).into_response(),
        &row.id,
    ))
}

/// `POST /{owner}/{alias}` (an endpoint id without a path: not one of ours).
pub async fn submit_bare(Path((owner, alias)): Path<(String, String)>) -> ApiError {
    unknown_endpoint(&format!("{owner}/{alias}"))
}

fn unknown_endpoint(endpoint: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Application '{endpoint}' not found; this server hosts {} and {}",
        Preset::Flash.endpoint_id(),
        Preset::Standard.endpoint_id()
    ))
}

/// Checks and stores a submitted request (the queue's and the sync endpoint's path).
pub async fn enqueue(
    state: &AppState,
    caller: &Caller,
    endpoint: &str,
    webhook: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<RequestRow, ApiError> {
    let Some(preset) = Preset::from_endpoint_id(endpoint) else {
        return Err(unknown_endpoint(endpoint));
    };
    let controls = Controls::from_headers(headers)?;
    require_json(headers)?;
    let bytes = read_body(headers, body, state.config.max_body_bytes).await?;
    // Only the contract's fields are kept, and they are what is stored.
    let parsed = RequestBody::parse(&bytes);
    drop(bytes);
    let mut errors = match parsed
        .as_ref()
        .map(|b| b.validate(&ValidateOptions::default()))
    {
        Ok(Ok(_)) => Vec::new(),
        Ok(Err(details)) => details,
        Err(detail) => vec![detail.clone()],
    };
    if let Some(url) = &webhook
        && let Err(reason) = state.fetcher.check(url).await
    {
        errors.push(
            ErrorDetail::new(
                loc!["query", "fal_webhook"],
                "value_error",
                format!("Value error, the webhook URL is not allowed: {reason}"),
            )
            .with_input(json!(url)),
        );
    }
    let input = match parsed {
        Ok(body) if errors.is_empty() => body.input(),
        _ => return Err(ApiError::Request(RequestError::Invalid(errors))),
    };
    let now = now_ms();
    let row = state
        .store
        .insert(NewRequest {
            id: uuid::Uuid::now_v7().to_string(),
            endpoint: preset.endpoint_id().to_owned(),
            owner: caller.owner.clone(),
            priority: controls.priority,
            input,
            webhook_url: webhook,
            store_io: controls.store_io,
            start_deadline: controls.start_timeout_ms.map(|t| now + t),
            output_ttl_seconds: controls.output_ttl_seconds,
            expires_at: now + state.config.retention_seconds * 1000,
        })
        .await?;
    metrics::counter!("r2v_requests_submitted_total", "endpoint" => row.endpoint.clone())
        .increment(1);
    state
        .store
        .append_logs(&row.id, &[jobs::log_line("INFO", "queued")])
        .await?;
    state.work.notify_waiters();
    Ok(row)
}

/// The request headers that steer a request (PROTOCOL §2.2).
struct Controls {
    priority: i64,
    start_timeout_ms: Option<i64>,
    store_io: bool,
    output_ttl_seconds: Option<i64>,
}

impl Controls {
    fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let priority = match get("x-fal-queue-priority") {
            None | Some("normal") => 0,
            Some("low") => 1,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "x-fal-queue-priority must be 'normal' or 'low', not '{other}'"
                )));
            }
        };
        let start_timeout_ms = match get("x-fal-request-timeout") {
            None => None,
            Some(t) => match t.parse::<f64>() {
                Ok(seconds) if seconds > 1.0 && seconds.is_finite() => {
                    Some((seconds * 1000.0) as i64)
                }
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "x-fal-request-timeout must be a number of seconds above 1, not '{t}'"
                    )));
                }
            },
        };
        let store_io = !matches!(get("x-fal-store-io"), Some("0" | "false"));
        let output_ttl_seconds = get("x-fal-object-lifecycle-preference")
            .and_then(|v| serde_json::from_str::<Value>(v).ok())
            .and_then(|v| v["expiration_duration_seconds"].as_i64())
            .filter(|&s| s > 0);
        Ok(Self {
            priority,
            start_timeout_ms,
            store_io,
            output_ttl_seconds,
        })
    }
}

/// Adds `response_url`, `status_url` and `cancel_url` (absolute; the Python client follows them).
pub fn add_urls(body: &mut Value, base: &str, row: &RequestRow) {
    let app: Vec<&str> = row.endpoint.splitn(3, '/').take(2).collect();
    let root = format!("{base}/{}/requests/{}", app.join("/"), row.id);
    body["response_url"] = json!(root);
    body["status_url"] = json!(format!("{root}/status"));
    body["cancel_url"] = json!(format!("{root}/cancel"));
}

/// Adds the `x-fal-request-id` header.
pub fn with_request_id(mut response: Response, id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-fal-request-id", value);
    }
    response
}

/// The caller's request `id`, or 404 (also for someone else's).
pub async fn owned_request(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<RequestRow, ApiError> {
    match state.store.get(id).await? {
        Some(row) if row.owner == caller.owner => Ok(row),
        _ => Err(ApiError::no_request(id)),
    }
}

/// Whether `?logs=` asks for logs (`1`, `true`).
pub fn wants_logs(query: &HashMap<String, String>) -> bool {
    matches!(
        query.get("logs").map(String::as_str),
        Some("1" | "true" | "True")
    )
}

/// A log line as the protocol carries it.
pub fn log_json(line: &r2v_store::LogLine) -> Value {
    json!({
        "message": line.line.message,
        "level": line.line.level,
        "source": "USER",
        "timestamp": line.line.timestamp,
        "labels": {},
    })
}

/// The status object of `row`; `logs` is the list to carry (`None` = `null`).
pub async fn status_body(
    state: &AppState,
    base: &str,
    row: &RequestRow,
    logs: Option<Vec<Value>>,
) -> Result<Value, ApiError> {
    let mut body = json!({ "status": row.status.as_str(), "request_id": row.id });
    add_urls(&mut body, base, row);
    match row.status {
        Status::InQueue => {
            body["queue_position"] = json!(state.store.queue_position(row).await?);
        }
        Status::InProgress => {
            body["logs"] = json!(logs);
            body["metrics"] = json!({});
        }
        Status::Completed => {
            body["logs"] = json!(logs);
            body["metrics"] = match row.inference_time {
                Some(t) => json!({ "inference_time": t }),
                None => json!({}),
            };
            if let Some(error) = &row.error {
                body["error"] = json!(error);
                body["error_type"] = json!(row.error_type);
            }
        }
    }
    Ok(body)
}

/// `GET …/requests/{id}/status?logs=…`: 202 while pending, 200 when completed.
pub async fn status(
    State(state): State<AppState>,
    Path((_owner, _alias, id)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = auth::authenticate(&state, &headers).await?;
    let row = owned_request(&state, &caller, &id).await?;
    let logs = if wants_logs(&query) && row.status != Status::InQueue {
        Some(
            state
                .store
                .logs_after(&row.id, 0)
                .await?
                .iter()
                .map(log_json)
                .collect(),
        )
    } else {
        None
    };
    let body = status_body(&state, &state.base_url(&headers), &row, logs).await?;
    let code = if row.status == Status::Completed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(with_request_id((code, Json(body)).into_response(), &row.id))
}

/// The result response of a completed request: its output, or its error replayed.
pub fn result_response(row: &RequestRow) -> Response {
    let response = match (&row.result, row.error_status) {
        (Some(result), _) => (StatusCode::OK, Json(result.clone())).into_response(),
        (None, status) => {
            let code = StatusCode::from_u16(status.unwrap_or(500))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response =
                (code, Json(row.error_body.clone().unwrap_or(Value::Null))).into_response();
            if let Some(kind) = row
                .error_type
                .as_deref()
                .and_then(|k| HeaderValue::from_str(k).ok())
            {
                response.headers_mut().insert("x-fal-error-type", kind);
            }
            if row.error_type.as_deref() == Some("request_timeout") {
                response.headers_mut().insert(
                    "x-fal-request-timeout-type",
                    HeaderValue::from_static("user"),
                );
            }
            response
        }
    };
    with_request_id(response, &row.id)
}

/// `GET …/requests/{id}`.
pub async fn result(
    State(state): State<AppState>,
    Path((_owner, _alias, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = auth::authenticate(&state, &headers).await?;
    let row = owned_request(&state, &caller, &id).await?;
    if row.status != Status::Completed {
        let body =
            json!({ "detail": "Request is still in progress", "status": row.status.as_str() });
        return Ok(with_request_id(
            (StatusCode::BAD_REQUEST, Json(body)).into_response(),
            &row.id,
        ));
    }
    Ok(result_response(&row))
}

/// `PUT …/requests/{id}/cancel`: 202 when queued or running, 400 when already completed.
pub async fn cancel(
    State(state): State<AppState>,
    Path((_owner, _alias, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = auth::authenticate(&state, &headers).await?;
    let row = owned_request(&state, &caller, &id).await?;
    let outcome = state
        .store
        .cancel(&row.id, r2v_api::Outcome::failure(&RequestError::Cancelled))
        .await?;
    let (code, status) = match outcome {
        CancelOutcome::CancelledWhileQueued => {
            state
                .store
                .append_logs(
                    &row.id,
                    &[jobs::log_line("INFO", "cancelled before it started")],
                )
                .await?;
            metrics::counter!("r2v_request_failures_total", "error_type" => "client_cancelled")
                .increment(1);
            state.completed.notify_waiters();
            (StatusCode::ACCEPTED, "CANCELLATION_REQUESTED")
        }
        CancelOutcome::Requested => {
            state
                .store
                .append_logs(
                    &row.id,
                    &[jobs::log_line(
                        "INFO",
                        "cancellation requested; stopping at the next step",
                    )],
                )
                .await?;
            (StatusCode::ACCEPTED, "CANCELLATION_REQUESTED")
        }
        CancelOutcome::AlreadyCompleted => (StatusCode::BAD_REQUEST, "ALREADY_COMPLETED"),
        CancelOutcome::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
    };
    Ok(with_request_id(
        (code, Json(json!({ "status": status }))).into_response(),
        &row.id,
    ))
}
