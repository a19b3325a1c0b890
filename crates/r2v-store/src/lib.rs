//! The request store: the request row *is* the job.
//!
//! One row per request holds its whole lifecycle — status, priority and arrival order
//! (the queue), input and result or error, attempts and the worker's lease, the cancel
//! flag, the webhook's delivery state, and the owning API key — with its log lines in a
//! child table. API keys and file records live here too.
//!
//! [`RequestStore`] is the seam: [`sqlite::SqliteStore`] is the embedded default, and a
//! Postgres backend can implement the same trait (the SQL is kept portable: `UPDATE …
//! RETURNING`, no SQLite-only functions in the queries). The store does no HTTP and no
//! media work; callers build the error bodies it stores. Start at [`RequestStore`].
#![warn(missing_docs)]

pub mod postgres;
mod rows;
pub mod sqlite;

use async_trait::async_trait;
pub use r2v_api::{Charge, Outcome};
use serde_json::Value;

/// Milliseconds since the Unix epoch.
pub type UnixMs = i64;

/// The current time in [`UnixMs`].
pub fn now_ms() -> UnixMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or refused a query.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value is not what the schema promises.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// A request's place in its lifecycle (the protocol's status strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for a worker.
    InQueue,
    /// A worker holds its lease.
    InProgress,
    /// Finished: succeeded, failed or cancelled.
    Completed,
}

impl Status {
    /// The protocol's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InQueue => "IN_QUEUE",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "IN_QUEUE" => Ok(Self::InQueue),
            "IN_PROGRESS" => Ok(Self::InProgress),
            "COMPLETED" => Ok(Self::Completed),
            other => Err(StoreError::Corrupt(format!("unknown status {other}"))),
        }
    }
}

/// A request as submitted.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// The public id (a UUID).
    pub id: String,
    /// The endpoint id it was submitted to.
    pub endpoint: String,
    /// The API key id that owns it.
    pub owner: String,
    /// 0 normal, 1 low.
    pub priority: i64,
    /// The input JSON as received.
    pub input: Value,
    /// Where to deliver the signed webhook, if anywhere.
    pub webhook_url: Option<String>,
    /// Keep the input after completion (`X-Fal-Store-IO`).
    pub store_io: bool,
    /// The request must start before this time, or it fails with a start timeout.
    pub start_deadline: Option<UnixMs>,
    /// How long the output file lives (`x-fal-object-lifecycle-preference`).
    pub output_ttl_seconds: Option<i64>,
    /// When the reaper may delete the request.
    pub expires_at: UnixMs,
    /// What it costs if it completes successfully.
    pub charge: Charge,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    /// The public id.
    pub id: String,
    /// Arrival order.
    pub seq: i64,
    /// The endpoint id.
    pub endpoint: String,
    /// The owning API key id.
    pub owner: String,
    /// 0 normal, 1 low.
    pub priority: i64,
    /// Lifecycle state.
    pub status: Status,
    /// The input, unless erased.
    pub input: Option<Value>,
    /// The output on success.
    pub result: Option<Value>,
    /// The error summary on failure.
    pub error: Option<String>,
    /// The `error_type` on failure.
    pub error_type: Option<String>,
    /// The HTTP status the result endpoint answers with on failure.
    pub error_status: Option<u16>,
    /// The body the result endpoint answers with on failure.
    pub error_body: Option<Value>,
    /// How many times a worker has claimed it.
    pub attempts: i64,
    /// The worker holding the lease.
    pub worker_id: Option<String>,
    /// When the lease runs out.
    pub lease_until: Option<UnixMs>,
    /// Whether the client asked to cancel it.
    pub cancel_requested: bool,
    /// The webhook URL.
    pub webhook_url: Option<String>,
    /// `none`, `pending`, `delivered` or `failed`.
    pub webhook_state: String,
    /// Delivery attempts so far.
    pub webhook_attempts: i64,
    /// How long the output file lives, when the client chose.
    pub output_ttl_seconds: Option<i64>,
    /// When it arrived.
    pub created_at: UnixMs,
    /// When a worker first started it.
    pub started_at: Option<UnixMs>,
    /// When it completed.
    pub completed_at: Option<UnixMs>,
    /// Seconds of work, once completed.
    pub inference_time: Option<f64>,
    /// What it costs if it completes successfully (`None` for rows from before metering).
    pub charge: Option<Charge>,
}

impl RequestRow {
    /// What it was charged: its charge once it completed successfully, else nothing.
    pub fn charged(&self) -> Option<Charge> {
        self.charge
            .filter(|_| self.status == Status::Completed && self.result.is_some())
    }
}

/// One owner's usage of one endpoint on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// `YYYY-MM-DD`, UTC, the day the requests completed.
    pub day: String,
    /// The endpoint id.
    pub endpoint: String,
    /// Successful requests.
    pub requests: i64,
    /// Seconds of output.
    pub billable_seconds: i64,
    /// Their price, in micro-dollars.
    pub cost_microusd: i64,
}

/// The UTC date (`YYYY-MM-DD`) of a time.
pub fn utc_day(at: UnixMs) -> String {
    let days = at.div_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A log line to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLog {
    /// `INFO`, `WARN`, `ERROR`…
    pub level: String,
    /// The text.
    pub message: String,
    /// ISO-8601 time.
    pub timestamp: String,
}

/// A stored log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Position within the request's log, from 1.
    pub seq: i64,
    /// The line.
    pub line: NewLog,
}

/// What the worker learns from a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The lease was extended; the flag says whether the client asked to cancel.
    Held {
        /// The client asked to cancel.
        cancel_requested: bool,
    },
    /// Another worker has it now, or it is finished: stop working on it.
    Lost,
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was still queued and is now completed as cancelled; it never starts.
    CancelledWhileQueued,
    /// It is running; its worker stops at the next step.
    Requested,
    /// It had already completed.
    AlreadyCompleted,
    /// No such request.
    NotFound,
}

