//! The `serve`, `keys` and `worker` subcommands: configuration resolution (flags >
//! environment > TOML file > defaults) and wiring around `r2v-server` and `r2v-worker`.

use crate::cli::{
    DtypeArg, EngineArg, KeysArgs, KeysCommand, ServeArgs, WanEngineArgs, WorkerArgs,
};
use crate::commands::Exit;
use anyhow::{Context, bail};
use r2v_engine::Engine;
use r2v_engine::pipeline::Generator;
use r2v_engine::preview::PreviewEngine;
use r2v_engine::safety::SafetyPolicy;
use r2v_media::fetch::{FetchPolicy, Fetcher};
use r2v_media::ffmpeg::Tools;
use r2v_media::reference::ReferenceLoader;
use r2v_server::config::{Secret, ServerConfig, default_data_dir};
use r2v_store::{RequestStore, now_ms};
use r2v_wan_engine::WanOptions;
use r2v_worker::http::HttpSource;
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The engine `choice` names, loaded once (the wan engine loads its weights here, on the
/// device `wan.device` names; GPU kernels are cached under `wan.kernel_cache`, else
/// `kernel_cache`).
pub fn engine(
    choice: EngineArg,
    wan: &WanEngineArgs,
    kernel_cache: &Path,
) -> anyhow::Result<Arc<dyn Engine>> {
    Ok(match choice {
        EngineArg::Preview => Arc::new(PreviewEngine),
        EngineArg::Wan => {
            let Some(dir) = &wan.model_dir else {
                bail!(
                    "the wan engine needs --model-dir (or R2V_MODEL_DIR, or model_dir in the config file)"
                );
            };
            let request = wan.device.unwrap_or_default();
            let device = request
                .resolve()
                .with_context(|| format!("--device {request}"))?;
            tracing::info!(requested = %request, chosen = %device, "wan engine device");
            device.use_kernel_cache(wan.kernel_cache.as_deref().unwrap_or(kernel_cache))?;
            let options = WanOptions {
                precision: wan.wan_dtype.map(crate::wan::precision),
                memory_budget: wan
                    .memory_budget_gb
                    .map(|g| (g * f64::from(1u32 << 30)) as u64),
            };
            r2v_wan_engine::open(dir, &device, options)
                .with_context(|| format!("loading the wan engine from {}", dir.display()))?
        }
    })
}

/// `ServeArgs` → `ServerConfig`: the TOML file (if any) over the defaults, then every
/// flag or environment variable that was given.
pub fn resolve_config(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --config {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("--config {}", path.display()))?
        }
        None => ServerConfig::default(),
    };
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = &args.data_dir {
        config.data_dir = v.clone();
    }
    if args.no_auth {
        config.auth = false;
    }
    if args.allow_private_urls {
        config.allow_private_urls = true;
    }
    if let Some(v) = args.workers {
        config.workers = v;
    }
    if let Some(v) = &args.public_url {
        let parsed =
            url::Url::parse(v).with_context(|| format!("--public-url {v} is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("--public-url must be an http(s) URL, not {v}");
        }
        config.public_url = Some(v.trim_end_matches('/').to_owned());
    }
    if let Some(v) = &args.worker_token {
        if v.len() < 16 {
            bail!("--worker-token must be at least 16 characters");
        }
        config.worker_token = Some(Secret(v.clone()));
    }
    if let Some(v) = args.max_body_bytes {
        config.max_body_bytes = v;
    }
    if let Some(v) = args.max_connections {
        config.max_connections = v;
    }
    if let Some(v) = args.header_timeout_seconds {
        config.header_timeout_seconds = v;
    }
    if let Some(v) = args.body_idle_timeout_seconds {
        config.body_idle_timeout_seconds = v;
    }
    if let Some(v) = args.retention_seconds {
        config.retention_seconds = v;
    }
    if let Some(v) = args.max_attempts {
        if v < 1 {
            bail!("--max-attempts must be at least 1");
        }
        config.max_attempts = v;
    }
    if let Some(v) = args.lease_seconds {
        config.lease_seconds = v;
    }
    if let Some(v) = args.heartbeat_seconds {
        config.heartbeat_seconds = v;
    }
    if let Some(v) = &args.x264_preset {
        config.x264_preset = v.clone();
    }
    if !args.blocked_terms.is_empty() {
        config.blocked_terms = args.blocked_terms.clone();
    }
    if config.heartbeat_seconds <= 0.0
        || config.heartbeat_seconds * 2.0 > config.lease_seconds as f64
    {
        bail!("--heartbeat-seconds must be positive and at most half of --lease-seconds");
    }
    if config.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    for (flag, seconds) in [
        ("--header-timeout-seconds", config.header_timeout_seconds),
        (
            "--body-idle-timeout-seconds",
            config.body_idle_timeout_seconds,
        ),
    ] {
        if !(seconds.is_finite() && seconds > 0.0 && seconds < 1e9) {
            bail!("{flag} must be a positive number of seconds, not {seconds}");
        }
    }
    Ok(config)
}

