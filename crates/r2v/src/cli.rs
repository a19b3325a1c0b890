//! The command-line interface: one clap `Args` struct per subcommand.

use clap::{Args, Parser, Subcommand, ValueEnum};
use r2v_wan::device::DeviceRequest;
use std::path::PathBuf;

/// r2v: reference-to-video generation, self-hosted.
#[derive(Debug, Parser)]
#[command(name = "r2v", version, about, long_about = None)]
pub struct Cli {
    /// Operator log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "R2V_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Operator log formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
pub enum Command {
    /// Generate one video from a request, without a server.
    Run(RunArgs),
    /// Check a request (fields and reference files) without generating anything.
    Validate(ValidateArgs),
    /// Serve the fal-compatible HTTP API with a durable queue and in-process workers.
    Serve(ServeArgs),
    /// Manage API keys.
    Keys(KeysArgs),
    /// Run a worker that takes requests from a server's worker API.
    Worker(WorkerArgs),
    /// Print the server's OpenAPI 3.1 document.
    Openapi,
    /// Work with the Wan model code directly.
    Wan(WanArgs),
    /// Work with the MMAudio model code directly.
    Audio(AudioArgs),
    /// Inspect model directories.
    Models(ModelsArgs),
}

/// `r2v models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// `r2v models` subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Print a model directory's kind, size, dtype, expected peak memory per device kind
    /// and dtype, and how the engine would run it on the chosen device.
    Inspect {
        /// A diffusers-layout Wan pipeline directory (VACE or Phantom), or an MMAudio
        /// directory (with mmaudio.json).
        dir: PathBuf,
        /// The device to plan for: auto, cpu, cuda[:N] or wgpu[:N].
        #[arg(long, default_value = "auto", env = "R2V_DEVICE")]
        device: DeviceRequest,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How the `wan` engine is set up (`run`, `serve` and `worker`).
#[derive(Debug, Clone, Args)]
pub struct WanEngineArgs {
    /// The checkpoint directory of the wan engine (see `r2v models inspect`).
    #[arg(long, env = "R2V_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Where the wan engine runs: auto (the best device this build has and this machine
    /// offers: a CUDA GPU, a wgpu GPU, else the CPU), cpu, cuda[:N] or wgpu[:N] [default: auto].
    #[arg(long, env = "R2V_DEVICE")]
    pub device: Option<DeviceRequest>,
    /// Memory the wan engine may plan for, in GiB [default: what the device has free when
    /// the engine starts: GPU memory on a GPU, RAM on the CPU].
    #[arg(long, env = "R2V_MEMORY_BUDGET_GB", value_parser = positive_gib)]
    pub memory_budget_gb: Option<f64>,
    /// Precision of the wan engine's DiT and text encoder (the VAE stays f32) [default:
    /// bf16 on CUDA, f32 on the CPU and wgpu].
    #[arg(long, value_enum, env = "R2V_WAN_DTYPE")]
    pub wan_dtype: Option<DtypeArg>,
    /// Where GPU kernels and autotune results are kept between runs [default: kernels/ in
    /// the data directory].
    #[arg(long, env = "R2V_KERNEL_CACHE")]
    pub kernel_cache: Option<PathBuf>,
    /// An MMAudio model directory (see README): `enable_audio` then makes the track from
    /// the finished frames and the prompt, on the engine's device, instead of the
    /// procedural bed.
    #[arg(long, env = "R2V_AUDIO_MODEL_DIR")]
    pub audio_model_dir: Option<PathBuf>,
}

/// `r2v audio`.
#[derive(Debug, Args)]
pub struct AudioArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AudioCommand,
}

/// `r2v audio` subcommands.
#[derive(Debug, Subcommand)]
pub enum AudioCommand {
    /// Run one module on tensors from a safetensors file (named as upstream's arguments).
    Forward(AudioForwardArgs),
    /// Generate from conditions (after the feature extractors) as upstream's `generate`:
    /// sampler, unnormalise, VAE decode, vocoder.
    Pipeline(AudioPipelineArgs),
}

/// Modules `r2v audio forward` runs.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AudioModuleArg {
    /// MMAudio.forward: latent, clip_f, sync_f, text_f, t → flow.
    Net,
    /// The mel VAE's decoder: z [b, n, embed_dim] → mel.
    VaeDecode,
    /// BigVGAN / BigVGAN-v2: mel → audio.
    Vocoder,
    /// open_clip's image tower: pixels [b, 3, h, w] in [0, 1] → image_features.
    ClipImage,
    /// open_clip's text tower as MMAudio patches it: tokens [b, 77] → text_features.
    ClipText,
    /// Synchformer's visual encoder: video [b, s, 16, 3, h, w] in [-1, 1] → features
    /// [b, s, 8, dim] (weights under `vfeat_extractor.`).
    Synchformer,
}

