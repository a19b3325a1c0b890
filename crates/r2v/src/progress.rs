//! The CLI's [`RenderCtx`]: request log lines on stderr above an indicatif progress
//! bar, and Ctrl-C as cancellation.

use indicatif::{ProgressBar, ProgressStyle};
use r2v_engine::RenderCtx;
use r2v_engine::engine::LogLevel;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Progress and logs for one `r2v run`.
pub struct CliProgress {
    bar: ProgressBar,
    stage: String,
    cancelled: Arc<AtomicBool>,
}

impl CliProgress {
    /// A bar on stderr; `cancelled` is set by the Ctrl-C handler.
    pub fn new(cancelled: Arc<AtomicBool>) -> Self {
        let bar = ProgressBar::new(1);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg:<18} [{bar:40}] {pos}/{len} ({elapsed}, eta {eta})",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        Self {
            bar,
            stage: String::new(),
            cancelled,
        }
    }

    /// Prints a line above the bar (or plainly, when stderr is not a terminal).
    pub fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl RenderCtx for CliProgress {
    fn log(&mut self, level: LogLevel, message: &str) {
        let tag = match level {
            LogLevel::Info => "info",
            LogLevel::Warn => "NOTE",
        };
        self.println(&format!("[{tag}] {message}"));
    }

    fn progress(&mut self, stage: &str, done: u64, total: u64) {
        if self.stage != stage {
            self.stage = stage.to_owned();
            self.bar.set_message(stage.to_owned());
        }
        self.bar.set_length(total.max(1));
        self.bar.set_position(done);
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}
