//! The queue API (PROTOCOL §2): submit, status, result and cancel.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::jobs;
use crate::routes::{read_body, require_json};
use crate::state::AppState;
use crate::wire::{
    CancelResponse, LogLine, Metrics, PlainError, RequestUrls, StatusResponse, SubmitResponse,
};
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

/// `POST /{owner}/{alias}/{path…}`. Documented at the flash endpoint; `openapi` gives the
/// standard endpoint the same operation.
#[utoipa::path(post, path = "/wan/v2.6/reference-to-video/flash", tag = "queue",
    operation_id = "submit_flash",
    summary = "Submit to the flash preset (few-step sampling, no CFG)",
    params(
        ("fal_webhook" = Option<String>, Query, pattern = "^[hH][tT][tT][pP][sS]?://[^/?#]+", description = "URL that receives the signed webhook (a public http(s) address unless the operator allows private ones)"),
        ("x-fal-queue-priority" = Option<QueuePriority>, Header, nullable = false, description = "normal (default) or low"),
        ("x-fal-request-timeout" = Option<f64>, Header, nullable = false, exclusive_minimum = 1, maximum = 1e9, description = "start deadline in seconds, above 1; 504 when missed"),
        ("x-fal-store-io" = Option<String>, Header, nullable = false, description = "0 or false: erase the input once completed"),
    ),
    request_body = r2v_api::InputSchema,
    responses((status = 200, body = SubmitResponse), (status = 400, body = PlainError, description = "a malformed x-fal-* header"),
              (status = 401, body = PlainError), (status = 404, body = PlainError), (status = 408, body = PlainError),
              (status = 413, body = PlainError), (status = 415, body = PlainError),
              (status = 422, body = r2v_api::ValidationErrorBody)))]
pub async fn submit(
    caller: Caller,
    State(state): State<AppState>,
    Path((owner, alias, path)): Path<(String, String, String)>,
    Query(query): Query<SubmitQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let endpoint = format!("{owner}/{alias}/{path}");
    let row = enqueue(
        &state,
        &caller,
        &endpoint,
        query.fal_webhook,
        &headers,
        body,
    )
    .await?;
    let urls = RequestUrls::of(&state.base_url(&headers), &row);
    let response = SubmitResponse {
        status: Status::InQueue.as_str().to_owned(),
        queue_position: state.store.queue_position(&row).await?,
        gateway_request_id: row.webhook_url.as_ref().map(|_| row.id.clone()),
        request_id: row.id.clone(),
        response_url: urls.response_url,
        status_url: urls.status_url,
        cancel_url: urls.cancel_url,
    };
    Ok(with_request_id(
        (StatusCode::OK, Json(response)).into_response(),
        &row.id,
    ))
}

/// `POST /{owner}/{alias}` (an endpoint id without a path: not one of ours).
pub async fn submit_bare(
    _caller: Caller,
    Path((owner, alias)): Path<(String, String)>,
) -> ApiError {
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
    let (charge, mut errors) = match parsed
        .as_ref()
        .map(|b| b.validate(&ValidateOptions::default()))
    {
        Ok(Ok(valid)) => {
            // The operator's policy is enforced here, where every request enters, so it
            // holds whichever worker (here or remote) renders the request.
            if valid.enable_safety_checker {
                state
                    .policy
                    .check_prompt(&valid.prompt)
                    .map_err(ApiError::Request)?;
            }
            (Some(state.config.prices.charge(preset, &valid)), Vec::new())
        }
        Ok(Err(details)) => (None, details),
        Err(detail) => (None, vec![detail.clone()]),
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
    let (input, charge) = match (parsed, charge) {
        (Ok(body), Some(charge)) if errors.is_empty() => (body.input(), charge),
        _ => return Err(ApiError::Request(RequestError::Invalid(errors))),
    };
    let now = now_ms();
    let row = state
        .store
        .insert(NewRequest {
            id: uuid::Uuid::now_v7().to_string(),
            endpoint: preset.endpoint_id().to_owned(),
            owner: caller.owner().to_owned(),
            priority: controls.priority.rank(),
            input,
            webhook_url: webhook,
            store_io: controls.store_io,
            start_deadline: controls.start_timeout_ms.map(|t| now + t),
            output_ttl_seconds: controls.output_ttl_seconds,
            expires_at: now + state.config.retention_seconds * 1000,
            charge,
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

/// `x-fal-queue-priority`.
#[derive(Debug, Clone, Copy, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum QueuePriority {
    /// The default.
    Normal,
    /// After every normal request.
    Low,
}

impl QueuePriority {
    /// The store's priority: lower runs first.
    fn rank(self) -> i64 {
        match self {
            Self::Normal => 0,
            Self::Low => 1,
        }
    }
}

/// The longest `x-fal-request-timeout`, in seconds.
const MAX_START_TIMEOUT_SECONDS: f64 = 1e9;

/// The request headers that steer a request (PROTOCOL §2.2).
struct Controls {
    priority: QueuePriority,
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
            None | Some("normal") => QueuePriority::Normal,
            Some("low") => QueuePriority::Low,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "x-fal-queue-priority must be 'normal' or 'low', not '{other}'"
                )));
            }
        };
        let start_timeout_ms = match get("x-fal-request-timeout") {
            None => None,
            Some(t) => match t.parse::<f64>() {
                Ok(seconds) if seconds > 1.0 && seconds <= MAX_START_TIMEOUT_SECONDS => {
                    Some((seconds * 1000.0) as i64)
                }
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "x-fal-request-timeout must be a number of seconds above 1 and at most {MAX_START_TIMEOUT_SECONDS}, not '{t}'"
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
        Some(row) if row.owner == caller.owner() => Ok(row),
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

/// The status object of `row`; `logs` is the list to carry (`None` = `null`).
pub async fn status_body(
    state: &AppState,
    base: &str,
    row: &RequestRow,
    logs: Option<Vec<LogLine>>,
) -> Result<StatusResponse, ApiError> {
    let urls = RequestUrls::of(base, row);
    let mut body = StatusResponse {
        status: row.status.as_str().to_owned(),
        request_id: row.id.clone(),
        response_url: urls.response_url,
        status_url: urls.status_url,
        cancel_url: urls.cancel_url,
        queue_position: None,
        logs: None,
        metrics: None,
        error: None,
        error_type: None,
    };
    match row.status {
        Status::InQueue => body.queue_position = Some(state.store.queue_position(row).await?),
        Status::InProgress => {
            body.logs = Some(logs);
            body.metrics = Some(Metrics::default());
        }
        Status::Completed => {
            body.logs = Some(logs);
            body.metrics = Some(Metrics {
                inference_time: row.inference_time,
            });
            body.error = row.error.clone();
            body.error_type = row.error.as_ref().and(row.error_type.clone());
        }
    }
    Ok(body)
}

/// `GET …/requests/{id}/status?logs=…`: 202 while pending, 200 when completed.
#[utoipa::path(get, path = "/wan/v2.6/requests/{request_id}/status", tag = "queue",
    summary = "Status (202 while pending, 200 when completed)",
    params(("request_id" = String, Path), ("logs" = Option<String>, Query, description = "1 or true to include logs")),
    responses((status = 200, body = StatusResponse), (status = 202, body = StatusResponse),
              (status = 401, body = PlainError), (status = 404, body = PlainError)))]
