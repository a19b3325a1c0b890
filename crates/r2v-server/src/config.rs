//! [`ServerConfig`]: every setting of `r2v serve` the server itself uses, as a plain struct
//! with defaults. The binary parses and checks flags, environment variables and the TOML
//! file (all through the same parsers) and builds it.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A secret whose `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The server's settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the database, files and keys live.
    pub data_dir: PathBuf,
    /// A Postgres database for the request store (`postgres://…`), shared by a fleet's API
    /// nodes; SQLite in `data_dir` without one.
    pub database_url: Option<Secret>,
    /// An S3-compatible bucket for uploads and outputs (`s3://bucket[/prefix]`), shared by a
    /// fleet's API nodes; `files/` in `data_dir` without one.
    pub storage_url: Option<String>,
    /// Require API keys (`Authorization: Key id:secret`).
    pub auth: bool,
    /// Let reference URLs and webhooks reach loopback, private and link-local addresses.
    pub allow_private_urls: bool,
    /// In-process workers.
    pub workers: usize,
    /// Base of the absolute URLs in responses; else the request's `Host`.
    pub public_url: Option<String>,
    /// Largest request body, in bytes (submits and uploads; other routes have smaller limits).
    pub max_body_bytes: u64,
    /// Most connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Longest wait for a request's headers, in seconds (also closes idle keep-alive
    /// connections).
    pub header_timeout_seconds: f64,
    /// Longest pause inside a request body, in seconds; a body that stalls longer gets 408.
    pub body_idle_timeout_seconds: f64,
    /// How long requests and files are kept, in seconds.
    pub retention_seconds: i64,
    /// Attempts before a request that keeps failing internally is failed.
    pub max_attempts: i64,
    /// Lease length, in seconds; a worker silent for longer loses its request.
    pub lease_seconds: i64,
    /// How often workers renew their lease, in seconds.
    pub heartbeat_seconds: f64,
    /// Token that remote workers present; the worker API is off without one.
    pub worker_token: Option<Secret>,
    /// x264 preset for outputs.
    pub x264_preset: String,
    /// Prompt terms the safety checker refuses.
    pub blocked_terms: Vec<String>,
    /// Webhook delivery attempts before giving up.
    pub webhook_max_attempts: i64,
    /// The standard endpoint's price per output second at each resolution (flash is
    /// charged a share of it).
    pub prices: r2v_api::Prices,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: default_data_dir(),
            database_url: None,
            storage_url: None,
            auth: true,
            allow_private_urls: false,
            workers: 1,
            public_url: None,
            max_body_bytes: 512 * 1024 * 1024,
            max_connections: 1024,
            header_timeout_seconds: 30.0,
            body_idle_timeout_seconds: 60.0,
            retention_seconds: 7 * 24 * 3600,
            max_attempts: 3,
            lease_seconds: 30,
            heartbeat_seconds: 2.0,
            worker_token: None,
            x264_preset: "veryfast".to_owned(),
            blocked_terms: Vec::new(),
            webhook_max_attempts: 10,
            prices: r2v_api::Prices::default(),
        }
    }
}

/// `$XDG_DATA_HOME/r2v` (or the platform's equivalent), else `./r2v-data`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map_or_else(|| PathBuf::from("r2v-data"), |d| d.join("r2v"))
}
