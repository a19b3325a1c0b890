//! The shapes of an MMAudio model: the network's constructor arguments (upstream's
//! `MMAudio(...)` keywords and its five published variants), the VAE's, the vocoder's
//! (BigVGAN's `h`), and the sequence lengths a duration gives (`SequenceConfig`).

use crate::ModelError;
use serde::{Deserialize, Serialize};

/// Upstream's `MMAudio.__init__` keyword arguments (the tensors aside).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Channels of an audio latent (the VAE's `embed_dim`).
    pub latent_dim: usize,
    /// Width of a CLIP image feature.
    pub clip_dim: usize,
    /// Width of a Synchformer feature.
    pub sync_dim: usize,
    /// Width of a CLIP text token feature.
    pub text_dim: usize,
    /// The transformer's width.
    pub hidden_dim: usize,
    /// Joint plus fused blocks.
    pub depth: usize,
    /// The trailing audio-only blocks.
    pub fused_depth: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// The MLPs' width over `hidden_dim` (before the 2/3 and rounding rule).
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// Latent tokens at construction (8 s); a run sets its own.
    pub latent_seq_len: usize,
    /// CLIP frames at construction.
    pub clip_seq_len: usize,
    /// Synchformer tokens at construction.
    pub sync_seq_len: usize,
    /// Text tokens (77 for CLIP).
    #[serde(default = "default_text_seq_len")]
    pub text_seq_len: usize,
    /// The v2 input projections (SiLU) and timestep embedding (`large_44k_v2`).
    #[serde(default)]
    pub v2: bool,
}

fn default_mlp_ratio() -> f64 {
    4.0
}

fn default_text_seq_len() -> usize {
    77
}

impl NetConfig {
    /// A published variant by upstream's name.
    pub fn variant(name: &str) -> Option<Self> {
        let (heads, latent_dim, latent_seq_len, depth, fused_depth, v2) = match name {
            "small_16k" => (7, 20, 250, 12, 8, false),
            "small_44k" => (7, 40, 345, 12, 8, false),
            "medium_44k" => (14, 40, 345, 12, 8, false),
            "large_44k" => (14, 40, 345, 21, 14, false),
            "large_44k_v2" => (14, 40, 345, 21, 14, true),
            _ => return None,
        };
        Some(Self {
            latent_dim,
            clip_dim: 1024,
            sync_dim: 768,
            text_dim: 1024,
            hidden_dim: 64 * heads,
            depth,
            fused_depth,
            num_heads: heads,
            mlp_ratio: 4.0,
            latent_seq_len,
            clip_seq_len: 64,
            sync_seq_len: 192,
            text_seq_len: 77,
            v2,
        })
    }

    /// Every published variant's name.
    pub const VARIANTS: [&'static str; 5] = [
        "small_16k",
        "small_44k",
        "medium_44k",
        "large_44k",
        "large_44k_v2",
    ];

    /// Checks what the network's arithmetic needs.
    pub fn validate(&self) -> Result<(), ModelError> {
        let head = self.hidden_dim / self.num_heads.max(1);
        if self.num_heads == 0
            || head * self.num_heads != self.hidden_dim
            || !head.is_multiple_of(2)
        {
            return Err(ModelError::Config(format!(
                "hidden_dim {} must split into {} heads of an even width",
                self.hidden_dim, self.num_heads
            )));
        }
        if self.fused_depth >= self.depth {
            return Err(ModelError::Config(format!(
                "fused_depth {} must be below depth {}",
                self.fused_depth, self.depth
            )));
        }
        Ok(())
    }

    /// The width of a block's MLP: `int(2/3 · ratio · dim)` rounded up to a multiple of 256.
    pub fn mlp_hidden(dim: usize, ratio: f64) -> usize {
        swiglu_hidden((dim as f64 * ratio) as usize)
    }
}

/// `MLP`/`ConvMLP`'s hidden width from their `hidden_dim` argument.
pub fn swiglu_hidden(hidden: usize) -> usize {
    let h = (2.0 * hidden as f64 / 3.0) as usize;
    256 * h.div_ceil(256)
}