/// `r2v audio forward`.
#[derive(Debug, Args)]
pub struct AudioForwardArgs {
    /// The module.
    #[arg(long, value_enum)]
    pub module: AudioModuleArg,
    /// The constructor's keyword arguments (net: MMAudio's; vae-decode: data_dim, embed_dim,
    /// hidden_dim; vocoder: BigVGAN's config.json; clip-*: open_clip_config.json; synchformer:
    /// img_size, embed_dim, depth, num_heads), at the top
    /// level or under `config`.
    #[arg(long)]
    pub config: PathBuf,
    /// Upstream's state dict as safetensors.
    #[arg(long)]
    pub weights: PathBuf,
    /// The inputs (see --module).
    #[arg(long)]
    pub inputs: PathBuf,
    /// Where the outputs go: flow, mel, audio, image_features, text_features or features.
    #[arg(long)]
    pub output: PathBuf,
    /// Where to run.
    #[command(flatten)]
    pub device: WanDeviceArgs,
    /// Run the module this many times and print the median time.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
}

/// `r2v audio pipeline`.
#[derive(Debug, Args)]
pub struct AudioPipelineArgs {
    /// An MMAudio model directory.
    #[arg(long)]
    pub model_dir: PathBuf,
    /// clip_f, sync_f, text_f, optional negative_text_f, and the starting noise x0.
    #[arg(long)]
    pub inputs: PathBuf,
    /// Where latent (unnormalised), mel and audio go.
    #[arg(long)]
    pub output: PathBuf,
    /// Euler steps.
    #[arg(long, default_value_t = 25)]
    pub steps: usize,
    /// Guidance strength (below 1: none).
    #[arg(long, default_value_t = 4.5)]
    pub cfg: f64,
    /// Where to run.
    #[command(flatten)]
    pub device: WanDeviceArgs,
}

/// `r2v wan`.
#[derive(Debug, Args)]
pub struct WanArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: WanCommand,
}

/// `r2v wan` subcommands.
#[derive(Debug, Subcommand)]
pub enum WanCommand {
    /// Run one module on tensors from a safetensors file (as diffusers names them).
    Forward(WanForwardArgs),
    /// Run the reference-to-video pipeline on tensors from a file, as diffusers'
    /// WanVACEPipeline does (prompt embeddings, initial latents and u8 reference images in).
    Pipeline(WanPipelineArgs),
}

/// Sampling schedules of `r2v wan pipeline`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    /// UniPC (diffusers' flow schedule) with CFG: the standard preset.
    Unipc,
    /// Flow Euler over LightX2V's step list, no CFG: the flash preset.
    Flash,
}

/// Frame order of multiple VACE references.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReferenceOrderArg {
    /// Last reference first, as diffusers does.
    Diffusers,
    /// Given order, as the official Wan code does.
    Official,
}

