//! The Wan video VAE (`AutoencoderKLWan`): Wan 2.1, and the Wan 2.2 variant with
//! patchified input, residual down/up blocks and 48 latent channels (MODEL.md §1.3–1.4).
//!
//! It runs the way diffusers does, in temporal chunks with the causal feature cache:
//! the encoder takes 1 frame, then 4 at a time; the decoder takes one latent frame at a
//! time. Every causal convolution keeps the last two frames of its input stream in a
//! [`FeatureCache`] slot, so memory is bounded by one chunk whatever the clip length,
//! and the result equals diffusers' `_encode` / `_decode` (the first chunk is special in
//! the temporal up/down-samplers, which is why the whole clip cannot be run at once).
//! Decoded chunks are handed to a callback as they are made, so a caller can stream them
//! to an encoder instead of holding the whole video.

use crate::attention::{Kernel, Scale, attention};
use crate::weights::Weights;
use crate::{Precision, WanError};
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::module::conv3d;
use burn::tensor::ops::ConvOptions;
use serde::Deserialize;
use std::path::Path;

/// Frames each causal convolution keeps from the previous chunk (diffusers' `CACHE_T`).
const CACHE_FRAMES: usize = 2;

/// The VAE's hyper-parameters, under diffusers' names (`AutoencoderKLWan` config).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct VaeConfig {
    /// Encoder width (96 for 2.1, 160 for 2.2).
    pub base_dim: usize,
    /// Decoder width when it differs (256 for 2.2).
    pub decoder_base_dim: Option<usize>,
    /// Latent channels (16 for 2.1, 48 for 2.2).
    pub z_dim: usize,
    /// Width multipliers per level.
    pub dim_mult: Vec<usize>,
    /// Residual blocks per level.
    pub num_res_blocks: usize,
    /// Scales with an attention block in the (2.1) encoder; empty for every Wan VAE.
    pub attn_scales: Vec<f64>,
    /// Which levels halve time (the decoder mirrors it).
    pub temperal_downsample: Vec<bool>,
    /// Per-channel latent mean.
    pub latents_mean: Vec<f32>,
    /// Per-channel latent standard deviation.
    pub latents_std: Vec<f32>,
    /// The 2.2 residual down/up blocks.
    pub is_residual: bool,
    /// Input channels after patchify (3, or 12 for 2.2).
    pub in_channels: usize,
    /// Output channels before unpatchify (3, or 12 for 2.2).
    pub out_channels: usize,
    /// Pixel-unshuffle factor applied before encoding (2 for 2.2).
    pub patch_size: Option<usize>,
    /// Frames per latent frame (after the first).
    pub scale_factor_temporal: usize,
    /// Pixels per latent pixel, per side.
    pub scale_factor_spatial: usize,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self::wan21()
    }
}

impl VaeConfig {
    /// The Wan 2.1 VAE (also used by Wan 2.2 A14B).
    pub fn wan21() -> Self {
        Self {
            base_dim: 96,
            decoder_base_dim: None,
            z_dim: 16,
            dim_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            attn_scales: Vec::new(),
            temperal_downsample: vec![false, true, true],
            latents_mean: vec![
                -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134,
                -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
            ],
            latents_std: vec![
                2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526,
                2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
            ],
            is_residual: false,
            in_channels: 3,
            out_channels: 3,
            patch_size: None,
            scale_factor_temporal: 4,
            scale_factor_spatial: 8,
        }
    }

    /// Reads a diffusers `config.json` (or a fixture config with a `config` object).
    pub fn from_file(path: &Path) -> Result<Self, WanError> {
        crate::config::read_params(path)
    }

    fn check(&self) -> Result<(), WanError> {
        let levels = self.dim_mult.len();
        if levels == 0 || self.temperal_downsample.len() + 1 < levels {
            return Err(WanError::Config(format!(
                "the VAE has {levels} levels in dim_mult but {} temperal_downsample flags",
                self.temperal_downsample.len()
            )));
        }
        if self.latents_mean.len() != self.z_dim || self.latents_std.len() != self.z_dim {
            return Err(WanError::Config(format!(
                "latents_mean/latents_std have {}/{} values for z_dim {}",
                self.latents_mean.len(),
                self.latents_std.len(),
                self.z_dim
            )));
        }
        Ok(())
    }

    fn patch(&self) -> usize {
        self.patch_size.unwrap_or(1).max(1)
    }
}

/// One convolution's memory of the previous chunk.
enum Slot<B: Backend> {
    /// Nothing seen yet.
    Empty,
    /// A temporal upsampler has passed its first chunk through (diffusers' `"Rep"`).
    Started,
    /// The last frames of the input stream.
    Frames(Tensor<B, 5>),
}

/// The causal feature cache: one [`Slot`] per cached convolution, visited in module order
/// within each chunk.
pub struct FeatureCache<B: Backend> {
    slots: Vec<Slot<B>>,
    next: usize,
}

impl<B: Backend> FeatureCache<B> {
    fn new() -> Self {
        Self {
            slots: Vec::new(),
            next: 0,
        }
    }

    fn begin_chunk(&mut self) {
        self.next = 0;
    }

    fn slot(&mut self) -> &mut Slot<B> {
        if self.next == self.slots.len() {
            self.slots.push(Slot::Empty);
        }
        self.next += 1;
        &mut self.slots[self.next - 1]
    }
}

