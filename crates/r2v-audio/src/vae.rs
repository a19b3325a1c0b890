//! The decoder of MMAudio's 1-D mel VAE (`mmaudio/ext/autoencoder/vae.py`): EDM2-style
//! magnitude-preserving layers (pixel norm over channels, SiLU / 0.596, residual sums
//! `lerp(x, h, 0.3) / √0.58`, weights normalised at load), a single-head attention in the
//! middle, one ×2 upsampling, and activations clamped to ±256 after every stage. The
//! output is log-mel in the data's units (`· std + mean`, the `data_mean`/`data_std`
//! buffers of the checkpoint).

use crate::config::VaeConfig;
use crate::layers::{Conv1d, Layout, WeightForm};
use burn::prelude::*;
use burn::tensor::activation::silu;
use r2v_wan::attention::{Kernel, Scale, attention};
use r2v_wan::weights::Weights;

/// Upstream's `clip_act`.
const CLIP_ACT: f64 = 256.0;
/// The residual blend `t` of `mp_sum`.
const MP_SUM_T: f64 = 0.3;

/// EDM2's magnitude-preserving SiLU.
fn mp_silu<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    silu(x) / 0.596
}

/// `lerp(a, b, t) / √((1−t)² + t²)`.
fn mp_sum<B: Backend>(a: Tensor<B, 3>, b: Tensor<B, 3>) -> Tensor<B, 3> {
    let t = MP_SUM_T;
    (a * (1.0 - t) + b * t) / ((1.0 - t).powi(2) + t * t).sqrt()
}

/// EDM2's `normalize` over `dim` of a tensor whose other dims are kept.
fn normalize<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    let n = x.dims()[dim] as f64;
    let norm = x.clone().powi_scalar(2).sum_dim(dim).sqrt();
    x / (norm * (1.0 / n).sqrt() + 1e-4)
}

fn mp_conv<B: Backend>(
    w: &Weights,
    name: &str,
    shape: [usize; 3],
    device: &B::Device,
) -> Conv1d<B> {
    Conv1d::load(
        w,
        name,
        shape,
        (1, Layout::ChannelFirst),
        (WeightForm::MagnitudePreserving, false),
        device,
    )
}

/// `ResnetBlock1D` with its pixel norm.
#[derive(Debug, Clone)]
struct ResnetBlock<B: Backend> {
    conv1: Conv1d<B>,
    conv2: Conv1d<B>,
    shortcut: Option<Conv1d<B>>,
}

impl<B: Backend> ResnetBlock<B> {
    fn load(w: &Weights, name: &str, d_in: usize, d_out: usize, device: &B::Device) -> Self {
        Self {
            conv1: mp_conv(w, &format!("{name}.conv1"), [d_in, d_out, 3], device),
            conv2: mp_conv(w, &format!("{name}.conv2"), [d_out, d_out, 3], device),
            shortcut: (d_in != d_out)
                .then(|| mp_conv(w, &format!("{name}.nin_shortcut"), [d_in, d_out, 1], device)),
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = normalize(x, 1);
        let h = self.conv1.forward(mp_silu(x.clone()));
        let h = self.conv2.forward(mp_silu(h));
        let x = match &self.shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        mp_sum(x, h)
    }
}

/// `AttnBlock1D`: one head over time, q/k/v normalised over channels.
#[derive(Debug, Clone)]
struct AttnBlock<B: Backend> {
    qkv: Conv1d<B>,
    proj_out: Conv1d<B>,
    kernel: Kernel,
}

impl<B: Backend> AttnBlock<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, c, l] = x.dims();
        // Upstream reshapes [b, 3c, l] to [b, 1, c, 3, l]: channel 3i + j is part j of channel i.
        let y = normalize(self.qkv.forward(x.clone()).reshape([b, c, 3, l]), 1);
        let part = |j: usize| {
            y.clone()
                .narrow(2, j, 1)
                .reshape([b, 1, c, l])
                .swap_dims(2, 3)
        };
        let h = attention(self.kernel, part(0), part(1), part(2), None, Scale::Default);
        let h = h.swap_dims(2, 3).reshape([b, c, l]);
        mp_sum(x, self.proj_out.forward(h))
    }
}

/// One decoder level: its blocks, then the convolution of a ×2 upsampling when it has one.
type Level<B> = (Vec<ResnetBlock<B>>, Option<Conv1d<B>>);