/// `r2v wan pipeline`.
#[derive(Debug, Args)]
pub struct WanPipelineArgs {
    /// A diffusers pipeline directory, or NAME.weights.safetensors with `transformer.`/`vae.`
    /// prefixes beside NAME.config.json.
    #[arg(long)]
    pub model_dir: PathBuf,
    /// prompt_embeds, negative_prompt_embeds, initial_latents, ref_image_{i}_hwc_u8.
    #[arg(long)]
    pub inputs: PathBuf,
    /// Where final_latents, decoded_video and latents_after_step{k} go.
    #[arg(long)]
    pub output: PathBuf,
    /// Height in pixels.
    #[arg(long)]
    pub height: usize,
    /// Width in pixels.
    #[arg(long)]
    pub width: usize,
    /// Frames (1 + 4k).
    #[arg(long)]
    pub num_frames: usize,
    /// Sampling steps.
    #[arg(long)]
    pub steps: usize,
    /// The schedule.
    #[arg(long, value_enum)]
    pub schedule: ScheduleArg,
    /// Guidance scale [default: 5 for unipc, 1 (off) for flash].
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Flow shift [default: the model directory's for unipc; flash uses LightX2V's fixed σ
    /// list unless this is given].
    #[arg(long)]
    pub shift: Option<f64>,
    /// VACE conditioning scale [default: the model directory's r2v.json, else 1].
    #[arg(long)]
    pub conditioning_scale: Option<f32>,
    /// Frame order of multiple references [default: the model directory's r2v.json, else
    /// diffusers].
    #[arg(long, value_enum)]
    pub reference_order: Option<ReferenceOrderArg>,
    /// Precision of the DiT (the VAE stays f32).
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
    /// Where to run.
    #[command(flatten)]
    pub device: WanDeviceArgs,
}

/// Where `r2v wan forward` and `r2v wan pipeline` run.
#[derive(Debug, Clone, Args)]
pub struct WanDeviceArgs {
    /// auto, cpu, cuda[:N] or wgpu[:N].
    #[arg(long, default_value = "auto", env = "R2V_DEVICE")]
    pub device: DeviceRequest,
    /// Where GPU kernels and autotune results are kept between runs [default: kernels/ in
    /// the data directory].
    #[arg(long, env = "R2V_KERNEL_CACHE")]
    pub kernel_cache: Option<PathBuf>,
    /// Attention on a GPU: burn's flash kernel with f16 tiles and padded queries, or burn's
    /// own choice (its naive path for f32 and bf16) [default: flash for bf16 on a GPU].
    #[arg(long, value_enum)]
    pub attention: Option<AttentionArg>,
}

/// Attention kernels of `r2v wan forward`/`pipeline`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AttentionArg {
    /// burn's flash kernel: f16 tiles, queries padded to its stage.
    Flash,
    /// burn's `attention` as it is.
    Backend,
}

/// Modules `r2v wan forward` runs.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WanModuleArg {
    /// WanTransformer3DModel (T2V, I2V, per-token timesteps).
    Dit,
    /// WanVACETransformer3DModel.
    Vace,
    /// AutoencoderKLWan encode: video → moments, mu.
    VaeEncode,
    /// AutoencoderKLWan decode: z → decoded.
    VaeDecode,
    /// UMT5EncoderModel: input_ids, attention_mask → last_hidden_state.
    Umt5,
}

/// Precision of the weights and activations.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DtypeArg {
    /// 32-bit floats.
    F32,
    /// bfloat16 storage; norms, softmax and accumulation stay in f32.
    Bf16,
}

/// `r2v wan forward`.
#[derive(Debug, Args)]
pub struct WanForwardArgs {
    /// The module.
    #[arg(long, value_enum)]
    pub module: WanModuleArg,
    /// A diffusers config.json (parameters at the top level, plus `_class_name`).
    #[arg(long)]
    pub config: PathBuf,
    /// A .safetensors file, a diffusers index json, or a directory of shards.
    #[arg(long)]
    pub weights: PathBuf,
    /// Inputs named after the diffusers forward arguments. dit/vace: hidden_states,
    /// timestep, encoder_hidden_states, encoder_hidden_states_image, control_hidden_states,
    /// control_hidden_states_scale. vae-encode: video. vae-decode: z. umt5: input_ids,
    /// attention_mask.
    #[arg(long)]
    pub inputs: PathBuf,
    /// Where to write the outputs: `output` (dit/vace), `mu` and `moments` (vae-encode),
    /// `decoded` (vae-decode), `last_hidden_state` (umt5).
    #[arg(long)]
    pub output: PathBuf,
    /// Precision of the weights and activations.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
    /// A LoRA (LightX2V or PEFT format) to merge into the DiT at load time.
    #[arg(long)]
    pub lora: Option<PathBuf>,
    /// The LoRA's strength.
    #[arg(long, default_value_t = 1.0, requires = "lora")]
    pub lora_strength: f32,
    /// vae-decode in spatial tiles of this many pixels (blending a quarter of each), as
    /// diffusers' `enable_tiling` (256) does.
    #[arg(long)]
    pub vae_tile: Option<usize>,
    /// Where to run.
    #[command(flatten)]
    pub device: WanDeviceArgs,
    /// Run the forward pass this many times and print the timings.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
}