/// The last [`CACHE_FRAMES`] frames of `previous ++ x`.
fn tail<B: Backend>(x: &Tensor<B, 5>, previous: Option<&Tensor<B, 5>>) -> Tensor<B, 5> {
    let frames = x.dims()[2];
    if frames >= CACHE_FRAMES {
        return x.clone().narrow(2, frames - CACHE_FRAMES, CACHE_FRAMES);
    }
    match previous {
        Some(p) => {
            let p_frames = p.dims()[2];
            Tensor::cat(vec![p.clone().narrow(2, p_frames - 1, 1), x.clone()], 2)
        }
        None => x.clone(),
    }
}

fn last_frame<B: Backend>(x: &Tensor<B, 5>) -> Tensor<B, 5> {
    let frames = x.dims()[2];
    x.clone().narrow(2, frames - 1, 1)
}

/// `WanCausalConv3d`: all temporal padding on the past side, replaced by cached frames
/// when there are any. Spatial-only convolutions are the `kernel = (1, k, k)` case.
struct CausalConv3d<B: Backend> {
    weight: Tensor<B, 5>,
    bias: Tensor<B, 1>,
    stride: [usize; 3],
    /// Frames of zeros (or cache) in front: twice PyTorch's temporal padding.
    past: usize,
    spatial_padding: [usize; 2],
}

impl<B: Backend> CausalConv3d<B> {
    #[allow(clippy::too_many_arguments)]
    fn load(
        w: &Weights,
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: [usize; 3],
        stride: [usize; 3],
        padding: [usize; 3],
        device: &B::Device,
    ) -> Self {
        Self {
            weight: w.tensor(
                &format!("{name}.weight"),
                [c_out, c_in, kernel[0], kernel[1], kernel[2]],
                device,
            ),
            bias: w.tensor(&format!("{name}.bias"), [c_out], device),
            stride,
            past: 2 * padding[0],
            spatial_padding: [padding[1], padding[2]],
        }
    }

    /// A cube kernel of size `k` with "same" padding (`k = 3`) or none (`k = 1`).
    fn cube(w: &Weights, name: &str, c_in: usize, c_out: usize, k: usize, d: &B::Device) -> Self {
        let p = k / 2;
        Self::load(w, name, c_in, c_out, [k; 3], [1; 3], [p; 3], d)
    }

    /// An `nn.Conv2d` applied to every frame.
    fn spatial(
        w: &Weights,
        name: &str,
        c: [usize; 2],
        stride: usize,
        pad: usize,
        d: &B::Device,
    ) -> Self {
        let weight = w.tensor::<B, 4>(&format!("{name}.weight"), [c[1], c[0], 3, 3], d);
        Self {
            weight: weight.unsqueeze_dim(2),
            bias: w.tensor(&format!("{name}.bias"), [c[1]], d),
            stride: [1, stride, stride],
            past: 0,
            spatial_padding: [pad, pad],
        }
    }

    fn forward(&self, x: Tensor<B, 5>, cache: Option<&Tensor<B, 5>>) -> Tensor<B, 5> {
        let mut x = x;
        let mut past = self.past;
        if let Some(cached) = cache.filter(|_| self.past > 0) {
            past = past.saturating_sub(cached.dims()[2]);
            x = Tensor::cat(vec![cached.clone(), x], 2);
        }
        if past > 0 {
            x = pad_zeros(x, 2, past, 0);
        }
        let [ph, pw] = self.spatial_padding;
        let [_, _, kt, kh, kw] = self.weight.dims();
        if [kt, kh, kw] == [1, 1, 1] && self.stride == [1, 1, 1] && [ph, pw] == [0, 0] {
            return pointwise(x, &self.weight, &self.bias);
        }
        conv3d(
            x,
            self.weight.clone(),
            Some(self.bias.clone()),
            ConvOptions::new(self.stride, [0, ph, pw], [1, 1, 1], 1),
        )
    }

    /// Runs on a chunk with this convolution's cache slot, and updates the slot.
    fn forward_cached(&self, x: Tensor<B, 5>, cache: &mut FeatureCache<B>) -> Tensor<B, 5> {
        let slot = cache.slot();
        let previous = match std::mem::replace(slot, Slot::Empty) {
            Slot::Frames(t) => Some(t),
            Slot::Empty | Slot::Started => None,
        };
        *slot = Slot::Frames(tail(&x, previous.as_ref()));
        self.forward(x, previous.as_ref())
    }
}

/// A 1×1×1 convolution as one matrix product over channels. On GPU backends burn's `conv3d`
/// autotunes such convolutions, and one of its candidates (`conv_im2col_1x1`) returned wrong
/// values on Mesa's lavapipe whenever the autotuner picked it (a cold kernel cache in CI: the
/// VAE-encode fixture off by 0.1 of its range); the product is what that kernel computes anyway.
fn pointwise<B: Backend>(
    x: Tensor<B, 5>,
    weight: &Tensor<B, 5>,
    bias: &Tensor<B, 1>,
) -> Tensor<B, 5> {
    let [b, c, t, h, w] = x.dims();
    let o = weight.dims()[0];
    let weight = weight.clone().reshape([1, o, c]).expand([b, o, c]);
    let y = weight.matmul(x.reshape([b, c, t * h * w])) + bias.clone().reshape([1, o, 1]);
    y.reshape([b, o, t, h, w])
}

