//! `POST /run/{owner}/{alias}/{path…}`: the sync endpoint. The request goes through the
//! same durable queue; the connection waits for it and answers like the result endpoint.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::queue::{enqueue, result_response};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use r2v_store::Status;
use std::time::Duration;

/// `POST /run/{owner}/{alias}/{path…}`.
#[utoipa::path(post, path = "/run/wan/v2.6/reference-to-video/flash", tag = "sync", summary = "Run and wait for the output",
    request_body = r2v_api::InputSchema,
    responses((status = 200, body = r2v_api::Output), (status = 400, body = crate::wire::PlainError),
              (status = 401, body = crate::wire::PlainError), (status = 404, body = crate::wire::PlainError),
              (status = 408, body = crate::wire::PlainError), (status = 413, body = crate::wire::PlainError),
              (status = 415, body = crate::wire::PlainError), (status = 422, body = r2v_api::ValidationErrorBody),
              (status = 499, body = crate::wire::PlainError), (status = 500, body = crate::wire::PlainError)))]
pub async fn run(
    caller: Caller,
    State(state): State<AppState>,
    Path((owner, alias, path)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let row = enqueue(
        &state,
        &caller,
        &format!("{owner}/{alias}/{path}"),
        None,
        &headers,
        body,
    )
    .await?;
    loop {
        let completed = state.completed.notified();
        let current = state
            .store
            .get(&row.id)
            .await?
            .ok_or_else(|| ApiError::no_request(&row.id))?;
        if current.status == Status::Completed {
            return Ok(result_response(&current));
        }
        tokio::select! {
            () = completed => {}
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