/// What one reaper pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Expired leases put back in the queue.
    pub requeued: u64,
    /// Expired leases past the attempt limit, failed.
    pub failed: u64,
    /// Queued requests past their start deadline, failed.
    pub start_timeouts: u64,
}

/// An API key as stored (the secret only as a hash).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    /// The public half, `id` in `Key id:secret`.
    pub id: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// A label.
    pub name: String,
    /// Creation time.
    pub created_at: UnixMs,
    /// Revocation time, if revoked.
    pub revoked_at: Option<UnixMs>,
}

/// A stored blob.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    /// Path in the object store.
    pub path: String,
    /// The API key id that owns it.
    pub owner: String,
    /// The request it is the output of, if any.
    pub request_id: Option<String>,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
    /// Creation time.
    pub created_at: UnixMs,
    /// When the reaper deletes it.
    pub expires_at: UnixMs,
}

/// Queue gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests waiting.
    pub queued: i64,
    /// Requests being worked on.
    pub in_progress: i64,
}

/// The request lifecycle, the queue and the records around them.
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Stores a new request as `IN_QUEUE`.
    async fn insert(&self, new: NewRequest) -> Result<RequestRow, StoreError>;
    /// A request by id.
    async fn get(&self, id: &str) -> Result<Option<RequestRow>, StoreError>;
    /// How many queued requests run before this one (0 = next).
    async fn queue_position(&self, row: &RequestRow) -> Result<i64, StoreError>;
    /// Takes the next request (by priority, then arrival) for `worker_id` with a lease.
    async fn claim(&self, worker_id: &str, lease_ms: i64)
    -> Result<Option<RequestRow>, StoreError>;
    /// Extends the lease.
    async fn heartbeat(
        &self,
        id: &str,
        worker_id: &str,
        lease_ms: i64,
    ) -> Result<Lease, StoreError>;
    /// Appends log lines.
    async fn append_logs(&self, id: &str, lines: &[NewLog]) -> Result<(), StoreError>;
    /// Log lines with `seq > after`.
    async fn logs_after(&self, id: &str, after: i64) -> Result<Vec<LogLine>, StoreError>;
    /// Completes a request the worker holds; `false` when the lease was lost. A success is
    /// counted in the owner's usage in the same transaction.
    async fn complete(
        &self,
        id: &str,
        worker_id: &str,
        outcome: Outcome,
        inference_time: f64,
    ) -> Result<bool, StoreError>;
    /// Gives a request back after an internal failure: queued again, or completed with
    /// `exhausted` once `max_attempts` are used. `false` when the lease was lost.
    async fn release(
        &self,
        id: &str,
        worker_id: &str,
        max_attempts: i64,
        exhausted: Outcome,
    ) -> Result<bool, StoreError>;
    /// Cancels: a queued request completes at once with `cancelled`; a running one is flagged.
    async fn cancel(&self, id: &str, cancelled: Outcome) -> Result<CancelOutcome, StoreError>;
    /// Puts back every request leased by a worker whose id starts with `prefix` (at startup).
    async fn release_workers(&self, prefix: &str) -> Result<u64, StoreError>;
    /// Expired leases and start deadlines.
    async fn reap(
        &self,
        now: UnixMs,
        max_attempts: i64,
        exhausted: Outcome,
        start_timeout: Outcome,
    ) -> Result<ReapReport, StoreError>;
    /// Takes up to `limit` completed requests whose webhook is due, for one dispatcher: their
    /// next attempt moves `lease_ms` ahead, so no other dispatcher (on any node) takes them
    /// meanwhile, and one that dies mid-delivery leaves them due again after the lease.
    async fn claim_webhooks(
        &self,
        now: UnixMs,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<RequestRow>, StoreError>;
    /// Records a delivery attempt: delivered, retry at `next_at`, or given up (`next_at` = None).
    async fn webhook_attempted(
        &self,
        id: &str,
        delivered: bool,
        error: Option<&str>,
        next_at: Option<UnixMs>,
    ) -> Result<(), StoreError>;
    /// Deletes requests and file records past their expiry; returns the deleted file paths.
    async fn delete_expired(&self, now: UnixMs) -> Result<Vec<String>, StoreError>;
    /// Queue gauges.
    async fn counts(&self) -> Result<Counts, StoreError>;
    /// Stores a key.
    async fn insert_key(&self, key: ApiKeyRecord) -> Result<(), StoreError>;
    /// A key by id.
    async fn get_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Every key.
    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes a key; `false` when there is no such active key.
    async fn revoke_key(&self, id: &str, now: UnixMs) -> Result<bool, StoreError>;
    /// Records a blob.
    async fn insert_file(&self, file: FileRecord) -> Result<(), StoreError>;
    /// A blob's record.
    async fn get_file(&self, path: &str) -> Result<Option<FileRecord>, StoreError>;
    /// The secret `name` that every node sharing this store uses: `candidate` if none was
    /// stored yet (the first node's wins), else the stored one.
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// `owner`'s usage per day and endpoint for days in `first_day..=last_day`
    /// (`YYYY-MM-DD`), oldest first.
    async fn usage(
        &self,
        owner: &str,
        first_day: &str,
        last_day: &str,
    ) -> Result<Vec<UsageRow>, StoreError>;
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_days() {
        assert_eq!(super::utc_day(0), "1970-01-01");
        assert_eq!(super::utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(super::utc_day(1_795_996_799_999), "2026-11-29");
        assert_eq!(super::utc_day(-1), "1969-12-31");
    }
}