/// The wan engine's flags over the config file's keys.
fn wan_settings(flags: &WanEngineArgs, config: &ServerConfig) -> anyhow::Result<WanEngineArgs> {
    let mut wan = flags.clone();
    if wan.model_dir.is_none() {
        wan.model_dir = config.model_dir.clone();
    }
    if wan.device.is_none()
        && let Some(device) = &config.device
    {
        wan.device = Some(
            device
                .parse()
                .map_err(|e: String| anyhow::anyhow!("device in the config file: {e}"))?,
        );
    }
    if wan.kernel_cache.is_none() {
        wan.kernel_cache = config.kernel_cache.clone();
    }
    if wan.memory_budget_gb.is_none() {
        wan.memory_budget_gb = config.memory_budget_gb;
    }
    if wan.wan_dtype.is_none()
        && let Some(dtype) = &config.wan_dtype
    {
        wan.wan_dtype = Some(match dtype.as_str() {
            "f32" => DtypeArg::F32,
            "bf16" => DtypeArg::Bf16,
            other => bail!("wan_dtype = {other:?} in the config file: use \"f32\" or \"bf16\""),
        });
    }
    if let Some(gb) = wan.memory_budget_gb
        && !(gb.is_finite() && gb > 0.0)
    {
        bail!("--memory-budget-gb must be a positive number of GiB, not {gb}");
    }
    Ok(wan)
}

/// `r2v serve`.
pub fn serve(args: ServeArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Exit> {
    let config = resolve_config(&args)?;
    let choice = match (args.engine, config.engine.as_deref()) {
        (Some(choice), _) => choice,
        (None, None | Some("preview")) => EngineArg::Preview,
        (None, Some("wan")) => EngineArg::Wan,
        (None, Some(other)) => {
            bail!("engine = {other:?} in the config file: use \"preview\" or \"wan\"")
        }
    };
    let wan = wan_settings(&args.wan, &config)?;
    let engine = engine(choice, &wan, &config.data_dir.join("kernels"))?;
    let auth = config.auth;
    runtime.block_on(r2v_server::serve(config, engine, |address, key| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "r2v serve listening on http://{address}");
        if let Some(key) = key {
            let _ = writeln!(
                out,
                "created an API key (shown once; only its hash is stored): {}",
                key.key
            );
            let _ = writeln!(
                out,
                "use it as `Authorization: Key {}` or FAL_KEY={}",
                key.key, key.key
            );
        } else if !auth {
            let _ = writeln!(out, "auth is off (--no-auth): every caller is `anonymous`");
        }
        let _ = out.flush();
    }))?;
    Ok(Exit::Ok)
}

/// `r2v keys`.
pub fn keys(args: KeysArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Exit> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    runtime.block_on(async {
        let store = r2v_server::open_store(&data_dir).await?;
        match args.command {
            KeysCommand::Create { name, json } => {
                let key = r2v_server::auth::create_key(&store, &name).await?;
                if json {
                    println!("{}", json!({ "id": key.id, "key": key.key }));
                } else {
                    println!("{}", key.key);
                }
            }
            KeysCommand::List { json } => {
                let keys = store.list_keys().await?;
                if json {
                    let list: Vec<_> = keys
                        .iter()
                        .map(|k| json!({ "id": k.id, "name": k.name, "created_at": k.created_at, "revoked": k.revoked_at.is_some() }))
                        .collect();
                    println!("{}", serde_json::Value::Array(list));
                } else {
                    for k in keys {
                        println!("{}\t{}\t{}", k.id, if k.revoked_at.is_some() { "revoked" } else { "active" }, k.name);
                    }
                }
            }
            KeysCommand::Revoke { id } => {
                if !store.revoke_key(&id, now_ms()).await? {
                    bail!("no active key with id {id}");
                }
                println!("revoked {id}");
            }
        }
        Ok(Exit::Ok)
    })
}

