//! [`SqliteStore`]: the embedded [`RequestStore`], one SQLite file in WAL mode.
//!
//! Claims are one `UPDATE … WHERE id = (SELECT … ORDER BY priority, seq LIMIT 1)
//! RETURNING`, which SQLite runs under its single write lock, so two workers never get
//! the same row. Every state change checks the expected status (and the lease holder),
//! so a late or duplicate call changes nothing.

use crate::rows::{
    COLUMNS, COMPLETE_SET, file_row, key_row, log_row, outcome_columns, request_row, usage_row,
};
use crate::{
    ApiKeyRecord, CancelOutcome, Counts, FileRecord, Lease, LogLine, NewLog, NewRequest, Outcome,
    ReapReport, RequestRow, RequestStore, StoreError, UnixMs, UsageRow, now_ms, utc_day,
};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::time::Duration;

/// The SQLite request store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies the migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds the parameters of [`COMPLETE_SET`]: the outcome's columns, then the time twice.
fn bind_complete<'q>(query: SqliteQuery<'q>, outcome: &Outcome, now: UnixMs) -> SqliteQuery<'q> {
    let (result, error, error_type, error_status, error_body) = outcome_columns(outcome);
    query
        .bind(result)
        .bind(error)
        .bind(error_type)
        .bind(error_status)
        .bind(error_body)
        .bind(now)
        .bind(now)
}

#[async_trait]
impl RequestStore for SqliteStore {
    async fn insert(&self, new: NewRequest) -> Result<RequestRow, StoreError> {
        let sql = format!(
            "INSERT INTO requests (id, endpoint, owner, priority, status, input, webhook_url, store_io, \
             start_deadline, output_ttl_seconds, created_at, expires_at, billable_seconds, cost_microusd) \
             VALUES (?, ?, ?, ?, 'IN_QUEUE', ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(&new.id)
            .bind(&new.endpoint)
            .bind(&new.owner)
            .bind(new.priority)
            .bind(new.input.to_string())
            .bind(&new.webhook_url)
            .bind(i64::from(new.store_io))
            .bind(new.start_deadline)
            .bind(new.output_ttl_seconds)
            .bind(now_ms())
            .bind(new.expires_at)
            .bind(new.charge.billable_seconds)
            .bind(new.charge.cost_microusd)
            .fetch_one(&self.pool)
            .await?;
        request_row(&row)
    }

    async fn get(&self, id: &str) -> Result<Option<RequestRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM requests WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(request_row).transpose()
    }