/// Which endpoint's preset a local run uses.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EndpointArg {
    /// `wan/v2.6/reference-to-video/flash`.
    Flash,
    /// `wan/v2.6/reference-to-video`.
    Standard,
}

/// Which engine renders.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EngineArg {
    /// The deterministic storyboard engine (not a neural model).
    Preview,
    /// Wan2.1-VACE or Phantom-Wan from `--model-dir`.
    Wan,
}

/// Options shared by `run` and `validate` for reaching reference files.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Allow reference URLs on loopback, private and link-local addresses.
    #[arg(long, env = "R2V_ALLOW_PRIVATE_URLS")]
    pub allow_private_urls: bool,
}

/// `r2v run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A request in the API's input JSON (SPEC §2). Flags override its fields. Relative
    /// file paths in it are resolved against the file's folder.
    #[arg(long, short = 'i')]
    pub input: Option<PathBuf>,
    /// Where to write the mp4.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Print the output object (or the 422 body on error) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// The prompt, with Character1…Character5 tags and optional `[0-3s]` shot markers.
    #[arg(long)]
    pub prompt: Option<String>,
    /// A reference image: a file path, an http(s) URL or a data: URI. Repeat for more.
    #[arg(long = "image", value_name = "FILE|URL")]
    pub images: Vec<String>,
    /// A reference video (mp4/mov): a file path, URL or data: URI. Repeat for more.
    #[arg(long = "video", value_name = "FILE|URL")]
    pub videos: Vec<String>,
    /// 16:9, 9:16, 1:1, 4:3 or 3:4.
    #[arg(long)]
    pub aspect_ratio: Option<String>,
    /// 720p or 1080p.
    #[arg(long)]
    pub resolution: Option<String>,
    /// 5 or 10 (seconds).
    #[arg(long)]
    pub duration: Option<String>,
    /// What the video should avoid.
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Rewrite the prompt (true/false).
    #[arg(long, value_name = "BOOL")]
    pub enable_prompt_expansion: Option<bool>,
    /// Split an unmarked prompt into shots (true/false; needs expansion).
    #[arg(long, value_name = "BOOL")]
    pub multi_shots: Option<bool>,
    /// Add an audio track (true/false).
    #[arg(long, value_name = "BOOL")]
    pub enable_audio: Option<bool>,
    /// The seed (0 ≤ seed < 2^63); random when absent.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Check the prompt against the policy list (true/false).
    #[arg(long, value_name = "BOOL")]
    pub enable_safety_checker: Option<bool>,
    /// A term the safety checker refuses. Repeat for more.
    #[arg(
        long = "blocked-term",
        value_name = "TERM",
        env = "R2V_BLOCKED_TERMS",
        value_delimiter = ','
    )]
    pub blocked_terms: Vec<String>,
    /// Which endpoint's preset to run.
    #[arg(long, value_enum, default_value_t = EndpointArg::Flash)]
    pub endpoint: EndpointArg,
    /// Which engine renders.
    #[arg(long, value_enum, default_value_t = EngineArg::Preview, env = "R2V_ENGINE")]
    pub engine: EngineArg,
    /// The wan engine's settings.
    #[command(flatten)]
    pub wan: WanEngineArgs,
    /// x264 preset: faster presets give bigger files of the same format.
    #[arg(long, env = "R2V_X264_PRESET", default_value = "veryfast", value_parser = X264_PRESETS)]
    pub x264_preset: String,
    /// How references are fetched.
    #[command(flatten)]
    pub fetch: FetchArgs,
}

/// `r2v validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The request JSON file.
    pub request: PathBuf,
    /// Print the 422 body (or `{"valid": true}`) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// How references are fetched.
    #[command(flatten)]
    pub fetch: FetchArgs,
}

/// The x264 presets an output may be encoded with.
pub const X264_PRESETS: [&str; 9] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

/// A number of seconds above 0 (and below 10⁹).
fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(s),
        _ => Err(format!("must be a positive number of seconds, not {text}")),
    }
}

/// A number of GiB above 0.
fn positive_gib(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(g) if g.is_finite() && g > 0.0 => Ok(g),
        _ => Err(format!("must be a positive number of GiB, not {text}")),
    }
}

