//! The worker: the loop that turns queued requests into videos.
//!
//! A worker claims a request from a [`WorkSource`], validates its input again, and runs
//! the engine's [`Generator`] on a blocking thread. Meanwhile an async pump forwards the
//! engine's log lines and progress to the source, sends heartbeats that keep the lease,
//! and raises the cancel flag the engine checks between steps. The output file goes to
//! the source's storage, and the request is completed with the output or its typed
//! error; internal failures are handed back to be retried. Storing and completing are
//! retried for a while, the lease renewed meanwhile, when the API, its database or its
//! storage is briefly unreachable: a finished render is not thrown away for a blip.
//!
//! [`WorkSource`] is implemented by the server over its own store (in-process workers)
//! and by [`http::HttpSource`] over the worker HTTP API (`r2v worker --api URL`).
#![warn(missing_docs)]

pub mod http;
mod pump;
pub mod wire;

use async_trait::async_trait;
pub use r2v_api::Outcome;
use r2v_api::{Preset, RequestError, ValidateOptions};
use r2v_engine::pipeline::Generator;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// A claimed request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The request id.
    pub id: String,
    /// The endpoint id it was submitted to.
    pub endpoint: String,
    /// The input JSON.
    pub input: Value,
    /// Which attempt this is (1 = first).
    pub attempt: i64,
}

/// A request log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// `INFO`, `WARN` or `ERROR`.
    pub level: String,
    /// The text.
    pub message: String,
    /// ISO-8601 UTC time with microseconds.
    pub timestamp: String,
}

impl LogEntry {
    /// A line stamped now.
    pub fn now(level: &str, message: impl Into<String>) -> Self {
        let stamp = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
        Self {
            level: level.to_owned(),
            message: message.into(),
            timestamp: stamp.trim_end_matches('Z').to_owned(),
        }
    }
}

/// What a heartbeat tells the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "lease", rename_all = "snake_case")]
pub enum LeaseState {
    /// Keep going; stop at the next step when `cancel_requested`.
    Held {
        /// The client asked to cancel.
        cancel_requested: bool,
    },
    /// The request is no longer ours: stop and report nothing.
    Lost,
}

/// Why the source could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Where work comes from and where its results go.
#[async_trait]
pub trait WorkSource: Send + Sync {
    /// The next request, if any.
    async fn claim(&self) -> Result<Option<Job>, SourceError>;
    /// Keeps the lease and asks whether to cancel.
    async fn heartbeat(&self, id: &str) -> Result<LeaseState, SourceError>;
    /// Appends log lines to the request.
    async fn append_logs(&self, id: &str, lines: Vec<LogEntry>) -> Result<(), SourceError>;
    /// Stores the output file; returns its URL.
    async fn store_output(&self, id: &str, file: &Path) -> Result<String, SourceError>;
    /// Completes the request.
    async fn complete(
        &self,
        id: &str,
        outcome: Outcome,
        inference_time: f64,
    ) -> Result<(), SourceError>;
    /// Hands the request back after an internal failure (retried, or failed once out of attempts).
    async fn release(&self, id: &str, reason: &str) -> Result<(), SourceError>;
    /// Waits until work may be available (a notification, or a short sleep).
    async fn wait_for_work(&self);
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's id, unique across the fleet.
    pub id: String,
    /// How often the lease is renewed and cancellation checked.
    pub heartbeat: Duration,
    /// Where output files are written before they are stored.
    pub scratch_dir: PathBuf,
}

