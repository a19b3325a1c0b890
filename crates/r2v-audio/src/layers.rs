//! The layers MMAudio and its decoders are built from, loaded by upstream's names: a
//! [`Linear`] with an optional bias, a 1-D [`Conv1d`] (channel-first, or channel-last as
//! upstream's `ChannelLastConv1d`) whose weight comes plain, weight-normalised (BigVGAN:
//! `weight_g`/`weight_v` or `parametrizations.weight.original0/1`) or magnitude-preserving
//! (the VAE's `MPConv1D`, normalised at load as upstream's `remove_weight_norm`), the SwiGLU
//! [`Mlp`] (`MLP`/`ConvMLP`) and the activations (LayerNorms are `r2v_wan::layers::LayerNorm`).

use burn::prelude::*;
use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::module::conv1d;
use burn::tensor::ops::{ConvOptions, PadMode};
use r2v_wan::weights::Weights;

/// `y = x Wᵀ + b` on `[batch, tokens, in]`.
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    weight: Tensor<B, 3>,
    bias: Option<Tensor<B, 3>>,
}

impl<B: Backend> Linear<B> {
    /// Loads `{name}.weight` `[out, in]` and, when `bias`, `{name}.bias` `[out]`.
    pub fn load(
        w: &Weights,
        name: &str,
        [d_in, d_out]: [usize; 2],
        bias: bool,
        device: &B::Device,
    ) -> Self {
        let weight = w.tensor::<B, 2>(&format!("{name}.weight"), [d_out, d_in], device);
        Self::from_parts(
            weight,
            bias.then(|| w.tensor::<B, 1>(&format!("{name}.bias"), [d_out], device)),
        )
    }

    /// A layer from a `[out, in]` weight.
    pub fn from_parts(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Self {
        let d_out = weight.dims()[0];
        Self {
            weight: weight.transpose().unsqueeze::<3>(),
            bias: bias.map(|b| b.reshape([1, 1, d_out])),
        }
    }

    /// Applies the layer to `[batch, tokens, in]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let y = x.matmul(self.weight.clone());
        match &self.bias {
            Some(b) => y + b.clone(),
            None => y,
        }
    }
}

/// How a convolution's weight is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightForm {
    /// `{name}.weight` as it is.
    Plain,
    /// Weight normalisation over every dim but the first: `g · v / ‖v‖`.
    WeightNorm,
    /// EDM2's magnitude-preserving weight (`MPConv1D`): each output filter scaled to unit
    /// norm (with upstream's `1e-4` guard) and divided by `√fan_in`.
    MagnitudePreserving,
}

/// Reads a `[d0, d1, d2]` convolution weight in `form`.
pub fn conv_weight<B: Backend>(
    w: &Weights,
    name: &str,
    shape: [usize; 3],
    form: WeightForm,
    device: &B::Device,
) -> Tensor<B, 3> {
    match form {
        WeightForm::Plain => w.tensor(&format!("{name}.weight"), shape, device),
        WeightForm::WeightNorm => {
            let (g, v) = if w.contains(&format!("{name}.weight_g")) {
                (format!("{name}.weight_g"), format!("{name}.weight_v"))
            } else {
                (
                    format!("{name}.parametrizations.weight.original0"),
                    format!("{name}.parametrizations.weight.original1"),
                )
            };
            let g = w.tensor::<B, 3>(&g, [shape[0], 1, 1], device);
            let v = w.tensor::<B, 3>(&v, shape, device);
            let norm = v.clone().powi_scalar(2).sum_dim(2).sum_dim(1).sqrt();
            v * g / norm
        }
        WeightForm::MagnitudePreserving => {
            let v = w.tensor::<B, 3>(&format!("{name}.weight"), shape, device);
            let fan_in = (shape[1] * shape[2]) as f64;
            let norm = v.clone().powi_scalar(2).sum_dim(2).sum_dim(1).sqrt();
            let norm = norm * (1.0 / fan_in).sqrt() + 1e-4;
            v / norm / fan_in.sqrt()
        }
    }
}