/// An http(s) URL, without a trailing `/`.
fn http_url(text: &str) -> Result<String, String> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {
            Ok(text.trim_end_matches('/').to_owned())
        }
        _ => Err(format!("must be an http(s) URL, not {text}")),
    }
}

/// A Postgres connection URL.
fn postgres_url(text: &str) -> Result<String, String> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "postgres" | "postgresql") => Ok(text.to_owned()),
        _ => Err("must be a postgres:// URL".to_owned()),
    }
}

/// An `s3://bucket[/prefix]` URL.
fn s3_url(text: &str) -> Result<String, String> {
    match url::Url::parse(text) {
        Ok(url) if url.scheme() == "s3" && url.host_str().is_some_and(|h| !h.is_empty()) => {
            Ok(text.trim_end_matches('/').to_owned())
        }
        _ => Err("must be an s3://bucket[/prefix] URL".to_owned()),
    }
}

/// A worker token: at least 16 characters.
fn worker_token(text: &str) -> Result<String, String> {
    if text.chars().count() >= 16 {
        Ok(text.to_owned())
    } else {
        Err("must be at least 16 characters".to_owned())
    }
}

/// A price in dollars per second: at least 0, at most $1 000 000.
fn usd_per_second(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|usd| r2v_api::Prices::microusd_from_usd(*usd).is_some())
        .ok_or_else(|| format!("must be a price in dollars from 0 to 1000000, not {text}"))
}

/// `r2v serve`. Every flag also has an environment variable and a key in the TOML file
/// given with `--config` (same name, `_` for `-`); flags beat the environment, which
/// beats the file, which beats the defaults (see `settings`).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file with any of the settings below.
    #[arg(long, env = "R2V_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "R2V_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Where the database, files and keys live [default: the user's data dir, r2v].
    #[arg(long, env = "R2V_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A Postgres database for requests, logs, keys and usage, which several API nodes may
    /// share (`postgres://user:password@host:port/database`) [default: SQLite in the data
    /// directory].
    #[arg(long, env = "R2V_DATABASE_URL", value_parser = postgres_url)]
    pub database_url: Option<String>,
    /// An S3-compatible bucket for uploads and outputs, which several API nodes may share
    /// (`s3://bucket/prefix`; endpoint, region and credentials from `AWS_ENDPOINT`,
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`)
    /// [default: files/ in the data directory].
    #[arg(long, env = "R2V_STORAGE_URL", value_parser = s3_url)]
    pub storage_url: Option<String>,
    /// Serve without API keys (every caller is `anonymous`).
    #[arg(long, env = "R2V_NO_AUTH")]
    pub no_auth: bool,
    /// Let reference URLs and webhooks reach loopback, private and link-local addresses.
    #[arg(long, env = "R2V_ALLOW_PRIVATE_URLS")]
    pub allow_private_urls: bool,
    /// In-process workers [default: 1]; 0 serves the queue only.
    #[arg(long, env = "R2V_WORKERS")]
    pub workers: Option<usize>,
    /// Which engine renders [default: the config file's `engine`, else preview].
    #[arg(long, value_enum, env = "R2V_ENGINE")]
    pub engine: Option<EngineArg>,
    /// The wan engine's settings.
    #[command(flatten)]
    pub wan: WanEngineArgs,
    /// Base of absolute URLs in responses [default: the request's Host].
    #[arg(long, env = "R2V_PUBLIC_URL", value_parser = http_url)]
    pub public_url: Option<String>,
    /// Token that remote workers present (`r2v worker --token`), at least 16 characters;
    /// the worker API is off without one.
    #[arg(long, env = "R2V_WORKER_TOKEN", value_parser = worker_token)]
    pub worker_token: Option<String>,
    /// Largest request body in bytes, for submits and uploads [default: 512 MiB].
    #[arg(long, env = "R2V_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Most connections open at once; more wait to be accepted [default: 1024].
    #[arg(long, env = "R2V_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Longest wait for a request's headers, in seconds; also closes idle keep-alive
    /// connections [default: 30].
    #[arg(long, env = "R2V_HEADER_TIMEOUT_SECONDS", value_parser = positive_seconds)]
    pub header_timeout_seconds: Option<f64>,
    /// Longest pause inside a request body, in seconds; a stalled body gets 408 [default: 60].
    #[arg(long, env = "R2V_BODY_IDLE_TIMEOUT_SECONDS", value_parser = positive_seconds)]
    pub body_idle_timeout_seconds: Option<f64>,
    /// How long requests and files are kept, in seconds [default: 7 days].
    #[arg(long, env = "R2V_RETENTION_SECONDS", value_parser = clap::value_parser!(i64).range(1..))]
    pub retention_seconds: Option<i64>,
    /// Attempts before a request that keeps failing internally is failed [default: 3].
    #[arg(long, env = "R2V_MAX_ATTEMPTS", value_parser = clap::value_parser!(i64).range(1..))]
    pub max_attempts: Option<i64>,
    /// Lease length in seconds [default: 30].
    #[arg(long, env = "R2V_LEASE_SECONDS", value_parser = clap::value_parser!(i64).range(1..))]
    pub lease_seconds: Option<i64>,
    /// How often workers renew their lease, in seconds, at most half the lease [default: 2].
    #[arg(long, env = "R2V_HEARTBEAT_SECONDS", value_parser = positive_seconds)]
    pub heartbeat_seconds: Option<f64>,
    /// x264 preset for outputs [default: veryfast].
    #[arg(long, env = "R2V_X264_PRESET", value_parser = X264_PRESETS)]
    pub x264_preset: Option<String>,
    /// A prompt term the safety checker refuses. Repeat for more.
    #[arg(
        long = "blocked-term",
        value_name = "TERM",
        env = "R2V_BLOCKED_TERMS",
        value_delimiter = ','
    )]
    pub blocked_terms: Vec<String>,
    /// The standard endpoint's price per output second at 720p, in dollars; flash is
    /// charged half of it with audio and a quarter without [default: 0.10].
    #[arg(long = "price-720p-usd", env = "R2V_PRICE_720P_USD", value_parser = usd_per_second)]
    pub price_720p_usd: Option<f64>,
    /// The same at 1080p [default: 0.15].
    #[arg(long = "price-1080p-usd", env = "R2V_PRICE_1080P_USD", value_parser = usd_per_second)]
    pub price_1080p_usd: Option<f64>,
}

/// `r2v keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The server's data directory.
    #[arg(long, env = "R2V_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The server's Postgres database, when it has one (`--database-url` of `serve`).
    #[arg(long, env = "R2V_DATABASE_URL", global = true, value_parser = postgres_url)]
    pub database_url: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// `r2v keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once.
    Create {
        /// A label for the key.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Print `{"id": …, "key": "<id>:<secret>"}`.
        #[arg(long)]
        json: bool,
    },
    /// List keys (ids, labels, state; never secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key; requests made with it get 401 from now on.
    Revoke {
        /// The key id.
        id: String,
    },
}

