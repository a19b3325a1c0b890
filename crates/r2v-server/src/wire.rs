//! The public API's response bodies. Handlers return these types and `/openapi.json` is
//! generated from them, so what the server sends is what its document says.

use r2v_store::RequestRow;
use serde::Serialize;
use utoipa::ToSchema;

/// The answer to a submit.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubmitResponse {
    /// Always `IN_QUEUE`.
    pub status: String,
    /// The request id (a UUID).
    pub request_id: String,
    /// Where the result will be.
    pub response_url: String,
    /// Where the status is.
    pub status_url: String,
    /// Where to cancel.
    pub cancel_url: String,
    /// Requests ahead of this one.
    pub queue_position: i64,
    /// The request id again, when a webhook was asked for (as the hosted service answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_request_id: Option<String>,
}

/// A request's three URLs (absolute; the Python client follows them).
pub struct RequestUrls {
    /// `…/requests/{id}`.
    pub response_url: String,
    /// `…/requests/{id}/status`.
    pub status_url: String,
    /// `…/requests/{id}/cancel`.
    pub cancel_url: String,
}

impl RequestUrls {
    /// The URLs of `row` under `base`: the endpoint's owner and alias, then `requests/{id}`.
    pub fn of(base: &str, row: &RequestRow) -> Self {
        let app: Vec<&str> = row.endpoint.splitn(3, '/').take(2).collect();
        let root = format!("{base}/{}/requests/{}", app.join("/"), row.id);
        Self {
            status_url: format!("{root}/status"),
            cancel_url: format!("{root}/cancel"),
            response_url: root,
        }
    }
}

/// A request log line.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogLine {
    /// The text.
    pub message: String,
    /// `INFO`, `WARN` or `ERROR`.
    pub level: String,
    /// Always `USER`.
    pub source: String,
    /// ISO-8601 UTC time.
    pub timestamp: String,
    /// Always empty.
    #[schema(value_type = Object)]
    pub labels: serde_json::Map<String, serde_json::Value>,
}

impl From<&r2v_store::LogLine> for LogLine {
    fn from(line: &r2v_store::LogLine) -> Self {
        Self {
            message: line.line.message.clone(),
            level: line.line.level.clone(),
            source: "USER".to_owned(),
            timestamp: line.line.timestamp.clone(),
            labels: serde_json::Map::new(),
        }
    }
}

/// Timings of a request.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Metrics {
    /// Seconds of work, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_time: Option<f64>,
}

/// A request's status: `IN_QUEUE` (with `queue_position`), `IN_PROGRESS` (with `logs`), or
/// `COMPLETED` (with `logs`, `metrics.inference_time`, and `error`/`error_type` on failure).
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    /// `IN_QUEUE`, `IN_PROGRESS` or `COMPLETED`.
    pub status: String,
    /// The request id.
    pub request_id: String,
    /// Where the result is.
    pub response_url: String,
    /// Where the status is.
    pub status_url: String,
    /// Where to cancel.
    pub cancel_url: String,
    /// Requests ahead of this one (`IN_QUEUE` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<i64>,
    /// Log lines when asked for with `?logs=1`, else `null` (absent while `IN_QUEUE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<LogLine>>)]
    pub logs: Option<Option<Vec<LogLine>>>,
    /// Timings (absent while `IN_QUEUE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// Why it failed (completed requests only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `client_cancelled`, `internal_error`, `validation_error`, `request_timeout`…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
}

/// The answer to a cancel: `CANCELLATION_REQUESTED` (202), `ALREADY_COMPLETED` (400) or
/// `NOT_FOUND` (404).
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelResponse {
    /// The cancel's outcome.
    pub status: String,
}

/// `{"detail": "…", "error_type"?: "…"}`: errors that are not about a field. (A result
/// asked for too early also says the request's `status`.)
#[derive(Debug, Serialize, ToSchema)]
pub struct PlainError {
    /// What went wrong.
    pub detail: String,
    /// e.g. `client_cancelled`, `internal_error`, `request_too_large`, `bad_request`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// The request's status, when its result was asked for before it completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok`.
    pub status: String,
    /// Requests waiting (read at most once a second).
    pub queued: i64,
    /// Requests being worked on (read at most once a second).
    pub in_progress: i64,
}