/// `WanRMS_norm`: L2-normalise over channels, times `√C · γ`.
struct ChannelNorm<B: Backend> {
    gain: Tensor<B, 5>,
}

impl<B: Backend> ChannelNorm<B> {
    fn load(w: &Weights, name: &str, c: usize, images: bool, d: &B::Device) -> Self {
        let name = format!("{name}.gamma");
        let gamma = if images {
            w.tensor::<B, 3>(&name, [c, 1, 1], d)
                .reshape([1, c, 1, 1, 1])
        } else {
            w.tensor::<B, 4>(&name, [c, 1, 1, 1], d)
                .reshape([1, c, 1, 1, 1])
        };
        Self {
            gain: gamma * (c as f64).sqrt(),
        }
    }

    /// Computed in f32, as diffusers does for half-precision inputs.
    fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let precision = Precision::of(&x);
        let x = Precision::F32.apply(x);
        let norm = (x.clone() * x.clone()).sum_dim(1).sqrt().clamp_min(1e-12);
        precision.apply(x / norm) * self.gain.clone()
    }
}

/// `WanResidualBlock`: RMS → SiLU → conv → RMS → SiLU → conv, plus a (1×1×1) shortcut.
struct ResidualBlock<B: Backend> {
    norm1: ChannelNorm<B>,
    conv1: CausalConv3d<B>,
    norm2: ChannelNorm<B>,
    conv2: CausalConv3d<B>,
    shortcut: Option<CausalConv3d<B>>,
}

impl<B: Backend> ResidualBlock<B> {
    fn load(w: &Weights, name: &str, c_in: usize, c_out: usize, d: &B::Device) -> Self {
        Self {
            norm1: ChannelNorm::load(w, &format!("{name}.norm1"), c_in, false, d),
            conv1: CausalConv3d::cube(w, &format!("{name}.conv1"), c_in, c_out, 3, d),
            norm2: ChannelNorm::load(w, &format!("{name}.norm2"), c_out, false, d),
            conv2: CausalConv3d::cube(w, &format!("{name}.conv2"), c_out, c_out, 3, d),
            shortcut: (c_in != c_out).then(|| {
                CausalConv3d::cube(w, &format!("{name}.conv_shortcut"), c_in, c_out, 1, d)
            }),
        }
    }

    fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatureCache<B>) -> Tensor<B, 5> {
        let h = match &self.shortcut {
            Some(conv) => conv.forward(x.clone(), None),
            None => x.clone(),
        };
        let x = self
            .conv1
            .forward_cached(silu(self.norm1.forward(x)), cache);
        let x = self
            .conv2
            .forward_cached(silu(self.norm2.forward(x)), cache);
        x + h
    }
}

/// `WanAttentionBlock`: single-head self-attention over each frame's pixels.
struct AttentionBlock<B: Backend> {
    norm: ChannelNorm<B>,
    qkv: (Tensor<B, 3>, Tensor<B, 3>),
    proj: (Tensor<B, 3>, Tensor<B, 3>),
}

impl<B: Backend> AttentionBlock<B> {
    fn load(w: &Weights, name: &str, c: usize, d: &B::Device) -> Self {
        let pointwise = |part: &str, out: usize| {
            let weight = w
                .tensor::<B, 4>(&format!("{name}.{part}.weight"), [out, c, 1, 1], d)
                .reshape([out, c])
                .transpose()
                .unsqueeze::<3>();
            let bias = w
                .tensor::<B, 1>(&format!("{name}.{part}.bias"), [out], d)
                .reshape([1, 1, out]);
            (weight, bias)
        };
        Self {
            norm: ChannelNorm::load(w, &format!("{name}.norm"), c, true, d),
            qkv: pointwise("to_qkv", 3 * c),
            proj: pointwise("proj", c),
        }
    }

    fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let [b, c, t, h, w] = x.dims();
        let tokens = self
            .norm
            .forward(x.clone())
            .permute([0, 2, 3, 4, 1])
            .reshape([b * t, h * w, c]);
        let qkv = tokens.matmul(self.qkv.0.clone()) + self.qkv.1.clone();
        let part = |i: usize| qkv.clone().narrow(2, i * c, c).unsqueeze_dim::<4>(1);
        let out = attention(
            Kernel::Backend,
            part(0),
            part(1),
            part(2),
            None,
            Scale::Default,
        )
        .reshape([b * t, h * w, c]);
        let out = out.matmul(self.proj.0.clone()) + self.proj.1.clone();
        out.reshape([b, t, h, w, c]).permute([0, 4, 1, 2, 3]) + x
    }
}

/// What a [`Resample`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResampleMode {
    Up2d,
    Up3d,
    Down2d,
    Down3d,
}

/// `WanResample`: ×2 spatial up/down-sampling, with a temporal convolution in the 3-D modes.
struct Resample<B: Backend> {
    mode: ResampleMode,
    conv: CausalConv3d<B>,
    time_conv: Option<CausalConv3d<B>>,
}

