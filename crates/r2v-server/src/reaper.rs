//! The reaper: expired leases go back to the queue (or fail past the attempt limit),
//! queued requests past their start deadline fail with a 504, and requests and files
//! past their retention are deleted.

use crate::jobs::{failure, internal_failure};
use crate::state::AppState;
use r2v_api::RequestError;
use r2v_store::now_ms;
use std::time::Duration;

/// Runs until `shutdown` flips.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut ticks: u64 = 0;
    // The retention pass runs every minute, or more often when retention is shorter.
    let retention_every = (state.config.retention_seconds / 2).clamp(1, 60) as u64;
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        let exhausted = internal_failure(&format!(
            "the worker stopped answering, {} times",
            state.config.max_attempts
        ));
        match state
            .store
            .reap(
                now_ms(),
                state.config.max_attempts,
                exhausted,
                failure(&RequestError::StartTimeout),
            )
            .await
        {
            Ok(report) => {
                if report.requeued > 0 {
                    tracing::warn!(
                        requeued = report.requeued,
                        "leases expired; requests requeued"
                    );
                    state.work.notify_waiters();
                }
                if report.failed + report.start_timeouts > 0 {
                    metrics::counter!("r2v_request_failures_total", "error_type" => "internal_error").increment(report.failed);
                    metrics::counter!("r2v_request_failures_total", "error_type" => "request_timeout").increment(report.start_timeouts);
                    state.completed.notify_waiters();
                }
            }
            Err(e) => tracing::warn!(error = %e, "reaper pass failed"),
        }
        ticks += 1;
        if ticks.is_multiple_of(retention_every) {
            match state.store.delete_expired(now_ms()).await {
                Ok(paths) => {
                    for path in paths {
                        if let Err(e) = state.files.delete(&path).await {
                            tracing::warn!(%path, error = %e, "could not delete an expired file");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "retention pass failed"),
            }
        }
    }
}
