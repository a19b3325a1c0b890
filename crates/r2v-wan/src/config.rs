//! [`TransformerConfig`]: a diffusers `config.json` of `WanTransformer3DModel` or
//! `WanVACETransformer3DModel` (parameters at the top level with `_class_name`, or under
//! `config` as in the project's fixtures), with named presets.

use crate::WanError;
use serde::Deserialize;
use std::path::Path;

/// The DiT's hyper-parameters, under diffusers' names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TransformerConfig {
    /// Patch size over (frames, height, width); Wan uses (1, 2, 2).
    pub patch_size: [usize; 3],
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Width of one head.
    pub attention_head_dim: usize,
    /// Latent channels in (16; 36 for I2V; 48 for TI2V-5B).
    pub in_channels: usize,
    /// Latent channels out.
    pub out_channels: usize,
    /// Width of the text encoder's output (4096 for umT5-XXL).
    pub text_dim: usize,
    /// Width of the sinusoidal timestep embedding.
    pub freq_dim: usize,
    /// Hidden width of the feed-forward layers.
    pub ffn_dim: usize,
    /// Transformer blocks.
    pub num_layers: usize,
    /// Whether cross-attention has its affine LayerNorm (always true for Wan).
    pub cross_attn_norm: bool,
    /// Epsilon of every norm.
    pub eps: f64,
    /// Width of CLIP image tokens (I2V), if any.
    pub image_dim: Option<usize>,
    /// Width of the added image key/value projections (I2V), if any.
    pub added_kv_proj_dim: Option<usize>,
    /// Positions covered by the RoPE tables.
    pub rope_max_seq_len: usize,
    /// Blocks after which a VACE hint is added (VACE models only).
    pub vace_layers: Option<Vec<usize>>,
    /// Channels of the VACE control input (VACE models only).
    pub vace_in_channels: Option<usize>,
}

impl Default for TransformerConfig {
    fn default() -> Self {
        Self::wan21_t2v_1_3b()
    }
}

impl TransformerConfig {
    /// Wan2.1 T2V 1.3B.
    pub fn wan21_t2v_1_3b() -> Self {
        Self {
            patch_size: [1, 2, 2],
            num_attention_heads: 12,
            attention_head_dim: 128,
            in_channels: 16,
            out_channels: 16,
            text_dim: 4096,
            freq_dim: 256,
            ffn_dim: 8960,
            num_layers: 30,
            cross_attn_norm: true,
            eps: 1e-6,
            image_dim: None,
            added_kv_proj_dim: None,
            rope_max_seq_len: 1024,
            vace_layers: None,
            vace_in_channels: None,
        }
    }

    /// Wan2.1 T2V 14B.
    pub fn wan21_t2v_14b() -> Self {
        Self {
            num_attention_heads: 40,
            ffn_dim: 13824,
            num_layers: 40,
            ..Self::wan21_t2v_1_3b()
        }
    }

    /// Reads a diffusers `config.json` (or a fixture config with a `config` object).
    pub fn from_file(path: &Path) -> Result<Self, WanError> {
        read_params(path)
    }

    /// The model's width (`heads × head_dim`).
    pub fn dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }
}

/// Reads a config file's parameters: a diffusers `config.json` (parameters at the top
/// level) or a fixture config (parameters under `config`).
pub fn read_params<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, WanError> {
    let text = std::fs::read_to_string(path).map_err(|e| WanError::io(path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| WanError::Config(format!("{}: {e}", path.display())))?;
    let params = value.get("config").cloned().unwrap_or(value);
    serde_json::from_value(params).map_err(|e| WanError::Config(format!("{}: {e}", path.display())))
}
