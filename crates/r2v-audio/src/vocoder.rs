//! BigVGAN and BigVGAN-v2 (NVIDIA; `mmaudio/ext/bigvgan*`): mel `[b, mels, frames]` →
//! waveform `[b, frames · hop]`. A pre-convolution, then per upsampling stage a transposed
//! convolution and the mean of anti-aliased multi-periodicity blocks (AMP: Snake or
//! SnakeBeta activations evaluated at twice the rate between a Kaiser-sinc ×2 upsampler and
//! low-pass ×2 downsampler, whose filters the checkpoint holds), a last activation, a
//! post-convolution and tanh (v2: optionally a clamp, and no final bias). Weight
//! normalisation is folded into the weights at load, as upstream's `remove_weight_norm`.

use crate::config::VocoderConfig;
use crate::layers::{Conv1d, Layout, WeightForm, conv_weight};
use burn::prelude::*;
use burn::tensor::module::{conv_transpose1d, conv1d};
use burn::tensor::ops::PadMode;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use r2v_wan::weights::Weights;

/// Snake (`x + sin²(αx)/α`) or SnakeBeta (`x + sin²(αx)/β`), anti-aliased.
#[derive(Debug, Clone)]
struct Activation<B: Backend> {
    alpha: Tensor<B, 3>,
    /// `1 / (β + 1e-9)`.
    inv_beta: Tensor<B, 3>,
    up_filter: Tensor<B, 3>,
    down_filter: Tensor<B, 3>,
}

/// The resampling filters' taps (`Activation1d`'s defaults).
const FILTER_TAPS: usize = 12;

impl<B: Backend> Activation<B> {
    fn load(
        w: &Weights,
        name: &str,
        channels: usize,
        config: &VocoderConfig,
        device: &B::Device,
    ) -> Self {
        let param = |p: &str| {
            let t = w
                .tensor::<B, 1>(&format!("{name}.act.{p}"), [channels], device)
                .reshape([1, channels, 1]);
            if config.snake_logscale { t.exp() } else { t }
        };
        let alpha = param("alpha");
        let beta = if config.activation == "snakebeta" {
            param("beta")
        } else {
            alpha.clone()
        };
        let filter =
            |n: &str| w.tensor::<B, 3>(&format!("{name}.{n}"), [1, 1, FILTER_TAPS], device);
        Self {
            alpha,
            inv_beta: (beta + 1e-9).recip(),
            up_filter: filter("upsample.filter"),
            down_filter: filter("downsample.lowpass.filter"),
        }
    }

    /// ×2 up, the activation, ×2 down, on `[b, c, t]`.
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, c, t] = x.dims();
        // Every channel is filtered alike: fold channels into the batch, one filter.
        let x = x.reshape([b * c, 1, t]);
        // UpSample1d(2, 12): replicate-pad 5, transposed conv stride 2, ×2, crop 15 each side.
        let pad = FILTER_TAPS / 2 - 1;
        let x = x.pad((pad, pad, 0, 0), PadMode::Edge);
        let x = conv_transpose1d(
            x,
            self.up_filter.clone(),
            None,
            ConvTransposeOptions::new([2], [0], [0], [1], 1),
        ) * 2.0;
        let crop = pad * 2 + (FILTER_TAPS - 2) / 2;
        let x = x.narrow(2, crop, 2 * t).reshape([b, c, 2 * t]);
        let sin = (x.clone() * self.alpha.clone()).sin();
        let x = x + sin.clone() * sin * self.inv_beta.clone();
        // DownSample1d(2, 12): replicate-pad 5 left and 6 right, low-pass, stride 2.
        let x = x
            .reshape([b * c, 1, 2 * t])
            .pad((FILTER_TAPS / 2 - 1, FILTER_TAPS / 2, 0, 0), PadMode::Edge);
        conv1d(
            x,
            self.down_filter.clone(),
            None,
            ConvOptions::new([2], [0], [1], 1),
        )
        .reshape([b, c, t])
    }
}

/// `AMPBlock1` (pairs of a dilated and a plain convolution) or `AMPBlock2` (dilated only).
#[derive(Debug, Clone)]
struct AmpBlock<B: Backend> {
    /// Per residual step: (activation, convolution) pairs applied in turn.
    steps: Vec<Vec<(Activation<B>, Conv1d<B>)>>,
}

