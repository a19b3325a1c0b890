//! The worker API's bodies (`/worker/v1`), shared by the server that reads them and
//! [`crate::http::HttpSource`] that writes them, so the two sides cannot drift. Answers are
//! [`crate::Job`] (claim), [`crate::LeaseState`] (heartbeat) and [`OutputStored`].

use crate::{LogEntry, Outcome};
use serde::{Deserialize, Serialize};

/// `POST claim`, `POST requests/{id}/heartbeat`: who calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerBody {
    /// The worker's id.
    pub worker_id: String,
}

/// `POST requests/{id}/logs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsBody {
    /// The worker's id.
    pub worker_id: String,
    /// The lines, oldest first.
    pub lines: Vec<LogEntry>,
}

/// `PUT requests/{id}/output?…`: the body is the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputQuery {
    /// The worker's id.
    pub worker_id: String,
    /// The file's name [default: output.mp4].
    pub file_name: Option<String>,
}

/// The answer to an output upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputStored {
    /// The stored file's signed URL.
    pub url: String,
}

/// `POST requests/{id}/complete`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteBody {
    /// The worker's id.
    pub worker_id: String,
    /// How the request ended.
    pub outcome: Outcome,
    /// Seconds of work.
    pub inference_time: f64,
}

/// `POST requests/{id}/release`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseBody {
    /// The worker's id.
    pub worker_id: String,
    /// Why it is given back.
    pub reason: String,
}
