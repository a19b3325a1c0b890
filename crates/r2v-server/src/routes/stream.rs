//! `GET …/requests/{id}/status/stream`: the status as server-sent events. An event is
//! sent whenever the status, the queue position or the logs change; each carries only
//! the log lines that are new since the previous event (the JS client concatenates
//! them). The stream closes after the `COMPLETED` event.

use crate::auth;
use crate::error::ApiError;
use crate::routes::queue::{log_json, owned_request, status_body, wants_logs};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream;
use r2v_store::Status;
use serde_json::Value;
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
pub async fn status_stream(
    State(state): State<AppState>,
    Path((_owner, _alias, id)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let caller = auth::authenticate(&state, &headers).await?;
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
                    let event = Event::default().data(body.to_string());
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
async fn next_event(cursor: &mut Cursor) -> Result<Option<Value>, ApiError> {
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
    let logs = cursor.logs.then(|| new_logs.iter().map(log_json).collect());
    cursor.done = row.status == Status::Completed;
    status_body(&cursor.state, &cursor.base, &row, logs)
        .await
        .map(Some)
}