/// Runs the worker loop until `shutdown` is set.
pub async fn run(
    source: Arc<dyn WorkSource>,
    generator: Generator,
    config: WorkerConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tracing::info!(worker = %config.id, engine = generator.engine().name(), "worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let job = match source.claim().await {
            Ok(Some(job)) => job,
            Ok(None) => {
                tokio::select! {
                    () = source.wait_for_work() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(worker = %config.id, error = %e, "claim failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let span = tracing::info_span!("request", request_id = %job.id, worker = %config.id);
        if let Err(e) = process(source.as_ref(), &generator, &config, job)
            .instrument(span)
            .await
        {
            tracing::warn!(error = %e, "could not report a request's end; its lease will expire and it will be retried");
        }
    }
    tracing::info!(worker = %config.id, "worker stopped");
}

async fn process(
    source: &dyn WorkSource,
    generator: &Generator,
    config: &WorkerConfig,
    job: Job,
) -> Result<(), SourceError> {
    let started = Instant::now();
    let input = match r2v_api::validate(&job.input, &ValidateOptions::default()) {
        Ok(input) => input,
        Err(details) => {
            return source
                .complete(
                    &job.id,
                    Outcome::failure(&RequestError::Invalid(details)),
                    0.0,
                )
                .await;
        }
    };
    let Some(preset) = Preset::from_endpoint_id(&job.endpoint) else {
        // Only a server newer than this worker stores such a request: give it back for a
        // worker that serves the endpoint (it fails as internal_error after the attempts).
        let reason = format!(
            "this worker does not serve the endpoint {}; upgrade it",
            job.endpoint
        );
        tracing::error!(endpoint = %job.endpoint, "{reason}");
        let _ = source
            .append_logs(&job.id, vec![LogEntry::now("ERROR", reason.clone())])
            .await;
        return source.release(&job.id, &reason).await;
    };
    let job_dir = config
        .scratch_dir
        .join(format!("{}-{}", job.id, job.attempt));
    std::fs::create_dir_all(&job_dir)
        .map_err(|e| SourceError(format!("creating {}: {e}", job_dir.display())))?;
    let output = job_dir.join("output.mp4");
    let pump = pump::Pump::start(source, &job.id, config.heartbeat);
    let mut ctx = pump.ctx(job.attempt);
    let runtime = tokio::runtime::Handle::current();
    let generator = generator.clone();
    let path = output.clone();
    let render = tokio::task::spawn_blocking(move || {
        let result = generator.generate(&runtime, &input, preset, &path, &mut ctx);
        (result, ctx)
    });
    let (result, lost) = pump.drive(render).await;
    let reported = if lost {
        Ok(())
    } else {
        report(source, config, &job, &output, result, started).await
    };
    let _ = std::fs::remove_dir_all(&job_dir);
    reported
}

/// How long a worker keeps trying to store a finished render's output and complete the
/// request while the source fails, before it gives the request back to be rendered again.
const REPORT_PATIENCE: Duration = Duration::from_secs(60);

/// Runs `call` until it succeeds, the lease is lost, or [`REPORT_PATIENCE`] has passed,
/// holding the lease throughout (a slow upload, a source that retries on its own), so that no
/// other worker takes the request meanwhile. Between tries it waits 0.25 s, doubling, at most
/// one heartbeat interval.
async fn persistently<T, F, Fut>(
    source: &dyn WorkSource,
    config: &WorkerConfig,
    id: &str,
    what: &str,
    mut call: F,
) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SourceError>>,
{
    let deadline = Instant::now() + REPORT_PATIENCE;
    let mut pause = Duration::from_millis(250).min(config.heartbeat);
    loop {
        let error = match holding_lease(source, config, id, call()).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if Instant::now() + pause >= deadline {
            return Err(error);
        }
        tracing::warn!(error = %error, "{what} failed; trying again in {pause:?}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(config.heartbeat);
        if let Ok(LeaseState::Lost) = source.heartbeat(id).await {
            return Err(SourceError(format!(
                "{what}: the lease was lost while trying again ({error})"
            )));
        }
    }
}

/// Awaits `work` while renewing the lease every heartbeat interval.
async fn holding_lease<T>(
    source: &dyn WorkSource,
    config: &WorkerConfig,
    id: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(config.heartbeat);
    ticker.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticker.tick() => {
                if let Err(e) = source.heartbeat(id).await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
        }
    }
}

/// Reports how a request ended: its output, its typed error, or a release for a retry.
async fn report(
    source: &dyn WorkSource,
    config: &WorkerConfig,
    job: &Job,
    output: &Path,
    result: Result<r2v_engine::pipeline::Generated, RequestError>,
    started: Instant,
) -> Result<(), SourceError> {
    let inference_time = started.elapsed().as_secs_f64();
    let complete = |outcome: Outcome| {
        persistently(
            source,
            config,
            &job.id,
            "completing the request",
            move || source.complete(&job.id, outcome.clone(), inference_time),
        )
    };
    match result {
        Ok(generated) => {
            let stored = persistently(source, config, &job.id, "storing the output", || {
                source.store_output(&job.id, output)
            })
            .await;
            match stored {
                Ok(url) => {
                    let output = generated.to_output(url);
                    let result =
                        serde_json::to_value(&output).map_err(|e| SourceError(e.to_string()))?;
                    complete(Outcome::Success { result }).await
                }
                Err(e) => {
                    source
                        .release(&job.id, &format!("storing the output failed: {e}"))
                        .await
                }
            }
        }
        Err(RequestError::Internal { message }) => {
            let _ = source
                .append_logs(
                    &job.id,
                    vec![LogEntry::now(
                        "ERROR",
                        format!("attempt {} failed: {message}", job.attempt),
                    )],
                )
                .await;
            source.release(&job.id, &message).await
        }
        Err(error) => complete(Outcome::failure(&error)).await,
    }
}