/// `r2v worker`.
pub fn worker(args: WorkerArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Exit> {
    let id = args.id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "host".into());
        format!("remote:{}:{}", host.trim(), std::process::id())
    });
    let scratch = args.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    runtime.block_on(async {
        let source = Arc::new(HttpSource::new(&args.api, &args.token, &id)?);
        let fetcher = Fetcher::new(FetchPolicy {
            allow_private: args.fetch.allow_private_urls,
            ..FetchPolicy::default()
        })?;
        let loader = ReferenceLoader::new(fetcher, Tools::default()).with_resolver(source.clone());
        let generator = Generator::new(
            engine(args.engine, &args.wan, &crate::wan::default_kernel_cache())?,
            loader,
            SafetyPolicy::default(),
        )
        .with_x264_preset(args.x264_preset.clone());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(true);
        });
        println!("r2v worker {id} taking work from {}", args.api);
        let config = r2v_worker::WorkerConfig {
            id,
            heartbeat: Duration::from_secs_f64(args.heartbeat_seconds),
            scratch_dir: scratch,
        };
        r2v_worker::run(source, generator, config, stopped).await;
        Ok(Exit::Ok)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn serve_args(args: &[&str]) -> ServeArgs {
        match Cli::parse_from([&["r2v", "serve"], args].concat()).command {
            Command::Serve(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r2v.toml");
        std::fs::write(
            &file,
            "workers = 3\nauth = false\nlisten = \"127.0.0.1:9000\"\nmax_attempts = 5\n",
        )
        .unwrap();
        let config = resolve_config(&serve_args(&[
            "--config",
            file.to_str().unwrap(),
            "--workers",
            "2",
        ]))
        .unwrap();
        assert_eq!(config.workers, 2, "the flag wins");
        assert_eq!(config.max_attempts, 5, "the file beats the default");
        assert!(!config.auth);
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.lease_seconds, ServerConfig::default().lease_seconds);
        std::fs::write(&file, "workerz = 3\n").unwrap();
        let err = resolve_config(&serve_args(&["--config", file.to_str().unwrap()])).unwrap_err();
        assert!(format!("{err:#}").contains("workerz"), "{err:#}");
        let err = resolve_config(&serve_args(&["--public-url", "ftp://x"])).unwrap_err();
        assert!(err.to_string().contains("--public-url"));
    }

    #[test]
    fn the_wan_engine_settings_come_from_flags_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r2v.toml");
        std::fs::write(
            &file,
            "device = \"cpu\"\nwan_dtype = \"bf16\"\nmemory_budget_gb = 12.5\nkernel_cache = \"/k\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let args = serve_args(&["--config", path, "--device", "cuda:1"]);
        let wan = wan_settings(&args.wan, &resolve_config(&args).unwrap()).unwrap();
        assert_eq!(
            wan.device,
            Some(r2v_wan::device::DeviceRequest::Cuda(1)),
            "the flag wins"
        );
        assert!(matches!(wan.wan_dtype, Some(DtypeArg::Bf16)));
        assert_eq!(wan.memory_budget_gb, Some(12.5));
        assert_eq!(
            wan.kernel_cache.as_deref(),
            Some(std::path::Path::new("/k"))
        );
        let args = serve_args(&["--config", path]);
        let wan = wan_settings(&args.wan, &resolve_config(&args).unwrap()).unwrap();
        assert_eq!(wan.device, Some(r2v_wan::device::DeviceRequest::Cpu));
        for (bad, message) in [
            ("device = \"gpu\"", "device in the config file"),
            ("wan_dtype = \"f16\"", "wan_dtype"),
            ("memory_budget_gb = -1.0", "--memory-budget-gb"),
        ] {
            std::fs::write(&file, bad).unwrap();
            let args = serve_args(&["--config", path]);
            let err = wan_settings(&args.wan, &resolve_config(&args).unwrap()).unwrap_err();
            assert!(format!("{err:#}").contains(message), "{bad}: {err:#}");
        }
    }
}
