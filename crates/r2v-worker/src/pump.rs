//! The async side of a running request: forwards the engine's log lines, renews the
//! lease, and raises the cancel flag, while the engine renders on a blocking thread.

use crate::{LeaseState, LogEntry, WorkSource};
use r2v_api::RequestError;
use r2v_engine::RenderCtx;
use r2v_engine::engine::LogLevel;
use r2v_engine::pipeline::Generated;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the render thread returns: its result and the context it used.
pub(crate) type Rendered = (Result<Generated, RequestError>, WorkerCtx);

/// The engine's view of its worker: log lines go into a channel, progress becomes a
/// log line every 10 %, and the cancel flag is read at every step boundary.
pub(crate) struct WorkerCtx {
    logs: mpsc::UnboundedSender<LogEntry>,
    cancel: Arc<AtomicBool>,
    stage: String,
    next_percent: u64,
}

impl RenderCtx for WorkerCtx {
    fn log(&mut self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
        };
        let _ = self.logs.send(LogEntry::now(level, message));
    }

    fn progress(&mut self, stage: &str, done: u64, total: u64) {
        if stage != self.stage {
            self.stage = stage.to_owned();
            self.next_percent = 0;
        }
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        if percent >= self.next_percent && total > 0 {
            let _ = self.logs.send(LogEntry::now(
                "INFO",
                format!("{stage}: {done}/{total} ({percent}%)"),
            ));
            self.next_percent = (percent / 10 + 1) * 10;
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

pub(crate) struct Pump<'a> {
    source: &'a dyn WorkSource,
    id: String,
    heartbeat: Duration,
    tx: mpsc::UnboundedSender<LogEntry>,
    rx: mpsc::UnboundedReceiver<LogEntry>,
    cancel: Arc<AtomicBool>,
}

impl<'a> Pump<'a> {
    pub(crate) fn start(source: &'a dyn WorkSource, id: &str, heartbeat: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            source,
            id: id.to_owned(),
            heartbeat,
            tx,
            rx,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn ctx(&self, attempt: i64) -> WorkerCtx {
        let _ = self.tx.send(LogEntry::now(
            "INFO",
            format!("started (attempt {attempt})"),
        ));
        WorkerCtx {
            logs: self.tx.clone(),
            cancel: self.cancel.clone(),
            stage: String::new(),
            next_percent: 0,
        }
    }

    /// Runs until the render finishes; returns its result and whether the lease was lost.
    pub(crate) async fn drive(
        mut self,
        mut render: JoinHandle<Rendered>,
    ) -> (Result<Generated, RequestError>, bool) {
        let mut ticker = tokio::time::interval(self.heartbeat);
        ticker.tick().await;
        let mut lost = false;
        loop {
            tokio::select! {
                joined = &mut render => {
                    let result = match joined {
                        Ok((result, ctx)) => {
                            drop(ctx);
                            result
                        }
                        Err(e) => Err(RequestError::Internal { message: format!("the engine thread failed: {e}") }),
                    };
                    drop(self.tx);
                    let mut rest = Vec::new();
                    while let Some(line) = self.rx.recv().await {
                        rest.push(line);
                    }
                    if !rest.is_empty() && !lost {
                        let _ = self.source.append_logs(&self.id, rest).await;
                    }
                    return (result, lost);
                }
                Some(first) = self.rx.recv() => {
                    let mut batch = vec![first];
                    while let Ok(line) = self.rx.try_recv() {
                        batch.push(line);
                    }
                    if let Err(e) = self.source.append_logs(&self.id, batch).await {
                        tracing::warn!(error = %e, "could not append log lines");
                    }
                }
                _ = ticker.tick() => {
                    match self.source.heartbeat(&self.id).await {
                        Ok(LeaseState::Held { cancel_requested }) => {
                            if cancel_requested {
                                self.cancel.store(true, Ordering::Relaxed);
                            }
                        }
                        Ok(LeaseState::Lost) => {
                            tracing::warn!("lease lost; abandoning the request");
                            lost = true;
                            self.cancel.store(true, Ordering::Relaxed);
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
            }
        }
    }
}
