//! Peak-memory estimates for a checkpoint and a generation size, and the report of
//! `r2v models inspect`.
//!
//! The model: weights (DiT and text encoder in the run's precision, the VAE in f32), the
//! larger of the DiT's activations and the VAE decoder's, and the shot's decoded clip (the f32
//! tiles, then RGB bytes held until they are re-timed). DiT activations are taken as
//! `tokens × (8·dim + 2·ffn) × 4 bytes` (hidden state, q/k/v, attention output, both halves
//! of the feed-forward, with the flash-style attention keeping no `tokens²` matrix). The VAE
//! decoder was measured (BENCHMARKS.md): 26.4 KB per generated pixel at `base_dim` 96 on the
//! CPU, scaled by the decoder width, independent of the frame count thanks to the causal cache;
//! the engine decodes in 256-px tiles, so that term stops growing at 256×256.

use r2v_wan::model_dir::{ConditioningKind, ModelDir};
use r2v_wan::vae::Tiling;
use r2v_wan::{Precision, WanError};
use serde::Serialize;

/// Measured VAE decode memory per output pixel at `base_dim` 96 (f32, CPU).
const VAE_BYTES_PER_PIXEL: f64 = 26.4e3;

/// Bytes per parameter or activation in `precision`.
fn bytes(precision: Precision) -> u64 {
    match precision {
        Precision::F32 => 4,
        Precision::Bf16 => 2,
    }
}

/// Parameter counts of a model directory.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Parameters {
    /// The DiT (VACE blocks included).
    pub transformer: u64,
    /// The VAE.
    pub vae: u64,
    /// umT5, when present.
    pub text_encoder: u64,
}

/// Counts the parameters of each part.
pub fn parameters(dir: &ModelDir) -> Result<(Parameters, String), WanError> {
    let (transformer, _, dtype) = dir.summary(&dir.transformer)?;
    let (vae, _, _) = dir.summary(&dir.vae)?;
    let text_encoder = match &dir.text {
        Some((part, _)) => dir.summary(part)?.0,
        None => 0,
    };
    Ok((
        Parameters {
            transformer,
            vae,
            text_encoder,
        },
        dtype,
    ))
}

/// Peak bytes to generate `frames` frames of `width × height` with `references`.
pub fn peak_bytes(
    dir: &ModelDir,
    parameters: &Parameters,
    precision: Precision,
    (width, height, frames, references): (usize, usize, usize, usize),
) -> u64 {
    let t = &dir.transformer_config;
    let v = &dir.vae_config;
    let weights =
        (parameters.transformer + parameters.text_encoder) * bytes(precision) + parameters.vae * 4;
    let s = v.scale_factor_spatial.max(1) * t.patch_size[1].max(1);
    let latent_frames = (frames.max(1) - 1) / v.scale_factor_temporal.max(1) + 1 + references;
    let tokens = (latent_frames * (height / s) * (width / s)) as u64;
    let dit = tokens * (8 * t.dim() + 2 * t.ffn_dim) as u64 * 4;
    let decoder_width = v.decoder_base_dim.unwrap_or(v.base_dim) as f64 / 96.0;
    let tile = Tiling::default();
    let tiled = width > tile.tile || height > tile.tile;
    let tile_area = (width.min(tile.tile) * height.min(tile.tile)) as f64;
    let vae = (VAE_BYTES_PER_PIXEL * decoder_width * tile_area) as u64;
    // The decoded clip: f32 tiles (overlapping by (tile/stride)² when tiled), then RGB bytes.
    let overlap = if tiled {
        (tile.tile as f64 / tile.stride as f64).powi(2)
    } else {
        1.0
    };
    let clip = (frames * width * height) as f64 * (3.0 * 4.0 * overlap + 3.0);
    weights + dit.max(vae) + clip as u64
}