/// `r2v worker`. Every flag also has an environment variable and a key in the TOML file
/// given with `--config`, as for `serve`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// A TOML file with any of the settings below.
    #[arg(long, env = "R2V_CONFIG")]
    pub config: Option<PathBuf>,
    /// The server's base URL, e.g. http://10.0.0.5:8080.
    #[arg(long, env = "R2V_API", value_parser = http_url)]
    pub api: String,
    /// The server's worker token.
    #[arg(long, env = "R2V_WORKER_TOKEN", value_parser = worker_token)]
    pub token: String,
    /// This worker's id [default: remote:<hostname>:<random>].
    #[arg(long, env = "R2V_WORKER_ID")]
    pub id: Option<String>,
    /// Which engine renders.
    #[arg(long, value_enum, default_value_t = EngineArg::Preview, env = "R2V_ENGINE")]
    pub engine: EngineArg,
    /// The wan engine's settings.
    #[command(flatten)]
    pub wan: WanEngineArgs,
    /// Where outputs are written before upload [default: the system temp dir].
    #[arg(long, env = "R2V_SCRATCH_DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// How often the lease is renewed, in seconds.
    #[arg(long, default_value_t = 2.0, env = "R2V_HEARTBEAT_SECONDS", value_parser = positive_seconds)]
    pub heartbeat_seconds: f64,
    /// x264 preset for outputs.
    #[arg(long, default_value = "veryfast", env = "R2V_X264_PRESET", value_parser = X264_PRESETS)]
    pub x264_preset: String,
    /// How references are fetched.
    #[command(flatten)]
    pub fetch: FetchArgs,
}