impl<B: Backend> AmpBlock<B> {
    fn load(
        w: &Weights,
        name: &str,
        (channels, kernel, dilations): (usize, usize, &[usize]),
        config: &VocoderConfig,
        device: &B::Device,
    ) -> Self {
        let conv = |n: String, dilation: usize| {
            Conv1d::load(
                w,
                &n,
                [channels, channels, kernel],
                (dilation, Layout::ChannelFirst),
                (WeightForm::WeightNorm, true),
                device,
            )
        };
        let act = |i: usize| {
            Activation::load(
                w,
                &format!("{name}.activations.{i}"),
                channels,
                config,
                device,
            )
        };
        let steps = dilations
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                if config.resblock == "1" {
                    vec![
                        (act(2 * i), conv(format!("{name}.convs1.{i}"), d)),
                        (act(2 * i + 1), conv(format!("{name}.convs2.{i}"), 1)),
                    ]
                } else {
                    vec![(act(i), conv(format!("{name}.convs.{i}"), d))]
                }
            })
            .collect();
        Self { steps }
    }

    fn forward(&self, mut x: Tensor<B, 3>) -> Tensor<B, 3> {
        for step in &self.steps {
            let mut xt = x.clone();
            for (act, conv) in step {
                xt = conv.forward(act.forward(xt));
            }
            x = xt + x;
        }
        x
    }
}

/// One upsampling stage: a transposed convolution and its AMP blocks.
#[derive(Debug, Clone)]
struct Stage<B: Backend> {
    weight: Tensor<B, 3>,
    bias: Tensor<B, 1>,
    stride: usize,
    padding: usize,
    blocks: Vec<AmpBlock<B>>,
}

/// BigVGAN's generator.
#[derive(Debug, Clone)]
pub struct Vocoder<B: Backend> {
    config: VocoderConfig,
    conv_pre: Conv1d<B>,
    stages: Vec<Stage<B>>,
    activation_post: Activation<B>,
    conv_post: Conv1d<B>,
}

impl<B: Backend> Vocoder<B> {
    /// Loads a generator state dict (weight-normalised in either naming).
    pub fn load(w: &Weights, config: &VocoderConfig, device: &B::Device) -> Self {
        let c0 = config.upsample_initial_channel;
        let conv_pre = Conv1d::load(
            w,
            "conv_pre",
            [config.num_mels, c0, 7],
            (1, Layout::ChannelFirst),
            (WeightForm::WeightNorm, true),
            device,
        );
        let kernels = config.resblock_kernel_sizes.len();
        let stages = config
            .upsample_rates
            .iter()
            .zip(&config.upsample_kernel_sizes)
            .enumerate()
            .map(|(i, (&u, &k))| {
                let (c_in, c_out) = (c0 >> i, c0 >> (i + 1));
                let name = format!("ups.{i}.0");
                let blocks = (0..kernels)
                    .map(|j| {
                        AmpBlock::load(
                            w,
                            &format!("resblocks.{}", i * kernels + j),
                            (
                                c_out,
                                config.resblock_kernel_sizes[j],
                                &config.resblock_dilation_sizes[j],
                            ),
                            config,
                            device,
                        )
                    })
                    .collect();
                Stage {
                    weight: conv_weight(w, &name, [c_in, c_out, k], WeightForm::WeightNorm, device),
                    bias: w.tensor(&format!("{name}.bias"), [c_out], device),
                    stride: u,
                    padding: (k - u) / 2,
                    blocks,
                }
            })
            .collect();
        let ch = c0 >> config.upsample_rates.len();
        Self {
            config: config.clone(),
            conv_pre,
            stages,
            activation_post: Activation::load(w, "activation_post", ch, config, device),
            conv_post: Conv1d::load(
                w,
                "conv_post",
                [ch, 1, 7],
                (1, Layout::ChannelFirst),
                (WeightForm::WeightNorm, config.use_bias_at_final),
                device,
            ),
        }
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &VocoderConfig {
        &self.config
    }

    /// Mel `[b, mels, frames]` → waveform `[b, frames · hop]` in [−1, 1].
    pub fn forward(&self, mel: Tensor<B, 3>) -> Tensor<B, 2> {
        let mut x = self.conv_pre.forward(mel);
        for stage in &self.stages {
            x = conv_transpose1d(
                x,
                stage.weight.clone(),
                Some(stage.bias.clone()),
                ConvTransposeOptions::new([stage.stride], [stage.padding], [0], [1], 1),
            );
            let count = stage.blocks.len() as f64;
            let sum = stage
                .blocks
                .iter()
                .map(|block| block.forward(x.clone()))
                .reduce(|a, b| a + b)
                .expect("a stage has at least one block");
            x = sum / count;
        }
        let x = self.conv_post.forward(self.activation_post.forward(x));
        let x = if self.config.use_tanh_at_final {
            x.tanh()
        } else {
            x.clamp(-1.0, 1.0)
        };
        let [b, _, t] = x.dims();
        x.reshape([b, t])
    }
}
