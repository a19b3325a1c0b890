//! The `run` and `validate` subcommands: argument wiring around `r2v-engine`'s
//! pipeline and `r2v-media`'s reference checks. Exit codes are listed in [`Exit`].

use crate::cli::{EndpointArg, FetchArgs, RunArgs, ValidateArgs};
use crate::progress::CliProgress;
use anyhow::Context;
use r2v_api::{ErrorDetail, LocItem, Preset, RequestError, ValidInput, ValidateOptions};
use r2v_engine::pipeline::Generator;
use r2v_engine::safety::SafetyPolicy;
use r2v_media::fetch::{FetchPolicy, Fetcher};
use r2v_media::ffmpeg::Tools;
use r2v_media::reference::{LoadError, ReferenceLoader};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit codes, one per kind of failure.
#[derive(Debug, Clone, Copy)]
pub enum Exit {
    /// The video was written (or the request is valid).
    Ok = 0,
    /// An I/O or setup failure of the command itself.
    Failure = 1,
    /// The request broke a rule of SPEC §2 (the server's 422).
    Invalid = 3,
    /// The safety checker refused the request (422 `content_policy_violation`).
    ContentPolicy = 4,
    /// Generation failed on our side (ffmpeg crashed, timed out…; the server's 500).
    Internal = 5,
    /// Cancelled with Ctrl-C (the server's 499).
    Cancelled = 130,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

fn exit_for(error: &RequestError) -> Exit {
    match error {
        RequestError::Invalid(_) => Exit::Invalid,
        RequestError::ContentPolicy(_) => Exit::ContentPolicy,
        RequestError::Cancelled => Exit::Cancelled,
        RequestError::TooLarge { .. }
        | RequestError::StartTimeout
        | RequestError::Internal { .. }
        | RequestError::Fatal { .. } => Exit::Internal,
    }
}

/// `r2v run`.
pub fn run(args: RunArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Exit> {
    let body = run_body(&args)?;
    let preset = match args.endpoint {
        EndpointArg::Flash => Preset::Flash,
        EndpointArg::Standard => Preset::Standard,
    };
    let engine =
        crate::service::engine(args.engine, &args.wan, &crate::wan::default_kernel_cache())?;
    let loader = loader(&args.fetch, runtime)?;
    let input = match r2v_api::validate(
        &body,
        &ValidateOptions {
            allow_local_paths: true,
        },
    ) {
        Ok(input) => input,
        Err(details) => return Ok(report(&RequestError::Invalid(details), args.json)),
    };
    let mut generator = Generator::new(
        engine,
        loader,
        SafetyPolicy {
            blocked_terms: args.blocked_terms.clone(),
        },
    )
    .with_x264_preset(args.x264_preset.clone());
    if let Some(stage) = crate::audio::stage(&args.wan, &crate::wan::default_kernel_cache())? {
        generator = generator.with_audio_stage(stage);
    }
    eprintln!(
        "r2v {} engine{}",
        generator.engine().name(),
        if generator.engine().name() == "preview" {
            ": a deterministic storyboard of your references. This is a preview, NOT a neural model."
        } else {
            ""
        }
    );

    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = cancelled.clone();
    runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    let mut progress = CliProgress::new(cancelled);
    let result = generator.generate(
        runtime.handle(),
        &input,
        preset,
        &args.output,
        &mut progress,
    );
    progress.finish();
    let generated = match result {
        Ok(generated) => generated,
        Err(error) => {
            let _ = std::fs::remove_file(&args.output);
            return Ok(report(&error, args.json));
        }
    };
    let absolute = std::path::absolute(&generated.path).context("resolving the output path")?;
    let url = url::Url::from_file_path(&absolute).map_err(|()| {
        anyhow::anyhow!("{} cannot be written as a file:// URL", absolute.display())
    })?;
    let output = generated.to_output(url.to_string());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&output)?);
    } else {
        let v = &output.video;
        let audio = match &generated.probe.audio {
            Some(a) => format!("{} {} Hz, {} channels", a.codec, a.sample_rate, a.channels),
            None => "none".to_owned(),
        };
        println!("wrote {}", args.output.display());
        println!(
            "  video: {}x{}, {} fps, {:.3} s, {} frames, {} bytes",
            v.width, v.height, v.fps, v.duration, v.num_frames, v.file_size
        );
        println!("  audio: {audio}");
        println!("  seed:  {}", output.seed);
        if let Some(prompt) = &output.actual_prompt {
            println!("  actual_prompt: {prompt}");
        }
        if generator.engine().name() == "preview" {
            println!(
                "  note:  made by the preview engine, a storyboard of the references; not a neural model"
            );
        }
    }
    Ok(Exit::Ok)
}