impl<B: Backend> Resample<B> {
    fn load(
        w: &Weights,
        name: &str,
        c: usize,
        c_up: usize,
        mode: ResampleMode,
        d: &B::Device,
    ) -> Self {
        let conv_name = format!("{name}.resample.1");
        let time_name = format!("{name}.time_conv");
        let (conv, time_conv) = match mode {
            ResampleMode::Up2d | ResampleMode::Up3d => (
                CausalConv3d::spatial(w, &conv_name, [c, c_up], 1, 1, d),
                (mode == ResampleMode::Up3d).then(|| {
                    CausalConv3d::load(w, &time_name, c, 2 * c, [3, 1, 1], [1; 3], [1, 0, 0], d)
                }),
            ),
            ResampleMode::Down2d | ResampleMode::Down3d => (
                CausalConv3d::spatial(w, &conv_name, [c, c], 2, 0, d),
                (mode == ResampleMode::Down3d).then(|| {
                    CausalConv3d::load(w, &time_name, c, c, [3, 1, 1], [2, 1, 1], [0; 3], d)
                }),
            ),
        };
        Self {
            mode,
            conv,
            time_conv,
        }
    }

    fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatureCache<B>) -> Tensor<B, 5> {
        let mut x = x;
        if let (ResampleMode::Up3d, Some(time_conv)) = (self.mode, &self.time_conv) {
            let slot = cache.slot();
            match std::mem::replace(slot, Slot::Empty) {
                // The first chunk passes through: one latent frame gives one frame.
                Slot::Empty => *slot = Slot::Started,
                state => {
                    let previous = match state {
                        Slot::Frames(t) => Some(t),
                        _ => None,
                    };
                    *slot = Slot::Frames(tail(&x, previous.as_ref()));
                    let [b, c, t, h, w] = x.dims();
                    x = time_conv
                        .forward(x, previous.as_ref())
                        .reshape([b, 2, c, t, h, w])
                        .permute([0, 2, 3, 1, 4, 5])
                        .reshape([b, c, 2 * t, h, w]);
                }
            }
        }
        x = match self.mode {
            ResampleMode::Up2d | ResampleMode::Up3d => {
                let [b, c, t, h, w] = x.dims();
                let doubled = x
                    .reshape([b, c, t, h, 1, w, 1])
                    .expand([b, c, t, h, 2, w, 2])
                    .reshape([b, c, t, 2 * h, 2 * w]);
                self.conv.forward(doubled, None)
            }
            ResampleMode::Down2d | ResampleMode::Down3d => self
                .conv
                .forward(pad_zeros(pad_zeros(x, 3, 0, 1), 4, 0, 1), None),
        };
        if let (ResampleMode::Down3d, Some(time_conv)) = (self.mode, &self.time_conv) {
            let slot = cache.slot();
            match std::mem::replace(slot, Slot::Empty) {
                Slot::Frames(previous) => {
                    *slot = Slot::Frames(last_frame(&x));
                    x = time_conv.forward(Tensor::cat(vec![last_frame(&previous), x], 2), None);
                }
                // The first chunk passes through and is remembered.
                Slot::Empty | Slot::Started => *slot = Slot::Frames(x.clone()),
            }
        }
        x
    }
}

/// `AvgDown3D`: the 2.2 parameter-free shortcut, space/time-to-channel then a group mean.
struct AvgDown {
    c_out: usize,
    factor_t: usize,
    factor_s: usize,
}

impl AvgDown {
    fn forward<B: Backend>(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let (ft, fs) = (self.factor_t, self.factor_s);
        let pad_t = (ft - x.dims()[2] % ft) % ft;
        let x = if pad_t > 0 {
            pad_zeros(x, 2, pad_t, 0)
        } else {
            x
        };
        let [b, c, t, h, w] = x.dims();
        let (t, h, w) = (t / ft, h / fs, w / fs);
        let factor = ft * fs * fs;
        x.reshape([b, c, t, ft, h, fs, w, fs])
            .permute([0, 1, 3, 5, 7, 2, 4, 6])
            .reshape([b, self.c_out, c * factor / self.c_out, t, h, w])
            .mean_dim(2)
            .reshape([b, self.c_out, t, h, w])
    }
}

/// `DupUp3D`: the 2.2 parameter-free shortcut, channel repeat then channel-to-space/time.
struct DupUp {
    c_out: usize,
    factor_t: usize,
    factor_s: usize,
}

impl DupUp {
    fn forward<B: Backend>(&self, x: Tensor<B, 5>, first_chunk: bool) -> Tensor<B, 5> {
        let (ft, fs) = (self.factor_t, self.factor_s);
        let [b, c, t, h, w] = x.dims();
        let repeats = self.c_out * ft * fs * fs / c;
        let x = x
            .reshape([b, c, 1, t, h, w])
            .expand([b, c, repeats, t, h, w])
            .reshape([b, self.c_out, ft, fs, fs, t, h, w])
            .permute([0, 1, 5, 2, 6, 3, 7, 4])
            .reshape([b, self.c_out, t * ft, h * fs, w * fs]);
        if first_chunk && ft > 1 {
            x.narrow(2, ft - 1, t * ft - (ft - 1))
        } else {
            x
        }
    }
}

/// One entry of the encoder's `down_blocks`.
enum DownLayer<B: Backend> {
    Residual(ResidualBlock<B>),
    Attention(AttentionBlock<B>),
    Resample(Resample<B>),
    /// 2.2: residual blocks, an optional downsampler, and an [`AvgDown`] shortcut.
    ResidualDown {
        resnets: Vec<ResidualBlock<B>>,
        down: Option<Resample<B>>,
        shortcut: AvgDown,
    },
}

