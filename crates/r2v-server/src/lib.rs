//! The fal-compatible HTTP server behind `r2v serve`.
//!
//! It speaks the hosted service's protocol (`../shared/docs/PROTOCOL.md`) so that the
//! official clients work unchanged: the queue (submit, status, SSE stream, result,
//! cancel), the sync run endpoint, storage uploads, signed file URLs, `Key` auth,
//! Ed25519-signed webhooks and fal's proxy route. Requests live in the
//! [`r2v_store::RequestStore`]; in-process workers ([`jobs::LocalSource`]) and remote
//! ones (the `/worker/v1` API) render them with the engine.
//!
//! This crate never runs ffmpeg or model code itself: that happens in `r2v-worker` and
//! `r2v-engine`. Start reading at [`serve`] and [`routes::router`].
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod error;
pub mod files;
pub mod jobs;
pub mod listen;
pub mod openapi;
mod reaper;
pub mod routes;
mod secrets;
pub mod state;
pub mod webhooks;
pub mod wire;

use crate::config::ServerConfig;
use crate::files::FileStore;
use crate::jobs::{LocalSource, OwnFiles};
use crate::state::{AppState, Inner};
use crate::webhooks::WebhookSigner;
use r2v_engine::Engine;
use r2v_engine::audio::AudioStage;
use r2v_engine::pipeline::Generator;
use r2v_engine::safety::SafetyPolicy;
use r2v_media::fetch::{FetchPolicy, Fetcher};
use r2v_media::ffmpeg::Tools;
use r2v_media::reference::ReferenceLoader;
use r2v_store::RequestStore;
use r2v_store::postgres::PostgresStore;
use r2v_store::sqlite::SqliteStore;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] r2v_store::StoreError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Media(#[from] r2v_media::MediaError),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let context = context.into();
    move |source| ServeError::Io { context, source }
}

/// Opens the request store, for `r2v serve` and `r2v keys`: the Postgres database at
/// `database_url` when one is given (a fleet's API nodes share it), else SQLite in
/// `data_dir` (creating the directory).
pub async fn open_store(
    data_dir: &Path,
    database_url: Option<&str>,
) -> Result<Arc<dyn RequestStore>, ServeError> {
    if let Some(url) = database_url {
        return Ok(Arc::new(PostgresStore::open(url).await?));
    }
    std::fs::create_dir_all(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
    Ok(Arc::new(SqliteStore::open(&data_dir.join("r2v.db")).await?))
}

/// Runs the server until Ctrl-C or SIGTERM, rendering with `engine` (and making audio
/// tracks with `audio` when given). `on_ready` gets the bound address and, on the first
/// start of an empty data directory with auth on, the API key it created.
pub async fn serve(
    config: ServerConfig,
    engine: Arc<dyn Engine>,
    audio: Option<Arc<dyn AudioStage>>,
    on_ready: impl FnOnce(std::net::SocketAddr, Option<auth::NewKey>),
) -> Result<(), ServeError> {
    let database_url = config.database_url.as_ref().map(|url| url.0.as_str());
    let store = open_store(&config.data_dir, database_url).await?;
    let first_key = if config.auth && store.list_keys().await?.is_empty() {
        Some(auth::create_key(store.as_ref(), "first key").await?)
    } else {
        None
    };
    let secrets_dir = config.data_dir.join("secrets");
    let url_key = secrets::shared(store.as_ref(), &secrets_dir, "url_hmac", 32)
        .await
        .map_err(io("reading the URL signing key"))?;
    let files = match &config.storage_url {
        Some(url) => FileStore::open_s3(url, url_key)
            .map_err(|e| io(format!("opening the bucket {url}"))(std::io::Error::other(e)))?,
        None => FileStore::open(&config.data_dir.join("files"), url_key)
            .map_err(io("opening the file store"))?,
    };
    let webhooks = WebhookSigner::from_seed(
        &secrets::shared(store.as_ref(), &secrets_dir, "webhook_ed25519", 32)
            .await
            .map_err(io("reading the webhook signing key"))?,
    )
    .map_err(io("reading the webhook signing key"))?;
    let node_id = hex::encode(
        secrets::load_or_create(&secrets_dir, "node_id", 6).map_err(io("reading the node id"))?,
    );
    let scratch = config.data_dir.join("scratch");
    std::fs::create_dir_all(&scratch).map_err(io("creating the scratch directory"))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(io(format!("listening on {}", config.listen)))?;
    let address = listener
        .local_addr()
        .map_err(io("reading the bound address"))?;
    let fetcher = Fetcher::new(FetchPolicy {
        allow_private: config.allow_private_urls,
        ..FetchPolicy::default()
    })?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok();
    let self_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"))
        .trim_end_matches('/')
        .to_owned();
    tracing::info!(?config, %address, "starting r2v serve with the {} engine", engine.name());

    let policy = SafetyPolicy {
        blocked_terms: config.blocked_terms.clone(),
    };
    let state = AppState::new(Inner {
        config: config.clone(),
        policy: policy.clone(),
        store,
        files,
        webhooks,
        fetcher: fetcher.clone(),
        work: tokio::sync::Notify::new(),
        gauges: Default::default(),
        completed: tokio::sync::Notify::new(),
        metrics,
        node_id,
        self_url,
    });
    let reclaimed = state
        .store
        .release_workers(&state.local_worker_prefix())
        .await?;
    if reclaimed > 0 {
        tracing::info!(
            reclaimed,
            "requeued requests held by this node's workers before a restart"
        );
    }

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let loader = ReferenceLoader::new(fetcher, Tools::default())
        .with_resolver(Arc::new(OwnFiles(state.clone())));
    let mut generator =
        Generator::new(engine, loader, policy).with_x264_preset(config.x264_preset.clone());
    if let Some(stage) = audio {
        generator = generator.with_audio_stage(stage);
    }
    let mut tasks = Vec::new();
    for n in 0..config.workers {
        let worker_id = format!("{}{n}", state.local_worker_prefix());
        let source = Arc::new(LocalSource::new(state.clone(), worker_id.clone()));
        let worker = r2v_worker::WorkerConfig {
            id: worker_id,
            heartbeat: Duration::from_secs_f64(config.heartbeat_seconds),
            scratch_dir: scratch.clone(),
        };
        tasks.push(tokio::spawn(r2v_worker::run(
            source,
            generator.clone(),
            worker,
            stopped.clone(),
        )));
    }
    tasks.push(tokio::spawn(webhooks::run_dispatcher(
        state.clone(),
        stopped.clone(),
    )));
    tasks.push(tokio::spawn(reaper::run(state.clone(), stopped.clone())));

    on_ready(address, first_key);
    let app = routes::router(state.clone());
    let limits = listen::ConnectionLimits {
        max_connections: config.max_connections,
        header_timeout: Duration::from_secs_f64(config.header_timeout_seconds),
        body_idle_timeout: Duration::from_secs_f64(config.body_idle_timeout_seconds),
    };
    let shutdown = async {
        shutdown_signal().await;
        tracing::info!(
            "shutting down: no new claims; running requests go back to the queue on the next start"
        );
    };
    let served = listen::serve(listener, app, limits, shutdown).await;
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    served.map_err(io("serving HTTP"))
}

/// Returns at Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