/// Which layout a convolution's input mostly comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[batch, channels, time]` (the VAE, the vocoder).
    ChannelFirst,
    /// `[batch, time, channels]` (MMAudio's `ChannelLastConv1d`).
    ChannelLast,
}

/// A 1-D convolution with "same"-style padding. Channel-last ones (and 1-wide kernels) run
/// as one matrix product over the `k` shifted copies of the input (im2col): flex's matmul
/// made MMAudio's network 1.4× faster than burn's direct convolution did. Channel-first
/// ones keep burn's convolution, which was faster on the vocoder's long signals than the
/// copies and transposes im2col needs there. Long inputs go through im2col in chunks of
/// time so that the copies stay within [`IM2COL_BUDGET`].
#[derive(Debug, Clone)]
pub enum Conv1d<B: Backend> {
    /// The weight as `[k·in, out]` in (tap, channel) order, with the bias.
    Taps {
        /// The matrix product.
        taps: Linear<B>,
        /// Kernel width.
        kernel: usize,
        /// Zeros on each side.
        padding: usize,
        /// Tap spacing.
        dilation: usize,
    },
    /// burn's `conv1d`.
    Direct {
        /// `[out, in, k]`.
        weight: Tensor<B, 3>,
        /// `[out]`.
        bias: Option<Tensor<B, 1>>,
        /// Zeros on each side.
        padding: usize,
        /// Tap spacing.
        dilation: usize,
    },
}

/// Most values one chunk's shifted copies may hold (64 MiB of f32).
const IM2COL_BUDGET: usize = 16 << 20;

impl<B: Backend> Conv1d<B> {
    /// A convolution from its `[out, in, k]` weight, for inputs in `layout`.
    pub fn new(
        weight: Tensor<B, 3>,
        bias: Option<Tensor<B, 1>>,
        (padding, dilation): (usize, usize),
        layout: Layout,
    ) -> Self {
        let [d_out, d_in, k] = weight.dims();
        if k == 1 || layout == Layout::ChannelLast {
            let taps = weight.permute([0, 2, 1]).reshape([d_out, k * d_in]);
            Self::Taps {
                taps: Linear::from_parts(taps, bias),
                kernel: k,
                padding,
                dilation,
            }
        } else {
            Self::Direct {
                weight,
                bias,
                padding,
                dilation,
            }
        }
    }

    /// Loads `{name}.weight` `[out, in, k]` (in `form`) and, when `bias`, `{name}.bias`;
    /// padded by `k/2 · dilation` on both sides, as every convolution here is.
    pub fn load(
        w: &Weights,
        name: &str,
        [d_in, d_out, k]: [usize; 3],
        (dilation, layout): (usize, Layout),
        (form, bias): (WeightForm, bool),
        device: &B::Device,
    ) -> Self {
        let weight = conv_weight(w, name, [d_out, d_in, k], form, device);
        let bias = bias.then(|| w.tensor::<B, 1>(&format!("{name}.bias"), [d_out], device));
        Self::new(
            weight,
            bias,
            ((k * dilation - dilation) / 2, dilation),
            layout,
        )
    }

    /// Scales the weight, not the bias (the VAE's `gain`).
    pub fn scaled(self, gain: f32) -> Self {
        match self {
            Self::Taps {
                mut taps,
                kernel,
                padding,
                dilation,
            } => {
                taps.weight = taps.weight * gain;
                Self::Taps {
                    taps,
                    kernel,
                    padding,
                    dilation,
                }
            }
            Self::Direct {
                weight,
                bias,
                padding,
                dilation,
            } => Self::Direct {
                weight: weight * gain,
                bias,
                padding,
                dilation,
            },
        }
    }