/// What `r2v models inspect` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The directory.
    pub dir: String,
    /// `Wan2.1-VACE 1.3B` and the like.
    pub kind: String,
    /// Parameters per part.
    pub parameters: Parameters,
    /// Storage dtype of the DiT's weights.
    pub dtype: String,
    /// Whether the directory can serve prompts (has umT5 and its tokenizer).
    pub text_encoder: bool,
    /// The generation size the engine uses (`max_area`, 16:9) and the model's frame rate.
    pub generation: (usize, usize, u32),
    /// Expected peak GiB for 5 s (81 frames at 16 fps) generated at 720p, at 1080p, and at
    /// the configured generation size: f32, bf16.
    pub peak_gib: Vec<(String, f64, f64)>,
}

impl Report {
    /// Human-readable lines.
    pub fn to_text(&self) -> String {
        let p = &self.parameters;
        let mut out = format!(
            "{}\n  kind: {}\n  parameters: {} (transformer {}, VAE {}, text encoder {})\n  dtype on disk: {}\n  text encoder: {}\n  generates {}×{} at {} fps, then scales to the output size\n  expected peak memory for 5 s (81 frames), f32 / bf16 DiT:\n",
            self.dir,
            self.kind,
            count(p.transformer + p.vae + p.text_encoder),
            count(p.transformer),
            count(p.vae),
            count(p.text_encoder),
            self.dtype,
            if self.text_encoder {
                "yes"
            } else {
                "no (only `r2v wan pipeline` with embeddings)"
            },
            self.generation.0,
            self.generation.1,
            self.generation.2,
        );
        for (what, f32_gib, bf16_gib) in &self.peak_gib {
            out.push_str(&format!(
                "    {what}: {f32_gib:.1} GiB / {bf16_gib:.1} GiB\n"
            ));
        }
        out
    }
}

/// `374.5 K`, `1.42 B`.
fn count(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.2} B", n / 1e9),
        n if n >= 1e6 => format!("{:.1} M", n / 1e6),
        n => format!("{:.1} K", n / 1e3),
    }
}

/// The generation size for an output aspect: about `max_area` pixels, sides multiples of `multiple`.
pub fn generation_size(max_area: usize, aspect: f64, multiple: usize) -> (usize, usize) {
    let m = multiple.max(1) as f64;
    let width = ((max_area as f64 * aspect).sqrt() / m).round().max(1.0) * m;
    let height = ((max_area as f64 / aspect).sqrt() / m).round().max(1.0) * m;
    (width as usize, height as usize)
}

/// `Wan2.1-VACE 1.3B` and the like, from the configs alone.
pub fn kind(dir: &ModelDir) -> String {
    let method = match dir.kind {
        ConditioningKind::Vace => "VACE",
        ConditioningKind::Phantom => "Phantom",
    };
    format!("{}-{method} {}", dir.version(), dir.size_name())
}

/// Inspects a model directory.
pub fn inspect(dir: &ModelDir) -> Result<Report, WanError> {
    let (parameters, dtype) = parameters(dir)?;
    let multiple = dir.vae_config.scale_factor_spatial * dir.transformer_config.patch_size[1];
    let (gw, gh) = generation_size(dir.max_area(), 16.0 / 9.0, multiple);
    let gib = |size: (usize, usize), precision| {
        peak_bytes(dir, &parameters, precision, (size.0, size.1, 81, 1)) as f64
            / f64::from(1u32 << 30)
    };
    let peak_gib = [
        ("720p (1280×720)".to_owned(), (1280, 720)),
        ("1080p (1920×1088)".to_owned(), (1920, 1088)),
        (format!("configured ({gw}×{gh})"), (gw, gh)),
    ]
    .into_iter()
    .map(|(what, size)| (what, gib(size, Precision::F32), gib(size, Precision::Bf16)))
    .collect();
    Ok(Report {
        dir: dir.root.display().to_string(),
        kind: kind(dir),
        parameters,
        dtype,
        text_encoder: dir.text.is_some(),
        generation: (gw, gh, dir.fps()),
        peak_gib,
    })
}
