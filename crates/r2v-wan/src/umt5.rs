//! The umT5 text encoder (HF `UMT5EncoderModel`, Wan's `umt5_xxl` encoder; MODEL.md §1.5).
//!
//! What sets it apart from T5: every layer has its own relative-position bias table; the
//! attention has no 1/√d scaling; the feed-forward is gated GELU (tanh). Norms are
//! RMS without mean subtraction, eps 1e-6. The token table of a real checkpoint is
//! 256 384 × 4096 (4 GB in f32), so it stays memory-mapped and only the rows of the
//! prompt's tokens are read.

use crate::attention::{Kernel, Scale, attention, merge_heads, split_heads};
use crate::layers::{RmsNorm, gelu_tanh};
use crate::weights::Weights;
use crate::{Precision, WanError};
use burn::prelude::*;
use serde::Deserialize;
use std::path::Path;

/// The encoder's hyper-parameters, under transformers' `UMT5Config` names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Umt5Config {
    /// Token table rows.
    pub vocab_size: usize,
    /// Width.
    pub d_model: usize,
    /// Width of one head.
    pub d_kv: usize,
    /// Hidden width of the feed-forward.
    pub d_ff: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Relative-position buckets.
    pub relative_attention_num_buckets: usize,
    /// Distance beyond which positions share the last bucket.
    pub relative_attention_max_distance: usize,
    /// Norm epsilon.
    pub layer_norm_epsilon: f64,
    /// `gated-gelu` for umT5.
    pub feed_forward_proj: String,
}

impl Default for Umt5Config {
    fn default() -> Self {
        Self::xxl()
    }
}

impl Umt5Config {
    /// `google/umt5-xxl`'s encoder, as Wan uses it.
    pub fn xxl() -> Self {
        Self {
            vocab_size: 256_384,
            d_model: 4096,
            d_kv: 64,
            d_ff: 10_240,
            num_layers: 24,
            num_heads: 64,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            feed_forward_proj: "gated-gelu".to_owned(),
        }
    }

    /// Reads a transformers `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, WanError> {
        let config: Self = crate::config::read_params(path)?;
        if config.feed_forward_proj != "gated-gelu" {
            return Err(WanError::Config(format!(
                "{}: feed_forward_proj {:?} is not umT5's gated-gelu",
                path.display(),
                config.feed_forward_proj
            )));
        }
        Ok(config)
    }
}

/// T5's bidirectional relative-position bucket of `key − query`.
pub fn relative_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = (num_buckets / 2) as i64;
    let mut bucket = if relative > 0 { half } else { 0 };
    let distance = relative.abs();
    let max_exact = half / 2;
    bucket += if distance < max_exact {
        distance
    } else {
        let scaled = ((distance as f32 / max_exact as f32).ln()
            / (max_distance as f32 / max_exact as f32).ln()
            * (half - max_exact) as f32) as i64;
        (max_exact + scaled).min(half - 1)
    };
    bucket as usize
}

/// A bias-free projection `x W`, `W` kept as `[in, out]`.
struct Projection<B: Backend> {
    weight: Tensor<B, 3>,
}

impl<B: Backend> Projection<B> {
    fn load(w: &Weights, name: &str, d_in: usize, d_out: usize, d: &B::Device) -> Self {
        Self {
            weight: w
                .tensor::<B, 2>(&format!("{name}.weight"), [d_out, d_in], d)
                .transpose()
                .unsqueeze::<3>(),
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        x.matmul(self.weight.clone())
    }
}

struct Layer<B: Backend> {
    norm1: RmsNorm<B>,
    q: Projection<B>,
    k: Projection<B>,
    v: Projection<B>,
    o: Projection<B>,
    /// `[buckets, heads]`, host side: it is indexed by bucket when the bias is built.
    relative_bias: Vec<f32>,
    norm2: RmsNorm<B>,
    gate: Projection<B>,
    up: Projection<B>,
    down: Projection<B>,
}

/// `UMT5EncoderModel`.
pub struct Umt5Encoder<B: Backend> {
    config: Umt5Config,
    /// Kept for the token table, which is read row by row.
    weights: Weights,
    table: String,
    layers: Vec<Layer<B>>,
    final_norm: RmsNorm<B>,
    device: B::Device,
    attention: Kernel,
}

impl<B: Backend> Umt5Encoder<B> {
    /// Runs attention with `kernel` (see [`crate::attention`]).
    pub fn with_attention(mut self, kernel: Kernel) -> Self {
        self.attention = kernel;
        self
    }