impl<B: Backend> DownLayer<B> {
    fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatureCache<B>) -> Tensor<B, 5> {
        match self {
            Self::Residual(block) => block.forward(x, cache),
            Self::Attention(block) => block.forward(x),
            Self::Resample(block) => block.forward(x, cache),
            Self::ResidualDown {
                resnets,
                down,
                shortcut,
            } => {
                let skip = shortcut.forward(x.clone());
                let mut x = x;
                for block in resnets {
                    x = block.forward(x, cache);
                }
                if let Some(down) = down {
                    x = down.forward(x, cache);
                }
                x + skip
            }
        }
    }
}

/// One entry of the decoder's `up_blocks`.
struct UpBlock<B: Backend> {
    resnets: Vec<ResidualBlock<B>>,
    up: Option<Resample<B>>,
    /// 2.2 only.
    shortcut: Option<DupUp>,
}

impl<B: Backend> UpBlock<B> {
    fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatureCache<B>, first: bool) -> Tensor<B, 5> {
        let skip = self.shortcut.as_ref().map(|s| s.forward(x.clone(), first));
        let mut x = x;
        for block in &self.resnets {
            x = block.forward(x, cache);
        }
        if let Some(up) = &self.up {
            x = up.forward(x, cache);
        }
        match skip {
            Some(skip) => x + skip,
            None => x,
        }
    }
}

/// `WanMidBlock`: residual, attention, residual.
struct MidBlock<B: Backend> {
    first: ResidualBlock<B>,
    attention: AttentionBlock<B>,
    second: ResidualBlock<B>,
}

impl<B: Backend> MidBlock<B> {
    fn load(w: &Weights, name: &str, c: usize, d: &B::Device) -> Self {
        Self {
            first: ResidualBlock::load(w, &format!("{name}.resnets.0"), c, c, d),
            attention: AttentionBlock::load(w, &format!("{name}.attentions.0"), c, d),
            second: ResidualBlock::load(w, &format!("{name}.resnets.1"), c, c, d),
        }
    }

    fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatureCache<B>) -> Tensor<B, 5> {
        let x = self.first.forward(x, cache);
        let x = self.attention.forward(x);
        self.second.forward(x, cache)
    }
}

/// A convolution in, a mid block, a norm and a convolution out: the frame of both halves.
struct Ends<B: Backend> {
    conv_in: CausalConv3d<B>,
    mid: MidBlock<B>,
    norm_out: ChannelNorm<B>,
    conv_out: CausalConv3d<B>,
}

/// Channel widths of an [`Ends`].
struct Widths {
    input: usize,
    first: usize,
    mid: usize,
    last: usize,
    output: usize,
}

impl<B: Backend> Ends<B> {
    fn load(w: &Weights, name: &str, c: Widths, d: &B::Device) -> Self {
        Self {
            conv_in: CausalConv3d::cube(w, &format!("{name}.conv_in"), c.input, c.first, 3, d),
            mid: MidBlock::load(w, &format!("{name}.mid_block"), c.mid, d),
            norm_out: ChannelNorm::load(w, &format!("{name}.norm_out"), c.last, false, d),
            conv_out: CausalConv3d::cube(w, &format!("{name}.conv_out"), c.last, c.output, 3, d),
        }
    }

    fn head(&self, x: Tensor<B, 5>, cache: &mut FeatureCache<B>) -> Tensor<B, 5> {
        let x = self.norm_out.forward(x);
        self.conv_out.forward_cached(silu(x), cache)
    }
}

/// `AutoencoderKLWan`.
pub struct WanVae<B: Backend> {
    config: VaeConfig,
    encoder: Ends<B>,
    down: Vec<DownLayer<B>>,
    quant_conv: CausalConv3d<B>,
    post_quant_conv: CausalConv3d<B>,
    decoder: Ends<B>,
    up: Vec<UpBlock<B>>,
}

