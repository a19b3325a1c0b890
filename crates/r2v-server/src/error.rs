//! [`ApiError`]: the one type that becomes an HTTP error response. Request errors
//! render their own status and body (`r2v-api`); the rest are `{"detail": "..."}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use r2v_api::RequestError;
use r2v_store::StoreError;
use serde_json::json;

/// An HTTP error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A typed request error (422, 413, 499, 500).
    #[error("{}", .0.summary())]
    Request(RequestError),
    /// Unknown endpoint, request or file, or someone else's: 404.
    #[error("{0}")]
    NotFound(String),
    /// Missing, malformed or revoked credentials: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// A malformed header or parameter: 400.
    #[error("{0}")]
    BadRequest(String),
    /// The body is not JSON: 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A method the route does not take: 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request body stalled or broke off: 408.
    #[error("{0}")]
    Timeout(String),
    /// The store failed: a logged 500 without internals.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else on our side: 500.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// An unknown or foreign request.
    pub fn no_request(id: &str) -> Self {
        Self::NotFound(format!("Request {id} not found"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body, error_type) = match &self {
            Self::Request(e) => (
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                e.body(),
                Some(e.error_type()),
            ),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, json!({ "detail": m }), None),
            Self::Unauthorized(m) => (StatusCode::UNAUTHORIZED, json!({ "detail": m }), None),
            Self::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                json!({ "detail": m, "error_type": "bad_request" }),
                Some("bad_request"),
            ),
            Self::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({ "detail": m }),
                None,
            ),
            Self::MethodNotAllowed(m) => {
                (StatusCode::METHOD_NOT_ALLOWED, json!({ "detail": m }), None)
            }
            Self::Timeout(m) => (StatusCode::REQUEST_TIMEOUT, json!({ "detail": m }), None),
            Self::Store(e) => {
                tracing::error!(error = %e, "store failure");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "detail": "Internal server error", "error_type": "internal_error" }),
                    Some("internal_error"),
                )
            }
            Self::Internal(m) => {
                tracing::error!(error = %m, "internal failure");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "detail": "Internal server error", "error_type": "internal_error" }),
                    Some("internal_error"),
                )
            }
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(kind) = error_type {
            response
                .headers_mut()
                .insert("x-fal-error-type", HeaderValue::from_static(kind));
        }
        response
    }
}
