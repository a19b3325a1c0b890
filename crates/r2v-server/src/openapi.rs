//! The OpenAPI 3.1 document served at `/openapi.json` (and printed by `r2v openapi`),
//! generated from the contract types of `r2v-api` and the response shapes below. The
//! operations are documented here, next to each other, rather than on the handlers,
//! because the router serves them on generic `{owner}/{alias}/{path}` routes.

use r2v_api::{ErrorDetail, InputSchema, LocItem, Output, ValidationErrorBody, VideoFile};
use serde::Serialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

/// The answer to a submit.
#[derive(Serialize, ToSchema)]
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
}

/// A request log line.
#[derive(Serialize, ToSchema)]
pub struct LogLine {
    /// The text.
    pub message: String,
    /// `INFO`, `WARN` or `ERROR`.
    pub level: String,
    /// Always `USER`.
    pub source: String,
    /// ISO-8601 UTC time.
    pub timestamp: String,
}

/// A request's status: `IN_QUEUE` (with `queue_position`), `IN_PROGRESS` (with `logs`), or
/// `COMPLETED` (with `logs`, `metrics.inference_time`, and `error`/`error_type` on failure).
#[derive(Serialize, ToSchema)]
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
    pub queue_position: Option<i64>,
    /// Log lines when `?logs=1` (`null` otherwise).
    pub logs: Option<Vec<LogLine>>,
    /// `{"inference_time": seconds}` once completed.
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<Value>,
    /// Why it failed (completed requests only).
    pub error: Option<String>,
    /// `client_cancelled`, `internal_error`, `validation_error`, `request_timeout`…
    pub error_type: Option<String>,
}

/// The answer to a cancel: `CANCELLATION_REQUESTED` (202), `ALREADY_COMPLETED` (400) or `NOT_FOUND` (404).
#[derive(Serialize, ToSchema)]
pub struct CancelResponse {
    /// The cancel's outcome.
    pub status: String,
}

/// `{"detail": "…", "error_type"?: "…"}`: errors that are not about a field.
#[derive(Serialize, ToSchema)]
pub struct PlainError {
    /// What went wrong.
    pub detail: String,
    /// e.g. `client_cancelled`, `internal_error`, `request_too_large`.
    pub error_type: Option<String>,
}

#[utoipa::path(post, path = "/wan/v2.6/reference-to-video/flash", tag = "queue",
    summary = "Submit to the flash preset (few-step sampling, no CFG)",
    params(("fal_webhook" = Option<String>, Query, description = "URL that receives the signed webhook"),
           ("x-fal-queue-priority" = Option<String>, Header, description = "normal (default) or low"),
           ("x-fal-request-timeout" = Option<f64>, Header, description = "start deadline in seconds (> 1); 504 when missed")),
    request_body = InputSchema,
    responses((status = 200, body = SubmitResponse), (status = 401, body = PlainError), (status = 413, body = PlainError),
              (status = 415, body = PlainError), (status = 422, body = ValidationErrorBody)))]
#[allow(dead_code, reason = "documents an operation; the router serves it")]
fn submit_flash() {}

#[utoipa::path(post, path = "/wan/v2.6/reference-to-video", tag = "queue",
    summary = "Submit to the standard preset (full-step sampling with CFG)",
    request_body = InputSchema,
    responses((status = 200, body = SubmitResponse), (status = 401, body = PlainError), (status = 422, body = ValidationErrorBody)))]
#[allow(dead_code, reason = "documents an operation; the router serves it")]
fn submit_standard() {}

#[utoipa::path(get, path = "/wan/v2.6/requests/{request_id}/status", tag = "queue", summary = "Status (202 while pending, 200 when completed)",
    params(("request_id" = String, Path), ("logs" = Option<String>, Query, description = "1 or true to include logs")),
    responses((status = 200, body = StatusResponse), (status = 202, body = StatusResponse), (status = 401, body = PlainError), (status = 404, body = PlainError)))]
#[allow(dead_code, reason = "documents an operation; the router serves it")]
fn status() {}

#[utoipa::path(get, path = "/wan/v2.6/requests/{request_id}/status/stream", tag = "queue",
    summary = "Status as server-sent events; each event carries only new log lines; closes after COMPLETED",
    params(("request_id" = String, Path), ("logs" = Option<String>, Query)),
    responses((status = 200, description = "text/event-stream of StatusResponse objects"), (status = 404, body = PlainError)))]
#[allow(dead_code, reason = "documents an operation; the router serves it")]
fn status_stream() {}

#[utoipa::path(get, path = "/wan/v2.6/requests/{request_id}", tag = "queue", summary = "Result: the output, or the failure's status and body",
    params(("request_id" = String, Path)),
    responses((status = 200, body = Output), (status = 400, body = PlainError, description = "still in progress"),
              (status = 404, body = PlainError), (status = 422, body = ValidationErrorBody), (status = 499, body = PlainError),
              (status = 500, body = PlainError), (status = 504, body = PlainError)))]
#[allow(dead_code, reason = "documents an operation; the router serves it")]
fn result() {}

#[utoipa::path(put, path = "/wan/v2.6/requests/{request_id}/cancel", tag = "queue", summary = "Cancel",
    params(("request_id" = String, Path)),
    responses((status = 202, body = CancelResponse), (status = 400, body = CancelResponse), (status = 404, body = PlainError)))]
#[allow(dead_code, reason = "documents an operation; the router serves it")]
fn cancel() {}

#[utoipa::path(post, path = "/run/wan/v2.6/reference-to-video/flash", tag = "sync", summary = "Run and wait for the output",
    request_body = InputSchema,
    responses((status = 200, body = Output), (status = 422, body = ValidationErrorBody), (status = 499, body = PlainError), (status = 500, body = PlainError)))]
#[allow(dead_code, reason = "documents an operation; the router serves it")]
fn run() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "r2v",
        description = "Self-hosted reference-to-video that speaks the fal queue protocol. \
        Authenticate with `Authorization: Key <id>:<secret>`."
    ),
    paths(
        submit_flash,
        submit_standard,
        status,
        status_stream,
        result,
        cancel,
        run
    ),
    components(schemas(
        InputSchema,
        Output,
        VideoFile,
        ErrorDetail,
        LocItem,
        ValidationErrorBody,
        SubmitResponse,
        StatusResponse,
        LogLine,
        CancelResponse,
        PlainError
    ))
)]
struct ApiDoc;

/// The document as JSON.
pub fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    /// The committed `docs/openapi.json` is the generated document; `R2V_BLESS=1` rewrites it.
    #[test]
    fn committed_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let generated = serde_json::to_string_pretty(&super::document()).unwrap() + "\n";
        if std::env::var_os("R2V_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is stale: run `R2V_BLESS=1 cargo test -p r2v-server openapi`"
        );
        assert!(generated.contains("\"openapi\": \"3.1"));
    }
}