impl<B: Backend> WanVae<B> {
    /// Builds the VAE from diffusers-named weights; every missing, misshapen or unexpected
    /// key is named in one error.
    pub fn load(config: VaeConfig, weights: Weights, device: &B::Device) -> Result<Self, WanError> {
        config.check()?;
        let w = &weights;
        let d = device;
        let z = config.z_dim;
        let levels = config.dim_mult.len();
        let dims: Vec<usize> = std::iter::once(1)
            .chain(config.dim_mult.iter().copied())
            .map(|m| m * config.base_dim)
            .collect();

        let mut down = Vec::new();
        let mut scale = 1.0;
        for i in 0..levels {
            let (mut c_in, c_out) = (dims[i], dims[i + 1]);
            let last = i == levels - 1;
            let temporal = !last && config.temperal_downsample[i];
            let mode = if temporal {
                ResampleMode::Down3d
            } else {
                ResampleMode::Down2d
            };
            if config.is_residual {
                let name = format!("encoder.down_blocks.{i}");
                let resnets = (0..config.num_res_blocks)
                    .map(|j| {
                        let c = if j == 0 { c_in } else { c_out };
                        ResidualBlock::load(w, &format!("{name}.resnets.{j}"), c, c_out, d)
                    })
                    .collect();
                down.push(DownLayer::ResidualDown {
                    resnets,
                    down: (!last).then(|| {
                        Resample::load(w, &format!("{name}.downsampler"), c_out, c_out, mode, d)
                    }),
                    shortcut: AvgDown {
                        c_out,
                        factor_t: if temporal { 2 } else { 1 },
                        factor_s: if last { 1 } else { 2 },
                    },
                });
            } else {
                for _ in 0..config.num_res_blocks {
                    let name = format!("encoder.down_blocks.{}", down.len());
                    down.push(DownLayer::Residual(ResidualBlock::load(
                        w, &name, c_in, c_out, d,
                    )));
                    if config.attn_scales.contains(&scale) {
                        let name = format!("encoder.down_blocks.{}", down.len());
                        down.push(DownLayer::Attention(AttentionBlock::load(
                            w, &name, c_out, d,
                        )));
                    }
                    c_in = c_out;
                }
                if !last {
                    let name = format!("encoder.down_blocks.{}", down.len());
                    down.push(DownLayer::Resample(Resample::load(
                        w, &name, c_out, c_out, mode, d,
                    )));
                    scale /= 2.0;
                }
            }
        }
        let top = dims[levels];
        let encoder = Ends::load(
            w,
            "encoder",
            Widths {
                input: config.in_channels,
                first: dims[0],
                mid: top,
                last: top,
                output: 2 * z,
            },
            d,
        );

        let base = config.decoder_base_dim.unwrap_or(config.base_dim);
        let mut up_dims = vec![config.dim_mult[levels - 1] * base];
        up_dims.extend(config.dim_mult.iter().rev().map(|m| m * base));
        let upsample: Vec<bool> = config.temperal_downsample.iter().rev().copied().collect();
        let mut up = Vec::new();
        for i in 0..levels {
            let (mut c_in, c_out) = (up_dims[i], up_dims[i + 1]);
            if i > 0 && !config.is_residual {
                c_in /= 2;
            }
            let up_flag = i != levels - 1;
            let temporal = up_flag && upsample.get(i).copied().unwrap_or(false);
            let mode = if temporal {
                ResampleMode::Up3d
            } else {
                ResampleMode::Up2d
            };
            let name = format!("decoder.up_blocks.{i}");
            let resnets = (0..=config.num_res_blocks)
                .map(|j| {
                    let c = if j == 0 { c_in } else { c_out };
                    ResidualBlock::load(w, &format!("{name}.resnets.{j}"), c, c_out, d)
                })
                .collect();
            let (up_name, c_up) = if config.is_residual {
                (format!("{name}.upsampler"), c_out)
            } else {
                (format!("{name}.upsamplers.0"), c_out / 2)
            };
            up.push(UpBlock {
                resnets,
                up: up_flag.then(|| Resample::load(w, &up_name, c_out, c_up, mode, d)),
                shortcut: (config.is_residual && up_flag).then_some(DupUp {
                    c_out,
                    factor_t: if temporal { 2 } else { 1 },
                    factor_s: 2,
                }),
            });
        }
        let decoder = Ends::load(
            w,
            "decoder",
            Widths {
                input: z,
                first: up_dims[0],
                mid: up_dims[0],
                last: up_dims[levels],
                output: config.out_channels,
            },
            d,
        );

        let vae = Self {
            quant_conv: CausalConv3d::cube(w, "quant_conv", 2 * z, 2 * z, 1, d),
            post_quant_conv: CausalConv3d::cube(w, "post_quant_conv", z, z, 1, d),
            config,
            encoder,
            down,
            decoder,
            up,
        };
        weights.finish()?;
        Ok(vae)
    }

    /// The configuration.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Encodes a video `[B, C, 1 + 4k, H, W]` in `[-1, 1]` to the posterior's moments
    /// `[B, 2·z, 1 + k, H/s, W/s]` (mean, then log-variance; f32): diffusers' `_encode`.
    pub fn encode_moments(&self, video: Tensor<B, 5>) -> Result<Tensor<B, 5>, WanError> {
        let [_, channels, frames, height, width] = video.dims();
        let t = self.config.scale_factor_temporal.max(1);
        let s = self.config.scale_factor_spatial;
        let expected = self.config.in_channels / self.config.patch().pow(2);
        if channels != expected {
            return Err(WanError::Shape(format!(
                "the VAE encodes {expected}-channel video; got {channels} channels"
            )));
        }
        if frames == 0 || (frames - 1) % t != 0 {
            return Err(WanError::Shape(format!(
                "the VAE encodes 1 + {t}·k frames; got {frames}"
            )));
        }
        if height % s != 0 || width % s != 0 {
            return Err(WanError::Shape(format!(
                "height and width must be multiples of {s}; got {height}×{width}"
            )));
        }
        let precision = Precision::of(&self.quant_conv.bias);
        let video = patchify(precision.apply(video), self.config.patch());
        let mut cache = FeatureCache::new();
        let mut latents = Vec::with_capacity(1 + (frames - 1) / t);
        let mut start = 0;
        while start < frames {
            let len = if start == 0 { 1 } else { t };
            cache.begin_chunk();
            let mut x = self
                .encoder
                .conv_in
                .forward_cached(video.clone().narrow(2, start, len), &mut cache);
            for layer in &self.down {
                x = layer.forward(x, &mut cache);
            }
            x = self.encoder.mid.forward(x, &mut cache);
            latents.push(self.encoder.head(x, &mut cache));
            start += len;
        }
        let moments = self.quant_conv.forward(Tensor::cat(latents, 2), None);
        Ok(Precision::F32.apply(moments))
    }

