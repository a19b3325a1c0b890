//! Typed request errors and their HTTP mapping, as data.
//!
//! [`ErrorDetail`] is one item of the FastAPI-style `422 {"detail": [...]}` body that
//! SPEC §2 and PROTOCOL §2.8 define. [`RequestError`] is every way a request can end
//! without a video; the server renders [`RequestError::status`] and
//! [`RequestError::body`], and a worker stores both so the result endpoint can replay
//! them. Every `type` used here is listed in `docs/errors.md`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

/// Path of the project's error documentation; each detail's `url` is this plus `#<type>`.
/// It is relative to the server's base URL, which serves `docs/errors.md` there.
pub const ERROR_DOCS_PATH: &str = "/docs/errors";

/// One element of an error location: a field name or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LocItem {
    /// A field name, such as `"body"` or `"image_urls"`.
    Key(String),
    /// A position in a list.
    Index(usize),
}

impl From<&str> for LocItem {
    fn from(key: &str) -> Self {
        Self::Key(key.to_owned())
    }
}

impl From<usize> for LocItem {
    fn from(index: usize) -> Self {
        Self::Index(index)
    }
}

/// Builds a `loc` list: `loc!["body", "image_urls", 2]`.
#[macro_export]
macro_rules! loc {
    ($($item:expr),* $(,)?) => { vec![$($crate::LocItem::from($item)),*] };
}

/// One validation problem, exactly as it travels in a 422 `detail` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Where the problem is: `["body", "image_urls", 2]`.
    pub loc: Vec<LocItem>,
    /// A human-readable sentence that names the offending value.
    pub msg: String,
    /// The machine-readable error type, e.g. `file_too_large`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Link to the documentation of this error type.
    pub url: String,
    /// Limits and expectations that explain the error, e.g. `{"max_length": 1500}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub ctx: Option<Value>,
    /// The offending input value, where it is short enough to help (any JSON value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::wire_forms::AnyValue>, nullable = false)]
    pub input: Option<Value>,
}

impl ErrorDetail {
    /// A detail with no `ctx` and no `input`.
    pub fn new(loc: Vec<LocItem>, kind: &str, msg: impl Into<String>) -> Self {
        Self {
            loc,
            msg: msg.into(),
            kind: kind.to_owned(),
            url: format!("{ERROR_DOCS_PATH}#{kind}"),
            ctx: None,
            input: None,
        }
    }

    /// Adds the `ctx` object.
    pub fn with_ctx(mut self, ctx: Value) -> Self {
        self.ctx = Some(ctx);
        self
    }

    /// Adds the offending `input`.
    pub fn with_input(mut self, input: Value) -> Self {
        self.input = Some(input);
        self
    }
}

/// The body of a 422: every problem of the request at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValidationErrorBody {
    /// The problems, in field order.
    pub detail: Vec<ErrorDetail>,
}

/// Every way a request ends without a video.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    /// The input or a reference file broke a rule of SPEC §2: 422.
    Invalid(Vec<ErrorDetail>),
    /// The safety checker refused the prompt or the output: 422.
    ContentPolicy(Box<ErrorDetail>),
    /// The request body exceeded the configured limit (bytes): 413.
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The client cancelled the request: 499.
    Cancelled,
    /// The request did not start before its `x-fal-request-timeout`: 504.
    StartTimeout,
    /// Something failed on our side after the allowed attempts: 500.
    Internal {
        /// What failed, for the operator; safe to show to the client.
        message: String,
    },
    /// Something failed on our side in a way that another attempt would repeat (the model
    /// refused the plan's shapes, a configuration error): 500 at once, without retries.
    Fatal {
        /// What failed; safe to show to the client.
        message: String,
    },
}

/// Headers the result endpoint adds for a stored failure, by its `error_type`: a start
/// timeout is the user's (`x-fal-request-timeout-type: user`, PROTOCOL §2.2).
pub const RESULT_HEADERS: [(&str, &str, &str); 1] =
    [("request_timeout", "x-fal-request-timeout-type", "user")];