    async fn queue_position(&self, row: &RequestRow) -> Result<i64, StoreError> {
        // Two range counts over the (status, priority, seq) index; an OR would scan the queue.
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM requests WHERE status = 'IN_QUEUE' AND priority < ?) \
             + (SELECT COUNT(*) FROM requests WHERE status = 'IN_QUEUE' AND priority = ? AND seq < ?)",
        )
        .bind(row.priority)
        .bind(row.priority)
        .bind(row.seq)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    async fn claim(
        &self,
        worker_id: &str,
        lease_ms: i64,
    ) -> Result<Option<RequestRow>, StoreError> {
        let now = now_ms();
        let sql = format!(
            "UPDATE requests SET status = 'IN_PROGRESS', worker_id = ?, lease_until = ?, attempts = attempts + 1, \
             started_at = COALESCE(started_at, ?) \
             WHERE id = (SELECT id FROM requests WHERE status = 'IN_QUEUE' AND cancel_requested = 0 \
                         ORDER BY priority, seq LIMIT 1) AND status = 'IN_QUEUE' \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(worker_id)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(request_row).transpose()
    }

    async fn heartbeat(
        &self,
        id: &str,
        worker_id: &str,
        lease_ms: i64,
    ) -> Result<Lease, StoreError> {
        let flag: Option<i64> = sqlx::query_scalar(
            "UPDATE requests SET lease_until = ? WHERE id = ? AND worker_id = ? AND status = 'IN_PROGRESS' \
             RETURNING cancel_requested",
        )
        .bind(now_ms() + lease_ms)
        .bind(id)
        .bind(worker_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match flag {
            Some(flag) => Lease::Held {
                cancel_requested: flag != 0,
            },
            None => Lease::Lost,
        })
    }

    async fn append_logs(&self, id: &str, lines: &[NewLog]) -> Result<(), StoreError> {
        // One statement per line: a write statement takes SQLite's write lock before it
        // reads MAX(seq), so concurrent appends never race (a read-then-write
        // transaction would fail with SQLITE_BUSY_SNAPSHOT under WAL).
        for line in lines {
            sqlx::query(
                "INSERT INTO request_logs (request_id, seq, level, message, timestamp) \
                 SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM request_logs WHERE request_id = ?",
            )
            .bind(id)
            .bind(&line.level)
            .bind(&line.message)
            .bind(&line.timestamp)
            .bind(id)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn logs_after(&self, id: &str, after: i64) -> Result<Vec<LogLine>, StoreError> {
        let rows = sqlx::query("SELECT seq, level, message, timestamp FROM request_logs WHERE request_id = ? AND seq > ? ORDER BY seq")
            .bind(id)
            .bind(after)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(log_row).collect()
    }

    async fn complete(
        &self,
        id: &str,
        worker_id: &str,
        outcome: Outcome,
        inference_time: f64,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE requests SET {COMPLETE_SET}, inference_time = ? WHERE id = ? AND worker_id = ? AND status = 'IN_PROGRESS'"
        );
        let now = now_ms();
        let success = matches!(outcome, Outcome::Success { .. });
        // The completion and its usage commit together. `BEGIN IMMEDIATE` takes SQLite's
        // write lock first (waiting out the busy timeout), so no read snapshot is upgraded.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = bind_complete(sqlx::query(&sql), &outcome, now)
            .bind(inference_time)
            .bind(id)
            .bind(worker_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if success {
            sqlx::query(
                "INSERT INTO usage_daily (owner, day, endpoint, requests, billable_seconds, cost_microusd) \
                 SELECT owner, ?, endpoint, 1, billable_seconds, cost_microusd FROM requests \
                 WHERE id = ? AND billable_seconds IS NOT NULL AND cost_microusd IS NOT NULL \
                 ON CONFLICT (owner, day, endpoint) DO UPDATE SET \
                 requests = usage_daily.requests + excluded.requests, \
                 billable_seconds = usage_daily.billable_seconds + excluded.billable_seconds, \
                 cost_microusd = usage_daily.cost_microusd + excluded.cost_microusd",
            )
            .bind(utc_day(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn release(
        &self,
        id: &str,
        worker_id: &str,
        max_attempts: i64,
        exhausted: Outcome,
    ) -> Result<bool, StoreError> {
        let requeued = sqlx::query(
            "UPDATE requests SET status = 'IN_QUEUE', worker_id = NULL, lease_until = NULL \
             WHERE id = ? AND worker_id = ? AND status = 'IN_PROGRESS' AND attempts < ? AND cancel_requested = 0",
        )
        .bind(id)
        .bind(worker_id)
        .bind(max_attempts)
        .execute(&self.pool)
        .await?;
        if requeued.rows_affected() == 1 {
            return Ok(true);
        }
        self.complete(id, worker_id, exhausted, 0.0).await
    }

    async fn cancel(&self, id: &str, cancelled: Outcome) -> Result<CancelOutcome, StoreError> {
        let sql =
            format!("UPDATE requests SET {COMPLETE_SET} WHERE id = ? AND status = 'IN_QUEUE'");
        let queued = bind_complete(sqlx::query(&sql), &cancelled, now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if queued.rows_affected() == 1 {
            return Ok(CancelOutcome::CancelledWhileQueued);
        }
        let running = sqlx::query(
            "UPDATE requests SET cancel_requested = 1 WHERE id = ? AND status = 'IN_PROGRESS'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        if running.rows_affected() == 1 {
            return Ok(CancelOutcome::Requested);
        }
        Ok(match self.get(id).await? {
            Some(_) => CancelOutcome::AlreadyCompleted,
            None => CancelOutcome::NotFound,
        })
    }

    async fn release_workers(&self, prefix: &str) -> Result<u64, StoreError> {
        let pattern = format!("{}%", prefix.replace('%', "\\%").replace('_', "\\_"));
        let done = sqlx::query(
            "UPDATE requests SET status = 'IN_QUEUE', worker_id = NULL, lease_until = NULL \
             WHERE status = 'IN_PROGRESS' AND worker_id LIKE ? ESCAPE '\\'",
        )
        .bind(pattern)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn reap(
        &self,
        now: UnixMs,
        max_attempts: i64,
        exhausted: Outcome,
        start_timeout: Outcome,
    ) -> Result<ReapReport, StoreError> {
        let mut report = ReapReport::default();
        let sql = format!(
            "UPDATE requests SET {COMPLETE_SET} WHERE status = 'IN_PROGRESS' AND lease_until < ? AND attempts >= ?"
        );
        report.failed = bind_complete(sqlx::query(&sql), &exhausted, now)
            .bind(now)
            .bind(max_attempts)
            .execute(&self.pool)
            .await?
            .rows_affected();
        report.requeued = sqlx::query(
            "UPDATE requests SET status = 'IN_QUEUE', worker_id = NULL, lease_until = NULL \
             WHERE status = 'IN_PROGRESS' AND lease_until < ?",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let sql = format!(
            "UPDATE requests SET {COMPLETE_SET} WHERE status = 'IN_QUEUE' AND start_deadline < ?"
        );
        report.start_timeouts = bind_complete(sqlx::query(&sql), &start_timeout, now)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(report)
    }

    async fn claim_webhooks(
        &self,
        now: UnixMs,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "UPDATE requests SET webhook_next_at = ? \
             WHERE id IN (SELECT id FROM requests WHERE webhook_state = 'pending' AND webhook_next_at <= ? \
                          ORDER BY webhook_next_at LIMIT ?) \
             AND webhook_state = 'pending' AND webhook_next_at <= ? RETURNING {COLUMNS}"
        ))
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(request_row).collect()
    }

    async fn webhook_attempted(
        &self,
        id: &str,
        delivered: bool,
        error: Option<&str>,
        next_at: Option<UnixMs>,
    ) -> Result<(), StoreError> {
        let state = match (delivered, next_at) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        sqlx::query(
            "UPDATE requests SET webhook_state = ?, webhook_attempts = webhook_attempts + 1, webhook_next_at = ?, \
             webhook_last_error = ? WHERE id = ? AND webhook_state = 'pending'",
        )
        .bind(state)
        .bind(next_at)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_expired(&self, now: UnixMs) -> Result<Vec<String>, StoreError> {
        let paths: Vec<String> = sqlx::query_scalar(
            "DELETE FROM files WHERE expires_at < ? \
             OR request_id IN (SELECT id FROM requests WHERE expires_at < ? AND status = 'COMPLETED') RETURNING path",
        )
        .bind(now)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        sqlx::query("DELETE FROM requests WHERE expires_at < ? AND status = 'COMPLETED' AND webhook_state <> 'pending'")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(paths)
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN status = 'IN_QUEUE' THEN 1 ELSE 0 END), 0) AS queued, \
             COALESCE(SUM(CASE WHEN status = 'IN_PROGRESS' THEN 1 ELSE 0 END), 0) AS in_progress \
             FROM requests WHERE status <> 'COMPLETED'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Counts {
            queued: row.try_get("queued")?,
            in_progress: row.try_get("in_progress")?,
        })
    }

    async fn insert_key(&self, key: ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_keys (id, secret_sha256, name, created_at, revoked_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&key.id)
            .bind(&key.secret_sha256)
            .bind(&key.name)
            .bind(key.created_at)
            .bind(key.revoked_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, secret_sha256, name, created_at, revoked_at FROM api_keys WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_row).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query("SELECT id, secret_sha256, name, created_at, revoked_at FROM api_keys ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_row).collect()
    }

    async fn revoke_key(&self, id: &str, now: UnixMs) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_file(&self, file: FileRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO files (path, owner, request_id, content_type, size, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (path) DO UPDATE SET owner = excluded.owner, request_id = excluded.request_id, \
             content_type = excluded.content_type, size = excluded.size, expires_at = excluded.expires_at",
        )
        .bind(&file.path)
        .bind(&file.owner)
        .bind(&file.request_id)
        .bind(&file.content_type)
        .bind(file.size)
        .bind(file.created_at)
        .bind(file.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_file(&self, path: &str) -> Result<Option<FileRecord>, StoreError> {
        let row = sqlx::query("SELECT path, owner, request_id, content_type, size, created_at, expires_at FROM files WHERE path = ?")
            .bind(path)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(file_row).transpose()
    }

    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        sqlx::query(
            "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(hex::encode(candidate))
        .execute(&self.pool)
        .await?;
        let value: String = sqlx::query_scalar("SELECT value FROM secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        hex::decode(value).map_err(|e| StoreError::Corrupt(format!("secret {name}: {e}")))
    }

    async fn usage(
        &self,
        owner: &str,
        first_day: &str,
        last_day: &str,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, endpoint, requests, billable_seconds, cost_microusd FROM usage_daily \
             WHERE owner = ? AND day >= ? AND day <= ? ORDER BY day, endpoint",
        )
        .bind(owner)
        .bind(first_day)
        .bind(last_day)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(usage_row).collect()
    }
}
