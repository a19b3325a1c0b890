//! [`AppState`]: what every handler shares, built once at startup.

use crate::config::ServerConfig;
use crate::files::FileStore;
use crate::webhooks::WebhookSigner;
use axum::http::HeaderMap;
use metrics_exporter_prometheus::PrometheusHandle;
use r2v_engine::safety::SafetyPolicy;
use r2v_media::fetch::Fetcher;
use r2v_store::RequestStore;
use std::ops::Deref;
use std::sync::Arc;
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
