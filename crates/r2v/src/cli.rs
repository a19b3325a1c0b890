//! The command-line interface: one clap `Args` struct per subcommand.

use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// x264 preset: faster presets give bigger files of the same format.
    #[arg(long, env = "R2V_X264_PRESET", default_value = "veryfast", value_parser = [
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"])]
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
