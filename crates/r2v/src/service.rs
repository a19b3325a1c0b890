//! The `serve`, `keys` and `worker` subcommands: the server's configuration from its
//! checked settings (see `settings`) and wiring around `r2v-server` and `r2v-worker`.

use crate::cli::{EngineArg, KeysArgs, KeysCommand, ServeArgs, WanEngineArgs, WorkerArgs};
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
use r2v_store::now_ms;
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

/// `ServeArgs` (flags, environment and `--config` file, each value already checked by its
/// parser in `settings`) → `ServerConfig`, with the checks that involve two settings.
pub fn resolve_config(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let defaults = ServerConfig::default();
    let prices = r2v_api::Prices {
        per_second_720p: args
            .price_720p_usd
            .and_then(r2v_api::Prices::microusd_from_usd)
            .unwrap_or(defaults.prices.per_second_720p),
        per_second_1080p: args
            .price_1080p_usd
            .and_then(r2v_api::Prices::microusd_from_usd)
            .unwrap_or(defaults.prices.per_second_1080p),
    };
    let config = ServerConfig {
        listen: args.listen.unwrap_or(defaults.listen),
        data_dir: args.data_dir.clone().unwrap_or(defaults.data_dir),
        database_url: args.database_url.clone().map(Secret),
        storage_url: args.storage_url.clone(),
        auth: !args.no_auth,
        allow_private_urls: args.allow_private_urls,
        workers: args.workers.unwrap_or(defaults.workers),
        public_url: args.public_url.clone(),
        max_body_bytes: args.max_body_bytes.unwrap_or(defaults.max_body_bytes),
        max_connections: args
            .max_connections
            .map_or(defaults.max_connections, |n| n as usize),
        header_timeout_seconds: args
            .header_timeout_seconds
            .unwrap_or(defaults.header_timeout_seconds),
        body_idle_timeout_seconds: args
            .body_idle_timeout_seconds
            .unwrap_or(defaults.body_idle_timeout_seconds),
        retention_seconds: args.retention_seconds.unwrap_or(defaults.retention_seconds),
        max_attempts: args.max_attempts.unwrap_or(defaults.max_attempts),
        lease_seconds: args.lease_seconds.unwrap_or(defaults.lease_seconds),
        heartbeat_seconds: args.heartbeat_seconds.unwrap_or(defaults.heartbeat_seconds),
        worker_token: args.worker_token.clone().map(Secret),
        x264_preset: args.x264_preset.clone().unwrap_or(defaults.x264_preset),
        blocked_terms: args.blocked_terms.clone(),
        webhook_max_attempts: defaults.webhook_max_attempts,
        prices,
    };
    if config.heartbeat_seconds * 2.0 > config.lease_seconds as f64 {
        bail!(
            "--heartbeat-seconds ({}) must be at most half of --lease-seconds ({})",
            config.heartbeat_seconds,
            config.lease_seconds
        );
    }
    Ok(config)
}

/// `r2v serve`.
pub fn serve(args: ServeArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Exit> {
    let config = resolve_config(&args)?;
    let choice = args.engine.unwrap_or(EngineArg::Preview);
    let engine = engine(choice, &args.wan, &config.data_dir.join("kernels"))?;
    let audio = crate::audio::stage(&args.wan, &config.data_dir.join("kernels"))?;
    let auth = config.auth;
    runtime.block_on(r2v_server::serve(config, engine, audio, |address, key| {
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
        let store = r2v_server::open_store(&data_dir, args.database_url.as_deref()).await?;
        match args.command {
            KeysCommand::Create { name, json } => {
                let key = r2v_server::auth::create_key(store.as_ref(), &name).await?;
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
        // The server enforces the operator's prompt policy at submit.
        let mut generator = Generator::new(
            engine(args.engine, &args.wan, &crate::wan::default_kernel_cache())?,
            loader,
            SafetyPolicy::default(),
        )
        .with_x264_preset(args.x264_preset.clone());
        if let Some(stage) = crate::audio::stage(&args.wan, &crate::wan::default_kernel_cache())? {
            generator = generator.with_audio_stage(stage);
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // SIGTERM or Ctrl-C drains the worker: it claims nothing more and exits once the
        // request it is rendering is reported.
        tokio::spawn(async move {
            r2v_server::shutdown_signal().await;
            tracing::info!("draining: finishing the current request, then exiting");
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
    use crate::cli::Command;

    fn serve_args(args: &[&str]) -> ServeArgs {
        let argv = [&["r2v", "serve"], args].concat();
        match crate::settings::parse(argv.iter().map(Into::into).collect()) {
            Ok(crate::cli::Cli {
                command: Command::Serve(args),
                ..
            }) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_config_is_the_settings_over_the_defaults() {
        let config =
            resolve_config(&serve_args(&["--workers", "2", "--price-720p-usd", "0.2"])).unwrap();
        assert_eq!(config.workers, 2);
        assert_eq!(config.prices.per_second_720p, 200_000);
        assert_eq!(config.prices.per_second_1080p, 150_000, "the default");
        assert_eq!(config.lease_seconds, ServerConfig::default().lease_seconds);
        let err = resolve_config(&serve_args(&[
            "--lease-seconds",
            "4",
            "--heartbeat-seconds",
            "3",
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("half of --lease-seconds"), "{err}");
    }
}