pub async fn status(
    caller: Caller,
    State(state): State<AppState>,
    Path((_owner, _alias, id)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let row = owned_request(&state, &caller, &id).await?;
    let logs = if wants_logs(&query) && row.status != Status::InQueue {
        Some(
            state
                .store
                .logs_after(&row.id, 0)
                .await?
                .iter()
                .map(LogLine::from)
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
        (Some(result), _) => {
            let mut response = (StatusCode::OK, Json(result.clone())).into_response();
            if let Some(charge) = row.charged() {
                response.headers_mut().insert(
                    "x-fal-billable-units",
                    HeaderValue::from(charge.billable_seconds),
                );
            }
            response
        }
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
            for (kind, name, value) in r2v_api::error::RESULT_HEADERS {
                if row.error_type.as_deref() == Some(kind) {
                    response
                        .headers_mut()
                        .insert(name, HeaderValue::from_static(value));
                }
            }
            response
        }
    };
    with_request_id(response, &row.id)
}

/// `GET …/requests/{id}`: the output, or the failure's status and body replayed.
#[utoipa::path(get, path = "/wan/v2.6/requests/{request_id}", tag = "queue",
    summary = "Result: the output, or the failure's status and body",
    params(("request_id" = String, Path)),
    responses((status = 200, body = r2v_api::Output, headers(("x-fal-billable-units" = i64, description = "seconds of output charged"))),
              (status = 400, body = PlainError, description = "still in progress"),
              (status = 401, body = PlainError), (status = 404, body = PlainError),
              (status = 413, body = PlainError), (status = 422, body = r2v_api::ValidationErrorBody),
              (status = 499, body = PlainError), (status = 500, body = PlainError), (status = 504, body = PlainError)))]
pub async fn result(
    caller: Caller,
    State(state): State<AppState>,
    Path((_owner, _alias, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let row = owned_request(&state, &caller, &id).await?;
    if row.status != Status::Completed {
        let body = PlainError {
            detail: "Request is still in progress".to_owned(),
            error_type: None,
            status: Some(row.status.as_str().to_owned()),
        };
        return Ok(with_request_id(
            (StatusCode::BAD_REQUEST, Json(body)).into_response(),
            &row.id,
        ));
    }
    Ok(result_response(&row))
}

/// `PUT …/requests/{id}/cancel`: 202 when queued or running, 400 when already completed.
#[utoipa::path(put, path = "/wan/v2.6/requests/{request_id}/cancel", tag = "queue", summary = "Cancel",
    params(("request_id" = String, Path)),
    responses((status = 202, body = CancelResponse), (status = 400, body = CancelResponse),
              (status = 401, body = PlainError), (status = 404, body = PlainError)))]
pub async fn cancel(
    caller: Caller,
    State(state): State<AppState>,
    Path((_owner, _alias, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
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
        (
            code,
            Json(CancelResponse {
                status: status.to_owned(),
            }),
        )
            .into_response(),
        &row.id,
    ))
}
