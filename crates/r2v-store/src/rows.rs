//! What both SQL backends share: the request columns, how an [`Outcome`] maps to them, and
//! rows decoded into the crate's records, generic over the database.

use crate::{
    ApiKeyRecord, FileRecord, LogLine, NewLog, Outcome, RequestRow, Status, StoreError, UsageRow,
};
use serde_json::Value;
use sqlx::{ColumnIndex, Decode, Row, Type};

/// The columns of [`RequestRow`], in `SELECT` and `RETURNING` lists.
pub(crate) const COLUMNS: &str = "id, seq, endpoint, owner, priority, status, input, result, error, error_type, \
    error_status, error_body, attempts, worker_id, lease_until, cancel_requested, webhook_url, \
    webhook_state, webhook_attempts, output_ttl_seconds, created_at, started_at, completed_at, \
    inference_time, billable_seconds, cost_microusd";

/// The SET clause that completes a row; its parameters are the
/// [`outcome_columns`], then the time twice (`completed_at`, `webhook_next_at`).
pub(crate) const COMPLETE_SET: &str = "status = 'COMPLETED', result = ?, error = ?, error_type = ?, error_status = ?, \
    error_body = ?, completed_at = ?, lease_until = NULL, \
    input = CASE WHEN store_io = 0 THEN NULL ELSE input END, \
    webhook_state = CASE WHEN webhook_url IS NULL THEN 'none' ELSE 'pending' END, \
    webhook_next_at = ?";

/// A request from a row with [`COLUMNS`].
pub(crate) fn request_row<'r, R>(r: &'r R) -> Result<RequestRow, StoreError>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    f64: Decode<'r, R::Database> + Type<R::Database>,
{
    let json = |name: &str| -> Result<Option<Value>, StoreError> {
        r.try_get::<Option<String>, _>(name)?
            .map(|s| {
                serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))
            })
            .transpose()
    };
    Ok(RequestRow {
        id: r.try_get("id")?,
        seq: r.try_get("seq")?,
        endpoint: r.try_get("endpoint")?,
        owner: r.try_get("owner")?,
        priority: r.try_get("priority")?,
        status: Status::parse(&r.try_get::<String, _>("status")?)?,
        input: json("input")?,
        result: json("result")?,
        error: r.try_get("error")?,
        error_type: r.try_get("error_type")?,
        error_status: r
            .try_get::<Option<i64>, _>("error_status")?
            .map(|s| s as u16),
        error_body: json("error_body")?,
        attempts: r.try_get("attempts")?,
        worker_id: r.try_get("worker_id")?,
        lease_until: r.try_get("lease_until")?,
        cancel_requested: r.try_get::<i64, _>("cancel_requested")? != 0,
        webhook_url: r.try_get("webhook_url")?,
        webhook_state: r.try_get("webhook_state")?,
        webhook_attempts: r.try_get("webhook_attempts")?,
        output_ttl_seconds: r.try_get("output_ttl_seconds")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        completed_at: r.try_get("completed_at")?,
        inference_time: r.try_get("inference_time")?,
        charge: match (
            r.try_get::<Option<i64>, _>("billable_seconds")?,
            r.try_get::<Option<i64>, _>("cost_microusd")?,
        ) {
            (Some(billable_seconds), Some(cost_microusd)) => Some(crate::Charge {
                billable_seconds,
                cost_microusd,
            }),
            _ => None,
        },
    })
}

/// The failure columns of a row: (result, error, error_type, error_status, error_body).
pub(crate) type OutcomeColumns = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// The columns an [`Outcome`] sets.
pub(crate) fn outcome_columns(outcome: &Outcome) -> OutcomeColumns {
    match outcome {
        Outcome::Success { result } => (Some(result.to_string()), None, None, None, None),
        Outcome::Failure {
            status,
            body,
            error,
            error_type,
        } => (
            None,
            Some(error.clone()),
            Some(error_type.clone()),
            Some(i64::from(*status)),
            Some(body.to_string()),
        ),
    }
}

/// A key from a row of `api_keys`.
pub(crate) fn key_row<'r, R>(r: &'r R) -> Result<ApiKeyRecord, StoreError>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ApiKeyRecord {
        id: r.try_get("id")?,
        secret_sha256: r.try_get("secret_sha256")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

/// A log line from a row of `request_logs`.
pub(crate) fn log_row<'r, R>(r: &'r R) -> Result<LogLine, StoreError>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(LogLine {
        seq: r.try_get("seq")?,
        line: NewLog {
            level: r.try_get("level")?,
            message: r.try_get("message")?,
            timestamp: r.try_get("timestamp")?,
        },
    })
}

/// A file record from a row of `files`.
pub(crate) fn file_row<'r, R>(r: &'r R) -> Result<FileRecord, StoreError>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(FileRecord {
        path: r.try_get("path")?,
        owner: r.try_get("owner")?,
        request_id: r.try_get("request_id")?,
        content_type: r.try_get("content_type")?,
        size: r.try_get("size")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

/// A day of usage from a row of `usage_daily`.
pub(crate) fn usage_row<'r, R>(r: &'r R) -> Result<UsageRow, StoreError>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(UsageRow {
        day: r.try_get("day")?,
        endpoint: r.try_get("endpoint")?,
        requests: r.try_get("requests")?,
        billable_seconds: r.try_get("billable_seconds")?,
        cost_microusd: r.try_get("cost_microusd")?,
    })
}