    /// The posterior mode (μ), as the pipelines use it.
    pub fn encode_mean(&self, video: Tensor<B, 5>) -> Result<Tensor<B, 5>, WanError> {
        let moments = self.encode_moments(video)?;
        Ok(moments.narrow(1, 0, self.config.z_dim))
    }

    /// Decodes latents `[B, z, F, h, w]` one latent frame at a time, handing each decoded
    /// chunk `[B, C, 1 or 4, H, W]` (clamped to `[-1, 1]`) to `sink` in order: diffusers'
    /// `_decode` without holding the whole video.
    pub fn decode_chunks(
        &self,
        z: Tensor<B, 5>,
        mut sink: impl FnMut(Tensor<B, 5>) -> Result<(), WanError>,
    ) -> Result<(), WanError> {
        self.check_latents(&z)?;
        let patch = self.config.patch();
        self.decode_frames(z, |out| sink(unpatchify(out, patch).clamp(-1.0, 1.0)))
    }

    fn check_latents(&self, z: &Tensor<B, 5>) -> Result<(), WanError> {
        let channels = z.dims()[1];
        if channels != self.config.z_dim {
            return Err(WanError::Shape(format!(
                "the VAE decodes {}-channel latents; got {channels}",
                self.config.z_dim
            )));
        }
        Ok(())
    }

    /// The decoder over `z`'s latent frames, one at a time with one causal cache: each
    /// chunk (f32, still patchified and unclamped) goes to `each`.
    fn decode_frames(
        &self,
        z: Tensor<B, 5>,
        mut each: impl FnMut(Tensor<B, 5>) -> Result<(), WanError>,
    ) -> Result<(), WanError> {
        let frames = z.dims()[2];
        let precision = Precision::of(&self.quant_conv.bias);
        let x = self.post_quant_conv.forward(precision.apply(z), None);
        let mut cache = FeatureCache::new();
        for i in 0..frames {
            cache.begin_chunk();
            let mut h = self
                .decoder
                .conv_in
                .forward_cached(x.clone().narrow(2, i, 1), &mut cache);
            h = self.decoder.mid.forward(h, &mut cache);
            for block in &self.up {
                h = block.forward(h, &mut cache, i == 0);
            }
            each(Precision::F32.apply(self.decoder.head(h, &mut cache)))?;
        }
        Ok(())
    }

    /// Decodes latents in overlapping spatial tiles, each over the whole clip with its own
    /// causal cache, blended linearly where they overlap: diffusers' `tiled_decode` (same
    /// tile order, in-place blending and crop). Memory is bounded by one tile's activations
    /// plus the decoded clip, whatever the frame size. Latents no larger than one tile are
    /// decoded untiled.
    pub fn decode_tiled(&self, z: Tensor<B, 5>, tiling: Tiling) -> Result<Tensor<B, 5>, WanError> {
        self.check_latents(&z)?;
        let [batch, channels, frames, height, width] = z.dims();
        let ratio = self.config.scale_factor_spatial;
        let p = self.config.patch();
        let (tile, stride) = (tiling.tile / ratio, tiling.stride / ratio);
        if tile == 0 || stride == 0 || stride > tile {
            return Err(WanError::Shape(format!("bad VAE tiling {tiling:?}")));
        }
        if height <= tile && width <= tile {
            return self.decode(z);
        }
        let (sample_stride, overlap) = (tiling.stride / p, (tiling.tile - tiling.stride) / p);
        let mut rows: Vec<Vec<Tensor<B, 5>>> = Vec::new();
        for i in (0..height).step_by(stride) {
            let mut row = Vec::new();
            for j in (0..width).step_by(stride) {
                let (th, tw) = (tile.min(height - i), tile.min(width - j));
                let latents =
                    z.clone()
                        .slice([0..batch, 0..channels, 0..frames, i..i + th, j..j + tw]);
                let mut chunks = Vec::with_capacity(frames);
                self.decode_frames(latents, |chunk| {
                    chunks.push(chunk);
                    Ok(())
                })?;
                row.push(Tensor::cat(chunks, 2));
            }
            rows.push(row);
        }
        for i in 0..rows.len() {
            for j in 0..rows[i].len() {
                let mut tile = rows[i][j].clone();
                if i > 0 {
                    tile = blend(&rows[i - 1][j], tile, overlap, 3);
                }
                if j > 0 {
                    tile = blend(&rows[i][j - 1], tile, overlap, 4);
                }
                rows[i][j] = tile;
            }
        }
        let (sample_h, sample_w) = (height * ratio / p, width * ratio / p);
        let result_rows: Vec<Tensor<B, 5>> = rows
            .iter()
            .map(|row| {
                let cropped = row
                    .iter()
                    .map(|t| {
                        let [_, _, _, h, w] = t.dims();
                        t.clone().narrow(3, 0, sample_stride.min(h)).narrow(
                            4,
                            0,
                            sample_stride.min(w),
                        )
                    })
                    .collect();
                Tensor::cat(cropped, 4)
            })
            .collect();
        let video = Tensor::cat(result_rows, 3)
            .narrow(3, 0, sample_h)
            .narrow(4, 0, sample_w);
        Ok(unpatchify(video, p).clamp(-1.0, 1.0))
    }