    /// Applies the convolution to `[batch, channels, time]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Self::Taps { .. } => self.forward_channel_last(x.swap_dims(1, 2)).swap_dims(1, 2),
            Self::Direct {
                weight,
                bias,
                padding,
                dilation,
            } => conv1d(
                x,
                weight.clone(),
                bias.clone(),
                ConvOptions::new([1], [*padding], [*dilation], 1),
            ),
        }
    }

    /// Applies the convolution to `[batch, time, channels]` (`ChannelLastConv1d`).
    pub fn forward_channel_last(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let Self::Taps {
            taps,
            kernel,
            padding,
            dilation,
        } = self
        else {
            return self.forward(x.swap_dims(1, 2)).swap_dims(1, 2);
        };
        if *kernel == 1 && *padding == 0 {
            return taps.forward(x);
        }
        let [_, t, c] = x.dims();
        let span = dilation * (kernel - 1);
        let x = x.pad((0, 0, *padding, *padding), PadMode::Constant(0.0));
        let t_out = t + 2 * padding - span;
        let chunk = (IM2COL_BUDGET / (c * kernel).max(1)).max(1);
        let mut parts: Vec<Tensor<B, 3>> = (0..t_out)
            .step_by(chunk)
            .map(|start| {
                let len = chunk.min(t_out - start);
                let window = x.clone().narrow(1, start, len + span);
                let shifted = (0..*kernel)
                    .map(|j| window.clone().narrow(1, j * dilation, len))
                    .collect();
                taps.forward(Tensor::cat(shifted, 2))
            })
            .collect();
        if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::cat(parts, 1)
        }
    }
}

/// A token-wise or convolutional projection on `[batch, tokens, channels]`.
#[derive(Debug, Clone)]
pub enum Projection<B: Backend> {
    /// `nn.Linear`.
    Linear(Linear<B>),
    /// `ChannelLastConv1d`.
    Conv(Conv1d<B>),
}

impl<B: Backend> Projection<B> {
    /// Loads a linear layer (`kernel == 1`) or a channel-last convolution.
    pub fn load(
        w: &Weights,
        name: &str,
        [d_in, d_out, kernel]: [usize; 3],
        bias: bool,
        device: &B::Device,
    ) -> Self {
        if kernel == 1 {
            Self::Linear(Linear::load(w, name, [d_in, d_out], bias, device))
        } else {
            Self::Conv(Conv1d::load(
                w,
                name,
                [d_in, d_out, kernel],
                (1, Layout::ChannelLast),
                (WeightForm::Plain, bias),
                device,
            ))
        }
    }

    /// Applies it to `[batch, tokens, channels]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Self::Linear(l) => l.forward(x),
            Self::Conv(c) => c.forward_channel_last(x),
        }
    }
}

/// SwiGLU: `w2(silu(w1 x) · w3 x)`, with linear (`MLP`) or convolutional (`ConvMLP`) maps.
#[derive(Debug, Clone)]
pub struct Mlp<B: Backend> {
    w1: Projection<B>,
    w2: Projection<B>,
    w3: Projection<B>,
}

impl<B: Backend> Mlp<B> {
    /// Loads `{name}.w1/w2/w3` (no biases); `hidden` is upstream's `hidden_dim` argument.
    pub fn load(
        w: &Weights,
        name: &str,
        dim: usize,
        hidden: usize,
        kernel: usize,
        device: &B::Device,
    ) -> Self {
        let h = crate::config::swiglu_hidden(hidden);
        Self {
            w1: Projection::load(w, &format!("{name}.w1"), [dim, h, kernel], false, device),
            w2: Projection::load(w, &format!("{name}.w2"), [h, dim, kernel], false, device),
            w3: Projection::load(w, &format!("{name}.w3"), [dim, h, kernel], false, device),
        }
    }

    /// Applies it to `[batch, tokens, dim]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.w2
            .forward(silu(self.w1.forward(x.clone())) * self.w3.forward(x))
    }
}

/// SELU with PyTorch's constants.
pub fn selu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    const ALPHA: f64 = 1.673_263_242_354_377_3;
    const SCALE: f64 = 1.050_700_987_355_480_5;
    let positive = x.clone().clamp_min(0.0);
    let negative = (x.clamp_max(0.0).exp() - 1.0) * ALPHA;
    (positive + negative) * SCALE
}

/// QuickGELU: `x · σ(1.702 x)`.
pub fn quick_gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone() * sigmoid(x * 1.702)
}