/// The VAE's constructor arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Mel bands (80 at 16 kHz, 128 at 44.1 kHz).
    pub data_dim: usize,
    /// Latent channels.
    pub embed_dim: usize,
    /// The first level's width.
    pub hidden_dim: usize,
}

impl VaeConfig {
    /// Upstream's VAE for a mode.
    pub fn of(mode: Mode) -> Self {
        match mode {
            Mode::K16 => Self {
                data_dim: 80,
                embed_dim: 20,
                hidden_dim: 384,
            },
            Mode::K44 => Self {
                data_dim: 128,
                embed_dim: 40,
                hidden_dim: 512,
            },
        }
    }
}

/// The two audio formats MMAudio's variants produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// 16 kHz, 80 mel bands, a 256-sample hop, BigVGAN.
    #[serde(rename = "16k")]
    K16,
    /// 44.1 kHz, 128 mel bands, a 512-sample hop, BigVGAN-v2.
    #[serde(rename = "44k")]
    K44,
}

impl Mode {
    /// Samples per second of the vocoder's output.
    pub fn sample_rate(self) -> u32 {
        match self {
            Self::K16 => 16_000,
            Self::K44 => 44_100,
        }
    }

    /// Mel bands.
    pub fn mel_bands(self) -> usize {
        VaeConfig::of(self).data_dim
    }

    /// Samples per mel frame.
    pub fn hop(self) -> usize {
        match self {
            Self::K16 => 256,
            Self::K44 => 512,
        }
    }

    /// The mode a variant name implies.
    pub fn of_variant(name: &str) -> Option<Self> {
        if name.ends_with("16k") {
            Some(Self::K16)
        } else if name.contains("44k") {
            Some(Self::K44)
        } else {
            None
        }
    }
}

/// Sequence lengths for a duration (upstream's `SequenceConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    /// Audio latent tokens.
    pub latent: usize,
    /// CLIP frames (8 per second).
    pub clip: usize,
    /// Synchformer tokens (8 per 16-frame segment of 25 fps video, segments every 8 frames).
    pub sync: usize,
    /// Waveform samples the decoded latents give.
    pub samples: usize,
}

/// CLIP frames per second.
pub const CLIP_FPS: f64 = 8.0;
/// Synchformer frames per second.
pub const SYNC_FPS: f64 = 25.0;

impl Sequence {
    /// The lengths for `seconds` of audio in `mode` (upstream computes them in floats).
    pub fn for_duration(mode: Mode, seconds: f64) -> Self {
        let hop = mode.hop() as f64;
        let latent = (seconds * f64::from(mode.sample_rate()) / hop / 2.0).ceil() as usize;
        let clip = (seconds * CLIP_FPS) as usize;
        let frames = seconds * SYNC_FPS;
        let segments = ((frames - 16.0) / 8.0).floor() + 1.0;
        let sync = (segments.max(0.0) * 16.0 / 2.0) as usize;
        Self {
            latent,
            clip,
            sync,
            samples: latent * 2 * mode.hop(),
        }
    }
}

/// BigVGAN's hyper-parameters (`h`), as its `config.json`/yml hold them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VocoderConfig {
    /// Mel bands in.
    pub num_mels: usize,
    /// Output samples per second (absent from upstream's 16 kHz yml: a model directory then
    /// takes its mode's).
    #[serde(default)]
    pub sampling_rate: Option<u32>,
    /// `"1"` (AMPBlock1: dilated and plain convolutions) or `"2"` (a number is taken too).
    #[serde(deserialize_with = "string_or_number")]
    pub resblock: String,
    /// Each transposed convolution's stride.
    pub upsample_rates: Vec<usize>,
    /// Each transposed convolution's kernel.
    pub upsample_kernel_sizes: Vec<usize>,
    /// Channels after `conv_pre`.
    pub upsample_initial_channel: usize,
    /// The residual blocks' kernels.
    pub resblock_kernel_sizes: Vec<usize>,
    /// The residual blocks' dilations.
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    /// `"snake"` or `"snakebeta"`.
    pub activation: String,
    /// Whether alpha (and beta) are stored as logarithms.
    #[serde(default)]
    pub snake_logscale: bool,
    /// BigVGAN-v2: tanh at the end (else a clamp to ±1).
    #[serde(default = "yes")]
    pub use_tanh_at_final: bool,
    /// BigVGAN-v2: whether `conv_post` has a bias.
    #[serde(default = "yes")]
    pub use_bias_at_final: bool,
}

