//! [`AppState`]: what every handler shares, built once at startup.

use crate::config::ServerConfig;
use crate::files::FileStore;
use crate::webhooks::WebhookSigner;
use axum::http::HeaderMap;
use metrics_exporter_prometheus::PrometheusHandle;
use r2v_engine::safety::SafetyPolicy;
use r2v_media::fetch::Fetcher;
use r2v_store::{Counts, RequestStore, StoreError};
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The fields of [`AppState`].
pub struct Inner {
    /// Settings.
    pub config: ServerConfig,
    /// The operator's prompt policy, checked at submit (`--blocked-term`).
    pub policy: SafetyPolicy,
    /// Requests, logs, keys, file records.
    pub store: Arc<dyn RequestStore>,
    /// Blobs and URL signing.
    pub files: FileStore,
    /// Webhook signing key and JWKS.
    pub webhooks: WebhookSigner,
    /// The SSRF-guarded client for webhooks.
    pub fetcher: Fetcher,
    /// Wakes in-process workers when a request is queued.
    pub work: Notify,
    /// The queue's counts for `/health` and `/metrics`.
    pub gauges: QueueGauges,
    /// Wakes the webhook dispatcher when a request completes.
    pub completed: Notify,
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// This server's id; in-process workers are `local:{node_id}:{n}`.
    pub node_id: String,
    /// The base of URLs made outside a client request (output files): `--public-url`,
    /// else the address the server listens on.
    pub self_url: String,
}

/// The queue's counts, read from the store at most once a second: counting costs a walk of
/// the queue's index (about 1 ms per 20 000 queued on SQLite), and balancers and scrapers poll
/// `/health` and `/metrics` freely.
#[derive(Default)]
pub struct QueueGauges {
    last: tokio::sync::Mutex<Option<(Instant, Counts)>>,
}

impl QueueGauges {
    /// How old the counts may be.
    pub const MAX_AGE: Duration = Duration::from_secs(1);

    /// The counts, fresh from the store when the last read is older than [`Self::MAX_AGE`]
    /// (one caller reads; the others wait for its answer).
    pub async fn read(&self, store: &dyn RequestStore) -> Result<Counts, StoreError> {
        let mut last = self.last.lock().await;
        if let Some((at, counts)) = *last
            && at.elapsed() < Self::MAX_AGE
        {
            return Ok(counts);
        }
        let counts = store.counts().await?;
        *last = Some((Instant::now(), counts));
        Ok(counts)
    }
}

impl AppState {
    /// Wraps the fields.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// The base of absolute URLs: `--public-url`, else `http://{Host}`.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.config.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let host = headers
            .get("x-forwarded-host")
            .or_else(|| headers.get("host"))
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        format!("http://{host}")
    }

    /// The worker id prefix of this node's in-process workers.
    pub fn local_worker_prefix(&self) -> String {
        format!("local:{}:", self.node_id)
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