    /// Builds the encoder from transformers-named weights (`shared.weight` or
    /// `encoder.embed_tokens.weight`, `encoder.block.N.layer.…`).
    pub fn load(
        config: Umt5Config,
        weights: Weights,
        device: &B::Device,
    ) -> Result<Self, WanError> {
        let w = &weights;
        let (dim, inner) = (config.d_model, config.num_heads * config.d_kv);
        let eps = config.layer_norm_epsilon;
        let table = ["shared.weight", "encoder.embed_tokens.weight"]
            .into_iter()
            .find(|name| w.contains(name))
            .unwrap_or("shared.weight")
            .to_owned();
        // The tied copy, when a checkpoint has both, is the same table.
        for name in ["shared.weight", "encoder.embed_tokens.weight"] {
            if w.contains(name) {
                w.expect_shape(name, &[config.vocab_size, dim]);
            }
        }
        if !w.contains(&table) {
            w.expect_shape(&table, &[config.vocab_size, dim]);
        }
        let layers = (0..config.num_layers)
            .map(|i| {
                let at = format!("encoder.block.{i}.layer.0");
                let ff = format!("encoder.block.{i}.layer.1");
                let buckets = config.relative_attention_num_buckets;
                let bias = w.tensor::<B, 2>(
                    &format!("{at}.SelfAttention.relative_attention_bias.weight"),
                    [buckets, config.num_heads],
                    device,
                );
                Layer {
                    norm1: RmsNorm::load(w, &format!("{at}.layer_norm"), dim, eps, device),
                    q: Projection::load(w, &format!("{at}.SelfAttention.q"), dim, inner, device),
                    k: Projection::load(w, &format!("{at}.SelfAttention.k"), dim, inner, device),
                    v: Projection::load(w, &format!("{at}.SelfAttention.v"), dim, inner, device),
                    o: Projection::load(w, &format!("{at}.SelfAttention.o"), inner, dim, device),
                    relative_bias: bias
                        .into_data()
                        .convert::<f32>()
                        .to_vec::<f32>()
                        .unwrap_or_default(),
                    norm2: RmsNorm::load(w, &format!("{ff}.layer_norm"), dim, eps, device),
                    gate: Projection::load(
                        w,
                        &format!("{ff}.DenseReluDense.wi_0"),
                        dim,
                        config.d_ff,
                        device,
                    ),
                    up: Projection::load(
                        w,
                        &format!("{ff}.DenseReluDense.wi_1"),
                        dim,
                        config.d_ff,
                        device,
                    ),
                    down: Projection::load(
                        w,
                        &format!("{ff}.DenseReluDense.wo"),
                        config.d_ff,
                        dim,
                        device,
                    ),
                }
            })
            .collect();
        let final_norm = RmsNorm::load(w, "encoder.final_layer_norm", dim, eps, device);
        weights.check()?;
        Ok(Self {
            config,
            weights,
            table,
            layers,
            final_norm,
            device: device.clone(),
            attention: Kernel::default(),
        })
    }

    /// `last_hidden_state` `[1, L, d_model]` (f32) of token ids with an attention mask (1 = real
    /// token). Masked positions are still computed, as transformers does; callers cut
    /// the output to the real length.
    pub fn forward(&self, ids: &[u32], mask: &[bool]) -> Result<Tensor<B, 3>, WanError> {
        let c = &self.config;
        let len = ids.len();
        if mask.len() != len {
            return Err(WanError::Shape(format!(
                "{len} token ids but {} mask values",
                mask.len()
            )));
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(WanError::Shape(format!(
                "token id {bad} is outside the vocabulary of {}",
                c.vocab_size
            )));
        }
        let rows: Vec<usize> = ids.iter().map(|&id| id as usize).collect();
        let embedded = self.weights.rows(&self.table, &rows)?;
        let precision = self.weights.precision();
        let mut x = precision.apply(Tensor::<B, 3>::from_data(
            TensorData::new(embedded, [1, len, c.d_model]),
            &self.device,
        ));
        let buckets: Vec<usize> = (0..len * len)
            .map(|i| {
                let (query, key) = ((i / len) as i64, (i % len) as i64);
                relative_bucket(
                    key - query,
                    c.relative_attention_num_buckets,
                    c.relative_attention_max_distance,
                )
            })
            .collect();
        let heads = c.num_heads;
        for layer in &self.layers {
            let mut bias = vec![0f32; heads * len * len];
            for h in 0..heads {
                for (i, &bucket) in buckets.iter().enumerate() {
                    let masked = !mask[i % len];
                    bias[h * len * len + i] = if masked {
                        f32::MIN
                    } else {
                        layer.relative_bias[bucket * heads + h]
                    };
                }
            }
            let bias = precision.apply(Tensor::<B, 4>::from_data(
                TensorData::new(bias, [1, heads, len, len]),
                &self.device,
            ));
            let h = layer.norm1.forward(x.clone());
            let attended = merge_heads(attention(
                self.attention,
                split_heads(layer.q.forward(h.clone()), heads),
                split_heads(layer.k.forward(h.clone()), heads),
                split_heads(layer.v.forward(h), heads),
                Some(bias),
                Scale::Value(1.0),
            ));
            x = x + layer.o.forward(attended);
            let h = layer.norm2.forward(x.clone());
            let gated = gelu_tanh(layer.gate.forward(h.clone())) * layer.up.forward(h);
            x = x + layer.down.forward(gated);
        }
        Ok(Precision::F32.apply(self.final_norm.forward(x)))
    }
}
