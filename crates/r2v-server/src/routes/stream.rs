//! `GET …/requests/{id}/status/stream`: the status as server-sent events. An event is
//! sent whenever the status, the queue position or the logs change; each carries only
//! the log lines that are new since the previous event (the JS client concatenates
//! them). The stream closes after the `COMPLETED` event.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::queue::{owned_request, status_body, wants_logs};
use crate::state::AppState;
use crate::wire::{LogLine, StatusResponse};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream;
use r2v_store::Status;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

/// How often the stream looks for changes.
const POLL: Duration = Duration::from_millis(200);

struct Cursor {
    state: AppState,
    id: String,
    base: String,
    logs: bool,
    last_seq: i64,
    last_snapshot: Option<(Status, i64)>,
    done: bool,
}

/// `GET …/status/stream?logs=…`.
#[utoipa::path(get, path = "/wan/v2.6/requests/{request_id}/status/stream", tag = "queue",
    summary = "Status as server-sent events; each event carries only new log lines; closes after COMPLETED",
    params(("request_id" = String, Path), ("logs" = Option<String>, Query, description = "1 or true to include logs")),
    responses((status = 200, content_type = "text/event-stream", description = "StatusResponse objects as events"),
              (status = 401, body = crate::wire::PlainError), (status = 404, body = crate::wire::PlainError)))]
pub async fn status_stream(
    caller: Caller,
    State(state): State<AppState>,
    Path((_owner, _alias, id)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let row = owned_request(&state, &caller, &id).await?;
    let cursor = Cursor {
        base: state.base_url(&headers),
        state,
        id: row.id,
        logs: wants_logs(&query),
        last_seq: 0,
        last_snapshot: None,
        done: false,
    };
    let events = stream::unfold(cursor, |mut cursor| async move {
        if cursor.done {
            return None;
        }
        loop {
            match next_event(&mut cursor).await {
                Ok(Some(body)) => {
                    let event =
                        Event::default().data(serde_json::to_string(&body).unwrap_or_default());
                    return Some((Ok::<_, Infallible>(event), cursor));
                }
                Ok(None) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    tracing::warn!(error = %e, "status stream stopped");
                    return None;
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(10))
            .text("ping"),
    ))
}

/// The next event, or `None` when nothing changed.
async fn next_event(cursor: &mut Cursor) -> Result<Option<StatusResponse>, ApiError> {
    let row = cursor
        .state
        .store
        .get(&cursor.id)
        .await?
        .ok_or_else(|| ApiError::no_request(&cursor.id))?;
    let position = match row.status {
        Status::InQueue => cursor.state.store.queue_position(&row).await?,
        Status::InProgress | Status::Completed => -1,
    };
    let new_logs = if cursor.logs && row.status != Status::InQueue {
        cursor
            .state
            .store
            .logs_after(&row.id, cursor.last_seq)
            .await?
    } else {
        Vec::new()
    };
    let snapshot = (row.status, position);
    if cursor.last_snapshot == Some(snapshot) && new_logs.is_empty() {
        return Ok(None);
    }
    cursor.last_snapshot = Some(snapshot);
    if let Some(last) = new_logs.last() {
        cursor.last_seq = last.seq;
    }
    let logs = cursor
        .logs
        .then(|| new_logs.iter().map(LogLine::from).collect());
    cursor.done = row.status == Status::Completed;
    status_body(&cursor.state, &cursor.base, &row, logs)
        .await
        .map(Some)
}