    /// Decodes latents to the whole video `[B, C, 1 + 4(F−1), H, W]`.
    pub fn decode(&self, z: Tensor<B, 5>) -> Result<Tensor<B, 5>, WanError> {
        let mut chunks = Vec::new();
        self.decode_chunks(z, |chunk| {
            chunks.push(chunk);
            Ok(())
        })?;
        Ok(Tensor::cat(chunks, 2))
    }

    /// `(μ − mean) · (1/std)` per channel: the DiT's latent space (diffusers multiplies by
    /// the reciprocal, and so does this, to match it to the last bit).
    pub fn normalize(&self, mu: Tensor<B, 5>) -> Tensor<B, 5> {
        let (mean, inv_std) = self.statistics(&mu.device());
        (mu - mean) * inv_std
    }

    /// `z / (1/std) + mean` per channel: back to the decoder's latent space.
    pub fn denormalize(&self, z: Tensor<B, 5>) -> Tensor<B, 5> {
        let (mean, inv_std) = self.statistics(&z.device());
        z / inv_std + mean
    }

    /// Per-channel mean and 1/std, `[1, z, 1, 1, 1]` in f32.
    fn statistics(&self, device: &B::Device) -> (Tensor<B, 5>, Tensor<B, 5>) {
        let z = self.config.z_dim;
        let tensor = |v: Vec<f32>| {
            Tensor::<B, 1>::from_data(TensorData::new(v, [z]), device).reshape([1, z, 1, 1, 1])
        };
        let inv_std = self.config.latents_std.iter().map(|s| 1.0 / s).collect();
        (tensor(self.config.latents_mean.clone()), tensor(inv_std))
    }
}

/// Spatial tiles of [`WanVae::decode_tiled`], in output pixels (diffusers: 256 and 192).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Tile side.
    pub tile: usize,
    /// Distance between tile origins; `tile − stride` pixels are blended.
    pub stride: usize,
}

impl Default for Tiling {
    fn default() -> Self {
        Self {
            tile: 256,
            stride: 192,
        }
    }
}

/// diffusers' `blend_v` (`dim` 3) / `blend_h` (`dim` 4): the first `extent` rows of `b` fade
/// in from the last `extent` rows of `a`.
fn blend<B: Backend>(a: &Tensor<B, 5>, b: Tensor<B, 5>, extent: usize, dim: usize) -> Tensor<B, 5> {
    let extent = extent.min(a.dims()[dim]).min(b.dims()[dim]);
    if extent == 0 {
        return b;
    }
    let len = b.dims()[dim];
    let weights: Vec<f32> = (0..extent)
        .map(|y| (y as f64 / extent as f64) as f32)
        .collect();
    let mut shape = [1usize; 5];
    shape[dim] = extent;
    let w =
        Tensor::<B, 1>::from_data(TensorData::new(weights, [extent]), &b.device()).reshape(shape);
    let from_a = a.clone().narrow(dim, a.dims()[dim] - extent, extent);
    let head = b.clone().narrow(dim, 0, extent);
    let blended = from_a * (w.clone().neg() + 1.0) + head * w;
    if len == extent {
        blended
    } else {
        Tensor::cat(vec![blended, b.narrow(dim, extent, len - extent)], dim)
    }
}

/// `x` with `before` and `after` zero slices along `dim`, in `x`'s precision (burn's `pad`
/// makes its zeros in the default float type).
fn pad_zeros<B: Backend>(x: Tensor<B, 5>, dim: usize, before: usize, after: usize) -> Tensor<B, 5> {
    let zeros = |n: usize| {
        let mut shape = x.dims();
        shape[dim] = n;
        Precision::of(&x).apply(Tensor::zeros(shape, &x.device()))
    };
    let mut parts = Vec::with_capacity(3);
    if before > 0 {
        parts.push(zeros(before));
    }
    let tail = (after > 0).then(|| zeros(after));
    parts.push(x);
    parts.extend(tail);
    Tensor::cat(parts, dim)
}

/// 2.2's pixel-unshuffle: `[B, C, F, H, W]` → `[B, C·p², F, H/p, W/p]`, channel order `(c, pw, ph)`.
fn patchify<B: Backend>(x: Tensor<B, 5>, p: usize) -> Tensor<B, 5> {
    if p == 1 {
        return x;
    }
    let [b, c, f, h, w] = x.dims();
    x.reshape([b, c, f, h / p, p, w / p, p])
        .permute([0, 1, 6, 4, 2, 3, 5])
        .reshape([b, c * p * p, f, h / p, w / p])
}

/// The inverse of [`patchify`].
fn unpatchify<B: Backend>(x: Tensor<B, 5>, p: usize) -> Tensor<B, 5> {
    if p == 1 {
        return x;
    }
    let [b, cp, f, h, w] = x.dims();
    let c = cp / (p * p);
    x.reshape([b, c, p, p, f, h, w])
        .permute([0, 1, 4, 5, 3, 6, 2])
        .reshape([b, c, f, h * p, w * p])
}