fn yes() -> bool {
    true
}

/// A string, or a number as its decimal text (configs write `resblock` either way).
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a number, got {other}"
        ))),
    }
}

impl VocoderConfig {
    /// Samples per mel frame.
    pub fn hop(&self) -> usize {
        self.upsample_rates.iter().product()
    }

    /// Checks the lists agree and the blocks are known.
    pub fn validate(&self) -> Result<(), ModelError> {
        let problem = if self.upsample_rates.len() != self.upsample_kernel_sizes.len() {
            Some("upsample_rates and upsample_kernel_sizes differ in length".to_owned())
        } else if self.resblock_kernel_sizes.len() != self.resblock_dilation_sizes.len() {
            Some("resblock_kernel_sizes and resblock_dilation_sizes differ in length".to_owned())
        } else if !matches!(self.resblock.as_str(), "1" | "2") {
            Some(format!(
                "resblock {:?} is not \"1\" or \"2\"",
                self.resblock
            ))
        } else if !matches!(self.activation.as_str(), "snake" | "snakebeta") {
            Some(format!(
                "activation {:?} is not snake or snakebeta",
                self.activation
            ))
        } else if self.upsample_initial_channel >> self.upsample_rates.len() == 0 {
            Some("upsample_initial_channel is too small for the upsampling layers".to_owned())
        } else {
            None
        };
        problem.map_or(Ok(()), |p| Err(ModelError::Config(format!("vocoder: {p}"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_lengths_match_upstreams_8_second_configs() {
        let s = Sequence::for_duration(Mode::K16, 8.0);
        assert_eq!(
            (s.latent, s.clip, s.sync, s.samples),
            (250, 64, 192, 128_000)
        );
        let s = Sequence::for_duration(Mode::K44, 8.0);
        assert_eq!(
            (s.latent, s.clip, s.sync, s.samples),
            (345, 64, 192, 353_280)
        );
        let s = Sequence::for_duration(Mode::K16, 5.0);
        assert_eq!((s.latent, s.clip, s.sync), (157, 40, 112));
    }

    #[test]
    fn upstreams_16k_vocoder_yml_reads_without_a_sample_rate() {
        // mmaudio/ext/bigvgan/bigvgan_vocoder.yml as JSON, `resblock` written as a number.
        let config: VocoderConfig = serde_json::from_str(
            r#"{"resblock": 1, "num_mels": 80, "upsample_rates": [4, 4, 2, 2, 2, 2],
                "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4], "upsample_initial_channel": 1536,
                "resblock_kernel_sizes": [3, 7, 11],
                "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                "activation": "snakebeta", "snake_logscale": true, "seed": 1234}"#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(
            (config.resblock.as_str(), config.sampling_rate),
            ("1", None)
        );
        assert_eq!(config.hop(), Mode::K16.hop());
        assert!(config.use_tanh_at_final && config.use_bias_at_final);
    }

    #[test]
    fn variants_are_consistent() {
        for name in NetConfig::VARIANTS {
            let config = NetConfig::variant(name).unwrap();
            config.validate().unwrap();
            let mode = Mode::of_variant(name).unwrap();
            assert_eq!(config.latent_dim, VaeConfig::of(mode).embed_dim, "{name}");
        }
        assert_eq!(swiglu_hidden(448 * 4), 1280);
    }
}