/// The VAE's decoder.
#[derive(Debug, Clone)]
pub struct Decoder<B: Backend> {
    conv_in: Conv1d<B>,
    mid: (ResnetBlock<B>, AttnBlock<B>, ResnetBlock<B>),
    /// Levels from the deepest up.
    up: Vec<Level<B>>,
    conv_out: Conv1d<B>,
    data_mean: Tensor<B, 3>,
    data_std: Tensor<B, 3>,
}

/// Upstream's decoder shape: channel multipliers, blocks per level, the upsampled level.
const CH_MULT: [usize; 3] = [1, 2, 4];
const NUM_RES_BLOCKS: usize = 2;
const UPSAMPLED_LEVEL: usize = 1;

impl<B: Backend> Decoder<B> {
    /// Loads `decoder.*`, `data_mean` and `data_std`; the encoder's tensors are marked as
    /// known (a VAE checkpoint holds both halves) and not read.
    pub fn load(w: &Weights, config: VaeConfig, kernel: Kernel, device: &B::Device) -> Self {
        let dim = config.hidden_dim;
        let mut block_in = dim * CH_MULT[CH_MULT.len() - 1];
        let conv_in = mp_conv(
            w,
            "decoder.conv_in",
            [config.embed_dim, block_in, 3],
            device,
        );
        let mid = (
            ResnetBlock::load(w, "decoder.mid.block_1", block_in, block_in, device),
            AttnBlock {
                qkv: mp_conv(
                    w,
                    "decoder.mid.attn_1.qkv",
                    [block_in, 3 * block_in, 1],
                    device,
                ),
                proj_out: mp_conv(
                    w,
                    "decoder.mid.attn_1.proj_out",
                    [block_in, block_in, 1],
                    device,
                ),
                kernel,
            },
            ResnetBlock::load(w, "decoder.mid.block_2", block_in, block_in, device),
        );
        let mut up = Vec::new();
        for level in (0..CH_MULT.len()).rev() {
            let block_out = dim * CH_MULT[level];
            let blocks = (0..=NUM_RES_BLOCKS)
                .map(|i| {
                    let block = ResnetBlock::load(
                        w,
                        &format!("decoder.up.{level}.block.{i}"),
                        block_in,
                        block_out,
                        device,
                    );
                    block_in = block_out;
                    block
                })
                .collect();
            let upsample = (level == UPSAMPLED_LEVEL).then(|| {
                mp_conv(
                    w,
                    &format!("decoder.up.{level}.upsample.conv"),
                    [block_in, block_in, 3],
                    device,
                )
            });
            up.push((blocks, upsample));
        }
        let gain = w.scalar("decoder.learnable_gain");
        let conv_out = mp_conv(
            w,
            "decoder.conv_out",
            [block_in, config.data_dim, 3],
            device,
        )
        .scaled(gain + 1.0);
        w.mark_prefix_known("encoder.");
        let stats = |name: &str| w.tensor::<B, 3>(name, [1, config.data_dim, 1], device);
        Self {
            conv_in,
            mid,
            up,
            conv_out,
            data_mean: stats("data_mean"),
            data_std: stats("data_std"),
        }
    }

    /// Decodes `z` `[b, n, embed_dim]` (the sampler's layout) to log-mel `[b, mels, 2n]`.
    pub fn decode(&self, z: Tensor<B, 3>) -> Tensor<B, 3> {
        let clamp = |h: Tensor<B, 3>| h.clamp(-CLIP_ACT, CLIP_ACT);
        let mut h = self.conv_in.forward(z.swap_dims(1, 2));
        h = self.mid.0.forward(h);
        h = self.mid.1.forward(h);
        h = clamp(self.mid.2.forward(h));
        for (blocks, upsample) in &self.up {
            for block in blocks {
                h = clamp(block.forward(h));
            }
            if let Some(conv) = upsample {
                let [b, c, l] = h.dims();
                // nearest-exact ×2 repeats every frame twice.
                h = conv.forward(h.reshape([b, c, l, 1]).expand([b, c, l, 2]).reshape([
                    b,
                    c,
                    2 * l,
                ]));
            }
        }
        let h = self.conv_out.forward(mp_silu(h));
        h * self.data_std.clone() + self.data_mean.clone()
    }
}