/// `r2v validate`.
pub fn validate(args: ValidateArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Exit> {
    let body = read_request(&args.request)?;
    let loader = loader(&args.fetch, runtime)?;
    let input = r2v_api::validate(
        &body,
        &ValidateOptions {
            allow_local_paths: true,
        },
    );
    let result = match input {
        Err(details) => Err(RequestError::Invalid(details)),
        Ok(input) => check_references(&input, &loader, runtime),
    };
    match result {
        Err(error) => Ok(report(&error, args.json)),
        Ok(references) => {
            if args.json {
                println!("{}", json!({ "valid": true, "references": references }));
            } else {
                println!("valid: every field and {references} reference file(s) passed the checks");
            }
            Ok(Exit::Ok)
        }
    }
}

fn check_references(
    input: &ValidInput,
    loader: &ReferenceLoader,
    runtime: &tokio::runtime::Runtime,
) -> Result<usize, RequestError> {
    match runtime.block_on(loader.load_all(input)) {
        Ok(loaded) => Ok(loaded.len()),
        Err(LoadError::Invalid(details)) => Err(RequestError::Invalid(details)),
        Err(LoadError::Internal(error)) => Err(RequestError::Internal {
            message: error.to_string(),
        }),
    }
}

fn loader(fetch: &FetchArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ReferenceLoader> {
    let _guard = runtime.enter();
    let fetcher = Fetcher::new(FetchPolicy {
        allow_private: fetch.allow_private_urls,
        ..FetchPolicy::default()
    })
    .context("setting up the HTTP client")?;
    Ok(ReferenceLoader::new(fetcher, Tools::default()))
}

/// Prints an error as the server would answer it, and picks the exit code.
fn report(error: &RequestError, as_json: bool) -> Exit {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&error.body()).unwrap_or_default()
        );
    } else {
        match error {
            RequestError::Invalid(details) => {
                eprintln!(
                    "error: the request is invalid ({} problem{}):",
                    details.len(),
                    if details.len() == 1 { "" } else { "s" }
                );
                for detail in details {
                    eprintln!("  {}", describe(detail));
                }
            }
            RequestError::ContentPolicy(detail) => eprintln!("error: {}", describe(detail)),
            RequestError::Cancelled => eprintln!("error: cancelled"),
            RequestError::TooLarge { .. }
            | RequestError::StartTimeout
            | RequestError::Internal { .. }
            | RequestError::Fatal { .. } => {
                eprintln!("error: {}", error.summary())
            }
        }
    }
    exit_for(error)
}

/// `body.image_urls[2]: image is 200x200; ... [image_too_small]`.
fn describe(detail: &ErrorDetail) -> String {
    let mut loc = String::new();
    for item in &detail.loc {
        match item {
            LocItem::Key(key) if loc.is_empty() => loc.push_str(key),
            LocItem::Key(key) => {
                loc.push('.');
                loc.push_str(key);
            }
            LocItem::Index(i) => loc.push_str(&format!("[{i}]")),
        }
    }
    format!("{loc}: {} [{}]", detail.msg, detail.kind)
}

/// The request body for `run`: the `--input` file, with every given flag on top.
fn run_body(args: &RunArgs) -> anyhow::Result<Value> {
    let mut body = match &args.input {
        Some(path) => read_request(path)?,
        None => Value::Object(Map::new()),
    };
    let Some(obj) = body.as_object_mut() else {
        // Not an object: validation reports it in the API's words.
        return Ok(body);
    };
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            obj.insert(key.to_owned(), value);
        }
    };
    set("prompt", args.prompt.clone().map(Value::from));
    set(
        "image_urls",
        (!args.images.is_empty()).then(|| json!(args.images)),
    );
    set(
        "video_urls",
        (!args.videos.is_empty()).then(|| json!(args.videos)),
    );
    set("aspect_ratio", args.aspect_ratio.clone().map(Value::from));
    set("resolution", args.resolution.clone().map(Value::from));
    set("duration", args.duration.clone().map(Value::from));
    set(
        "negative_prompt",
        args.negative_prompt.clone().map(Value::from),
    );
    set(
        "enable_prompt_expansion",
        args.enable_prompt_expansion.map(Value::from),
    );
    set("multi_shots", args.multi_shots.map(Value::from));
    set("enable_audio", args.enable_audio.map(Value::from));
    set("seed", args.seed.map(Value::from));
    set(
        "enable_safety_checker",
        args.enable_safety_checker.map(Value::from),
    );
    Ok(body)
}

/// Reads a request file; relative file paths among its references are resolved
/// against the file's folder.
fn read_request(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut body: Value = match serde_json::from_slice(&text) {
        Ok(v) => v,
        Err(_) => {
            // Let the validator describe malformed JSON exactly as the server would.
            let details = r2v_api::validate_json_bytes(&text, &ValidateOptions::default())
                .err()
                .unwrap_or_default();
            return Err(InvalidRequestFile(details).into());
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    for field in ["image_urls", "video_urls"] {
        if let Some(items) = body.get_mut(field).and_then(Value::as_array_mut) {
            for item in items {
                if let Some(s) = item.as_str()
                    && is_relative_path(s)
                {
                    *item = Value::from(base.join(s).display().to_string());
                }
            }
        }
    }
    Ok(body)
}

fn is_relative_path(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    !(s.is_empty() || s.contains("://") || lower.starts_with("data:") || Path::new(s).is_absolute())
}

/// A request file that is not JSON: reported as the server's `json_invalid` 422.
#[derive(Debug)]
pub struct InvalidRequestFile(pub Vec<ErrorDetail>);

impl std::fmt::Display for InvalidRequestFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request file is not valid JSON")
    }
}

impl std::error::Error for InvalidRequestFile {}

/// Reports a malformed request file like any other invalid request.
pub fn report_invalid_file(error: &InvalidRequestFile, as_json: bool) -> Exit {
    report(&RequestError::Invalid(error.0.clone()), as_json)
}