impl RequestError {
    /// The HTTP status the result endpoint answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) | Self::ContentPolicy(_) => 422,
            Self::TooLarge { .. } => 413,
            Self::Cancelled => 499,
            Self::StartTimeout => 504,
            Self::Internal { .. } | Self::Fatal { .. } => 500,
        }
    }

    /// The `error_type` recorded on the request (PROTOCOL §2.8).
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "validation_error",
            Self::ContentPolicy(_) => "content_policy_violation",
            Self::TooLarge { .. } => "request_too_large",
            Self::Cancelled => "client_cancelled",
            Self::StartTimeout => "request_timeout",
            Self::Internal { .. } | Self::Fatal { .. } => "internal_error",
        }
    }

    /// The JSON body the result endpoint answers with.
    pub fn body(&self) -> Value {
        match self {
            Self::Invalid(details) => json!({ "detail": details }),
            Self::ContentPolicy(detail) => json!({ "detail": [detail.as_ref()] }),
            Self::TooLarge { limit } => json!({
                "detail": format!("Request body is larger than the limit of {limit} bytes"),
                "error_type": self.error_type(),
            }),
            Self::Cancelled => json!({
                "detail": "Request was cancelled by the client",
                "error_type": self.error_type(),
            }),
            Self::StartTimeout => json!({
                "detail": self.summary(),
                "error_type": self.error_type(),
            }),
            Self::Internal { message } | Self::Fatal { message } => json!({
                "detail": message,
                "error_type": self.error_type(),
            }),
        }
    }

    /// A one-line summary, for logs and for the `error` field of a status.
    pub fn summary(&self) -> String {
        match self {
            Self::Invalid(details) => details
                .iter()
                .map(|d| d.msg.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            Self::ContentPolicy(detail) => detail.msg.clone(),
            Self::TooLarge { limit } => format!("request body over {limit} bytes"),
            Self::Cancelled => "cancelled by the client".to_owned(),
            Self::StartTimeout => {
                "The request did not start before its x-fal-request-timeout".to_owned()
            }
            Self::Internal { message } | Self::Fatal { message } => message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_serializes_in_the_fastapi_shape() {
        let d = ErrorDetail::new(loc!["body", "image_urls", 2], "file_too_large", "too big")
            .with_ctx(json!({"max_size": 10}));
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!({"loc": ["body", "image_urls", 2], "msg": "too big", "type": "file_too_large",
                   "url": "/docs/errors#file_too_large", "ctx": {"max_size": 10}})
        );
    }

    #[test]
    fn status_and_type_mapping() {
        assert_eq!(RequestError::Cancelled.status(), 499);
        assert_eq!(RequestError::Cancelled.error_type(), "client_cancelled");
        assert_eq!(RequestError::Invalid(vec![]).status(), 422);
        let internal = RequestError::Internal {
            message: "x".into(),
        };
        assert_eq!(
            (internal.status(), internal.error_type()),
            (500, "internal_error")
        );
        assert_eq!(RequestError::TooLarge { limit: 1 }.status(), 413);
        let timeout = RequestError::StartTimeout;
        assert_eq!(
            (timeout.status(), timeout.error_type()),
            (504, "request_timeout")
        );
        assert_eq!(timeout.body()["error_type"], "request_timeout");
    }
}

/// How a request ended, as workers report it and the store keeps it: the output, or a
/// failure that the result endpoint replays (status and body) and the status reports
/// (`error`, `error_type`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The request produced its output.
    Success {
        /// The output object.
        result: Value,
    },
    /// The request failed.
    Failure {
        /// HTTP status of the result endpoint.
        status: u16,
        /// JSON body of the result endpoint.
        body: Value,
        /// One-line summary.
        error: String,
        /// The `error_type`.
        error_type: String,
    },
}

impl Outcome {
    /// The failure that `error` describes.
    pub fn failure(error: &RequestError) -> Self {
        Self::Failure {
            status: error.status(),
            body: error.body(),
            error: error.summary(),
            error_type: error.error_type().to_owned(),
        }
    }
}
