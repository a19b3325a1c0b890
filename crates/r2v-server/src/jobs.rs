//! The worker side of the queue, shared by in-process workers ([`LocalSource`]) and the
//! worker HTTP API: claim, heartbeat, logs, output storage, completion and release.

use crate::state::AppState;
use async_trait::async_trait;
use bytes::Bytes;
use r2v_api::RequestError;
use r2v_media::MediaError;
use r2v_media::reference::{FileResolver, Resolved};
use r2v_store::{FileRecord, Lease, NewLog, Outcome, StoreError, now_ms};
use r2v_worker::{Job, LeaseState, LogEntry, SourceError, WorkSource};
use std::path::Path;
use std::time::Duration;

impl AppState {
    /// Claims the next request for `worker_id`.
    pub async fn claim_job(&self, worker_id: &str) -> Result<Option<Job>, StoreError> {
        let lease_ms = self.config.lease_seconds * 1000;
        let Some(row) = self.store.claim(worker_id, lease_ms).await? else {
            return Ok(None);
        };
        if row.attempts == 1 {
            metrics::histogram!("r2v_queue_wait_seconds")
                .record((now_ms() - row.created_at) as f64 / 1000.0);
        }
        self.store
            .append_logs(
                &row.id,
                &[log_line(
                    "INFO",
                    &format!("claimed by worker {worker_id} (attempt {})", row.attempts),
                )],
            )
            .await?;
        Ok(Some(Job {
            id: row.id,
            endpoint: row.endpoint,
            input: row.input.unwrap_or_default(),
            attempt: row.attempts,
        }))
    }

    /// Renews a lease.
    pub async fn heartbeat_job(&self, id: &str, worker_id: &str) -> Result<LeaseState, StoreError> {
        Ok(
            match self
                .store
                .heartbeat(id, worker_id, self.config.lease_seconds * 1000)
                .await?
            {
                Lease::Held { cancel_requested } => LeaseState::Held { cancel_requested },
                Lease::Lost => LeaseState::Lost,
            },
        )
    }

    /// Appends a worker's log lines.
    pub async fn append_job_logs(&self, id: &str, lines: &[LogEntry]) -> Result<(), StoreError> {
        let lines: Vec<NewLog> = lines
            .iter()
            .map(|l| NewLog {
                level: l.level.clone(),
                message: l.message.clone(),
                timestamp: l.timestamp.clone(),
            })
            .collect();
        self.store.append_logs(id, &lines).await
    }

    /// Stores a request's output file and returns its signed URL.
    pub async fn store_job_output(
        &self,
        id: &str,
        file_name: &str,
        bytes: Bytes,
    ) -> Result<String, String> {
        let row = self
            .store
            .get(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such request")?;
        let path = format!("outputs/{id}/{}", crate::files::safe_file_name(file_name));
        let ttl = row
            .output_ttl_seconds
            .unwrap_or(self.config.retention_seconds)
            .min(self.config.retention_seconds);
        let expires_at_ms = now_ms() + ttl * 1000;
        let size = bytes.len() as i64;
        self.files
            .put(&path, bytes)
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .insert_file(FileRecord {
                path: path.clone(),
                owner: row.owner,
                request_id: Some(id.to_owned()),
                content_type: "video/mp4".to_owned(),
                size,
                created_at: now_ms(),
                expires_at: expires_at_ms,
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(self.files.url(&self.self_url, &path, expires_at_ms / 1000))
    }

    /// Completes a request; `false` when the worker no longer holds it.
    pub async fn complete_job(
        &self,
        id: &str,
        worker_id: &str,
        outcome: Outcome,
        inference_time: f64,
    ) -> Result<bool, StoreError> {
        let error_type = match &outcome {
            Outcome::Success { .. } => None,
            Outcome::Failure { error_type, .. } => Some(error_type.clone()),
        };
        let done = self
            .store
            .complete(id, worker_id, outcome, inference_time)
            .await?;
        if done {
            metrics::histogram!("r2v_inference_seconds").record(inference_time);
            if let Some(kind) = error_type {
                metrics::counter!("r2v_request_failures_total", "error_type" => kind).increment(1);
            }
            self.record_completion(id).await;
            self.completed.notify_waiters();
        }
        Ok(done)
    }

    /// Gives a request back after an internal failure.
    pub async fn release_job(
        &self,
        id: &str,
        worker_id: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let exhausted = internal_failure(&format!(
            "failed after {} attempts: {reason}",
            self.config.max_attempts
        ));
        let done = self
            .store
            .release(id, worker_id, self.config.max_attempts, exhausted)
            .await?;
        if let Some(row) = self.store.get(id).await? {
            match row.status {
                r2v_store::Status::InQueue => self.work.notify_waiters(),
                r2v_store::Status::Completed => {
                    metrics::counter!("r2v_request_failures_total", "error_type" => "internal_error").increment(1);
                    self.completed.notify_waiters();
                }
                r2v_store::Status::InProgress => {}
            }
        }
        Ok(done)
    }

    /// The metrics of a completion: its duration and what it was charged.
    async fn record_completion(&self, id: &str) {
        let Ok(Some(row)) = self.store.get(id).await else {
            return;
        };
        if let Some(done) = row.completed_at {
            metrics::histogram!("r2v_request_duration_seconds")
                .record((done - row.created_at) as f64 / 1000.0);
        }
        if let Some(charge) = row.charged() {
            metrics::counter!("r2v_billable_seconds_total", "endpoint" => row.endpoint.clone())
                .increment(charge.billable_seconds.unsigned_abs());
        }
    }
}

/// The stored outcome of an internal failure.
pub fn internal_failure(message: &str) -> Outcome {
    failure(&RequestError::Internal {
        message: message.to_owned(),
    })
}

/// The stored outcome of a request error.
pub fn failure(error: &RequestError) -> Outcome {
    Outcome::Failure {
        status: error.status(),
        body: error.body(),
        error: error.summary(),
        error_type: error.error_type().to_owned(),
    }
}

/// A log line stamped now.
pub fn log_line(level: &str, message: &str) -> NewLog {
    let entry = LogEntry::now(level, message);
    NewLog {
        level: entry.level,
        message: entry.message,
        timestamp: entry.timestamp,
    }
}

/// An in-process worker's view of the queue.
pub struct LocalSource {
    state: AppState,
    worker_id: String,
}

impl LocalSource {
    /// The source for worker `worker_id`.
    pub fn new(state: AppState, worker_id: String) -> Self {
        Self { state, worker_id }
    }
}

fn source_error(e: impl std::fmt::Display) -> SourceError {
    SourceError(e.to_string())
}

#[async_trait]
impl WorkSource for LocalSource {
    async fn claim(&self) -> Result<Option<Job>, SourceError> {
        self.state
            .claim_job(&self.worker_id)
            .await
            .map_err(source_error)
    }

    async fn heartbeat(&self, id: &str) -> Result<LeaseState, SourceError> {
        self.state
            .heartbeat_job(id, &self.worker_id)
            .await
            .map_err(source_error)
    }

    async fn append_logs(&self, id: &str, lines: Vec<LogEntry>) -> Result<(), SourceError> {
        self.state
            .append_job_logs(id, &lines)
            .await
            .map_err(source_error)
    }

    async fn store_output(&self, id: &str, file: &Path) -> Result<String, SourceError> {
        let bytes = tokio::fs::read(file).await.map_err(source_error)?;
        self.state
            .store_job_output(id, "output.mp4", Bytes::from(bytes))
            .await
            .map_err(SourceError)
    }

    async fn complete(
        &self,
        id: &str,
        outcome: Outcome,
        inference_time: f64,
    ) -> Result<(), SourceError> {
        self.state
            .complete_job(id, &self.worker_id, outcome, inference_time)
            .await
            .map(drop)
            .map_err(source_error)
    }

    async fn release(&self, id: &str, reason: &str) -> Result<(), SourceError> {
        self.state
            .release_job(id, &self.worker_id, reason)
            .await
            .map(drop)
            .map_err(source_error)
    }

    async fn wait_for_work(&self) {
        tokio::select! {
            () = self.state.work.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Resolves the server's own signed file URLs from the file store.
pub struct OwnFiles(pub AppState);

impl FileResolver for OwnFiles {
    fn resolve<'a>(&'a self, url: &'a str, max_bytes: u64) -> Resolved<'a> {
        Box::pin(async move {
            let path = self.0.files.own_path(url, now_ms() / 1000)?;
            Some(match self.0.files.get(&path).await {
                Ok(bytes) if bytes.len() as u64 > max_bytes => Err(MediaError::TooLarge {
                    max_size: max_bytes,
                }),
                Ok(bytes) => Ok(bytes.to_vec()),
                Err(e) => Err(MediaError::Download {
                    url: url.to_owned(),
                    reason: format!("the stored file is gone ({e})"),
                }),
            })
        })
    }
}
