//! The Wan DiT, `WanTransformer3DModel` and `WanVACETransformer3DModel` of diffusers
//! (`models/transformers/transformer_wan.py`, `transformer_wan_vace.py`), exactly as
//! MODEL.md §1.2 describes: 3-axis interleaved RoPE, a (1,2,2) patch embedding, the
//! cos-first timestep embedding, text (and, for I2V, CLIP image) embeddings, blocks with
//! six-way modulation, and the head. Per-token timesteps (TI2V-5B) and VACE hints are
//! supported.
//!
//! Precision follows diffusers: in f32 everything is f32; in bf16 the linear layers,
//! convolutions, attention and the residual stream are bf16, while the parameters diffusers
//! keeps in f32 (`_keep_in_fp32_modules`: the time embedder, the modulation tables, the
//! block norms) stay f32 and the timestep MLP, LayerNorms, modulation, gated residual
//! updates and RoPE products are computed in f32 and rounded once to bf16. The output is
//! handed back in f32.
//!
//! Start at [`WanTransformer::forward`].

use crate::attention::{Kernel, Scale, attention, merge_heads, split_heads};
use crate::config::TransformerConfig;
use crate::layers::{LayerNorm, Linear, RmsNorm, gelu_tanh};
use crate::weights::Weights;
use crate::{Precision, WanError};
use burn::prelude::*;
use burn::tensor::activation::{gelu, silu};
use burn::tensor::module::conv3d;
use burn::tensor::ops::ConvOptions;

/// What the DiT conditions on, beside the latent.
pub struct Conditioning<B: Backend> {
    /// Diffusion time: `[batch]`, or `[batch, tokens]` for per-token timesteps.
    pub timestep: TimestepInput<B>,
    /// Text encoder output `[batch, text tokens, text_dim]` (zero-padded as the pipeline pads it).
    pub text: Tensor<B, 3>,
    /// CLIP image tokens `[batch, n, image_dim]` (I2V models).
    pub image: Option<Tensor<B, 3>>,
    /// VACE control latent `[batch, vace_in, frames, h, w]` and one scale per VACE block.
    pub control: Option<(Tensor<B, 5>, Vec<f32>)>,
}

/// A timestep per sample, or per token.
#[derive(Clone)]
pub enum TimestepInput<B: Backend> {
    /// `[batch]`.
    PerSample(Tensor<B, 1>),
    /// `[batch, tokens]` (TI2V-5B).
    PerToken(Tensor<B, 2>),
}

/// Self- or cross-attention with RMS-normed q and k.
struct Attention<B: Backend> {
    to_q: Linear<B>,
    to_k: Linear<B>,
    to_v: Linear<B>,
    to_out: Linear<B>,
    norm_q: RmsNorm<B>,
    norm_k: RmsNorm<B>,
    /// I2V: keys and values of the image tokens.
    added: Option<(Linear<B>, Linear<B>, RmsNorm<B>)>,
    heads: usize,
}

impl<B: Backend> Attention<B> {
    fn load(
        w: &Weights,
        name: &str,
        c: &TransformerConfig,
        added_kv: Option<usize>,
        device: &B::Device,
    ) -> Self {
        let dim = c.dim();
        let linear = |n: &str| Linear::load(w, &format!("{name}.{n}"), dim, dim, device);
        Self {
            to_q: linear("to_q"),
            to_k: linear("to_k"),
            to_v: linear("to_v"),
            to_out: linear("to_out.0"),
            norm_q: RmsNorm::load(w, &format!("{name}.norm_q"), dim, c.eps, device),
            norm_k: RmsNorm::load(w, &format!("{name}.norm_k"), dim, c.eps, device),
            added: added_kv.map(|kv| {
                (
                    Linear::load(w, &format!("{name}.add_k_proj"), kv, dim, device),
                    Linear::load(w, &format!("{name}.add_v_proj"), kv, dim, device),
                    RmsNorm::load(w, &format!("{name}.norm_added_k"), dim, c.eps, device),
                )
            }),
            heads: c.num_attention_heads,
        }
    }

    /// `[b, l, dim]` → `[b, heads, l, head_dim]`, with RoPE when given.
    fn heads(&self, x: Tensor<B, 3>, rope: Option<&Rope<B>>) -> Tensor<B, 4> {
        let x = split_heads(x, self.heads);
        match rope {
            Some(rope) => rope.apply(x),
            None => x,
        }
    }

    fn forward(
        &self,
        x: Tensor<B, 3>,
        context: Option<&Tensor<B, 3>>,
        image: Option<&Tensor<B, 3>>,
        rope: Option<&Rope<B>>,
        kernel: Kernel,
    ) -> Tensor<B, 3> {
        let source = context.cloned().unwrap_or_else(|| x.clone());
        let q = self.heads(self.norm_q.forward(self.to_q.forward(x)), rope);
        let k = self.heads(self.norm_k.forward(self.to_k.forward(source.clone())), rope);
        let v = self.heads(self.to_v.forward(source), None);
        let mut out = attention(kernel, q.clone(), k, v, None, Scale::Default);
        if let (Some((add_k, add_v, norm_added_k)), Some(image)) = (&self.added, image) {
            let k = self.heads(norm_added_k.forward(add_k.forward(image.clone())), None);
            let v = self.heads(add_v.forward(image.clone()), None);
            out = out + attention(kernel, q, k, v, None, Scale::Default);
        }
        self.to_out.forward(merge_heads(out))
    }
}

/// Linear → GELU(tanh) → Linear.
struct FeedForward<B: Backend> {
    up: Linear<B>,
    down: Linear<B>,
}

impl<B: Backend> FeedForward<B> {
    fn load(w: &Weights, name: &str, dim: usize, hidden: usize, device: &B::Device) -> Self {
        Self {
            up: Linear::load(w, &format!("{name}.net.0.proj"), dim, hidden, device),
            down: Linear::load(w, &format!("{name}.net.2"), hidden, dim, device),
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.down.forward(gelu_tanh(self.up.forward(x)))
    }
}

/// Parameters diffusers keeps in f32 when the model runs in half precision (a name
/// matches when one of its dot-separated segments is in the list).
const KEEP_IN_F32: [&str; 5] = [
    "time_embedder",
    "scale_shift_table",
    "norm1",
    "norm2",
    "norm3",
];

/// The six modulation vectors of a block, each `[batch, 1 or tokens, dim]` (f32).
struct Modulation<B: Backend> {
    shift: Tensor<B, 3>,
    scale: Tensor<B, 3>,
    gate: Tensor<B, 3>,
    c_shift: Tensor<B, 3>,
    c_scale: Tensor<B, 3>,
    c_gate: Tensor<B, 3>,
}

/// `table [1, n, dim]` + `proj [b, lm, n, dim]` in f32, split along `n` into `[b, lm, dim]`
/// pieces.
fn modulate<B: Backend>(table: &Tensor<B, 3>, proj: &Tensor<B, 4>) -> Vec<Tensor<B, 3>> {
    let [b, lm, n, dim] = proj.dims();
    let sum = Precision::F32.apply(proj.clone())
        + Precision::F32.apply(table.clone()).unsqueeze_dim::<4>(0);
    (0..n)
        .map(|i| sum.clone().narrow(2, i, 1).reshape([b, lm, dim]))
        .collect()
}

/// One transformer block (also the body of a VACE block).
struct Block<B: Backend> {
    attn1: Attention<B>,
    attn2: Attention<B>,
    ffn: FeedForward<B>,
    norm: LayerNorm<B>,
    cross_norm: LayerNorm<B>,
    table: Tensor<B, 3>,
}

impl<B: Backend> Block<B> {
    fn load(w: &Weights, name: &str, c: &TransformerConfig, device: &B::Device) -> Self {
        let dim = c.dim();
        Self {
            attn1: Attention::load(w, &format!("{name}.attn1"), c, None, device),
            attn2: Attention::load(w, &format!("{name}.attn2"), c, c.added_kv_proj_dim, device),
            ffn: FeedForward::load(w, &format!("{name}.ffn"), dim, c.ffn_dim, device),
            norm: LayerNorm::plain(c.eps),
            cross_norm: if c.cross_attn_norm {
                LayerNorm::load(w, &format!("{name}.norm2"), dim, c.eps, device)
            } else {
                LayerNorm::plain(c.eps)
            },
            table: w.tensor::<B, 3>(&format!("{name}.scale_shift_table"), [1, 6, dim], device),
        }
    }

    fn forward(&self, x: Tensor<B, 3>, ctx: &BlockContext<B>) -> Tensor<B, 3> {
        let _span = tracing::trace_span!("wan_block").entered();
        let m = modulate(&self.table, &ctx.timestep_proj);
        let m = Modulation {
            shift: m[0].clone(),
            scale: m[1].clone(),
            gate: m[2].clone(),
            c_shift: m[3].clone(),
            c_scale: m[4].clone(),
            c_gate: m[5].clone(),
        };
        // The stream's precision; modulation and gated updates are f32, rounded once.
        let stream = Precision::of(&x);
        let f32 = |t: Tensor<B, 3>| Precision::F32.apply(t);
        let h = stream.apply(self.norm.forward(x.clone()) * (m.scale + 1.0) + m.shift);
        let attended = self
            .attn1
            .forward(h, None, None, Some(&ctx.rope), ctx.attention);
        let x = stream.apply(f32(x) + f32(attended) * m.gate);
        let h = stream.apply(self.cross_norm.forward(x.clone()));
        let x = x.clone()
            + self
                .attn2
                .forward(h, Some(&ctx.text), ctx.image.as_ref(), None, ctx.attention);
        let h = stream.apply(self.norm.forward(x.clone()) * (m.c_scale + 1.0) + m.c_shift);
        let fed = self.ffn.forward(h);
        stream.apply(f32(x) + f32(fed) * m.c_gate)
    }
}

/// What every block needs beside its input.
struct BlockContext<B: Backend> {
    timestep_proj: Tensor<B, 4>,
    text: Tensor<B, 3>,
    image: Option<Tensor<B, 3>>,
    rope: Rope<B>,
    attention: Kernel,
}

/// A VACE block: a block over the control stream, with input and output projections.
struct VaceBlock<B: Backend> {
    proj_in: Option<Linear<B>>,
    block: Block<B>,
    proj_out: Linear<B>,
}

/// The VACE branch: its patch embedding (weight, bias) and blocks.
struct Vace<B: Backend> {
    patch_weight: Tensor<B, 5>,
    patch_bias: Tensor<B, 1>,
    blocks: Vec<VaceBlock<B>>,
}

/// CLIP image tokens → model width (I2V).
struct ImageEmbedder<B: Backend> {
    norm1: LayerNorm<B>,
    up: Linear<B>,
    down: Linear<B>,
    norm2: LayerNorm<B>,
}

impl<B: Backend> ImageEmbedder<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let stream = Precision::of(&x);
        let x = stream.apply(self.norm1.forward(x));
        let x = self.down.forward(gelu(self.up.forward(x)));
        stream.apply(self.norm2.forward(x))
    }
}

/// Per-token cos/sin of the three-axis rotary embedding, one row of `tokens × head_dim/2`
/// values shared by every head, in f32 (computed in f64, as diffusers).
pub struct Rope<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
}

impl<B: Backend> Rope<B> {
    /// Tables for a `frames × height × width` token grid.
    pub fn new(head_dim: usize, grid: [usize; 3], device: &B::Device) -> Self {
        let h_dim = 2 * (head_dim / 6);
        let t_dim = head_dim - 2 * h_dim;
        let axis = |dim: usize, pos: usize| -> Vec<f64> {
            (0..dim / 2)
                .map(|i| pos as f64 / 10000f64.powf((2 * i) as f64 / dim as f64))
                .collect()
        };
        let [f, h, w] = grid;
        let mut cos = Vec::with_capacity(f * h * w * head_dim / 2);
        let mut sin = Vec::with_capacity(cos.capacity());
        for fi in 0..f {
            for hi in 0..h {
                for wi in 0..w {
                    for angle in axis(t_dim, fi)
                        .into_iter()
                        .chain(axis(h_dim, hi))
                        .chain(axis(h_dim, wi))
                    {
                        cos.push(angle.cos() as f32);
                        sin.push(angle.sin() as f32);
                    }
                }
            }
        }
        let shape = [1, f * h * w * (head_dim / 2)];
        Self {
            cos: Precision::F32.apply(Tensor::from_data(TensorData::new(cos, shape), device)),
            sin: Precision::F32.apply(Tensor::from_data(TensorData::new(sin, shape), device)),
        }
    }

    /// Rotates adjacent pairs `(x[2i], x[2i+1])` of `[b, heads, l, head_dim]` in f32, rounded
    /// once to `x`'s precision, and answers them half-split: `[first of every pair | second
    /// of every pair]`. That is a fixed permutation of each head's channels: applied to q and
    /// k alike, it leaves every q·k, so the attention, unchanged, and it saves interleaving
    /// the halves back (a copy of one element at a time).
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, l, d] = x.dims();
        let stream = Precision::of(&x);
        let pairs = Precision::F32.apply(x).reshape([b, h, l, d / 2, 2]);
        // Rows of one head's `l × d/2` values, so that the tables broadcast as one row.
        let x1 = pairs.clone().narrow(4, 0, 1).reshape([b * h, l * d / 2]);
        let x2 = pairs.narrow(4, 1, 1).reshape([b * h, l * d / 2]);
        let out1 = x1.clone() * self.cos.clone() - x2.clone() * self.sin.clone();
        let out2 = x1 * self.sin.clone() + x2 * self.cos.clone();
        let half = |t: Tensor<B, 2>| t.reshape([b, h, l, d / 2]);
        stream.apply(Tensor::cat(vec![half(out1), half(out2)], 3))
    }
}

/// `[cos(t·ω_k) | sin(t·ω_k)]`, ω_k = 10000^(−k/half), in f32 as diffusers computes it.
pub fn timestep_features(timesteps: &[f32], freq_dim: usize) -> Vec<f32> {
    let half = freq_dim / 2;
    let log_period = -(10000f32.ln());
    let omegas: Vec<f32> = (0..half)
        .map(|k| (log_period * k as f32 / half as f32).exp())
        .collect();
    let mut out = Vec::with_capacity(timesteps.len() * freq_dim);
    for &t in timesteps {
        out.extend(omegas.iter().map(|w| (t * w).cos()));
        out.extend(omegas.iter().map(|w| (t * w).sin()));
    }
    out
}

/// The Wan DiT.
pub struct WanTransformer<B: Backend> {
    config: TransformerConfig,
    patch_weight: Tensor<B, 5>,
    patch_bias: Tensor<B, 1>,
    time_1: Linear<B>,
    time_2: Linear<B>,
    time_proj: Linear<B>,
    text_1: Linear<B>,
    text_2: Linear<B>,
    image: Option<ImageEmbedder<B>>,
    blocks: Vec<Block<B>>,
    vace: Option<Vace<B>>,
    head_table: Tensor<B, 3>,
    proj_out: Linear<B>,
    attention: Kernel,
}

impl<B: Backend> WanTransformer<B> {
    /// Loads every weight of `config` from `weights`; every missing, misshapen or
    /// unexpected key is named in one error.
    pub fn load(
        config: TransformerConfig,
        weights: Weights,
        device: &B::Device,
    ) -> Result<Self, WanError> {
        let c = &config;
        let dim = c.dim();
        let weights = weights.keeping_f32(&KEEP_IN_F32);
        let w = &weights;
        let [pt, ph, pw] = c.patch_size;
        let image = c.image_dim.map(|image_dim| ImageEmbedder {
            norm1: LayerNorm::load(
                w,
                "condition_embedder.image_embedder.norm1",
                image_dim,
                1e-5,
                device,
            ),
            up: Linear::load(
                w,
                "condition_embedder.image_embedder.ff.net.0.proj",
                image_dim,
                image_dim,
                device,
            ),
            down: Linear::load(
                w,
                "condition_embedder.image_embedder.ff.net.2",
                image_dim,
                dim,
                device,
            ),
            norm2: LayerNorm::load(
                w,
                "condition_embedder.image_embedder.norm2",
                dim,
                1e-5,
                device,
            ),
        });
        let vace = match (&c.vace_layers, c.vace_in_channels) {
            (Some(layers), Some(vace_in)) => Some(Vace {
                patch_weight: w.tensor::<B, 5>(
                    "vace_patch_embedding.weight",
                    [dim, vace_in, pt, ph, pw],
                    device,
                ),
                patch_bias: w.tensor::<B, 1>("vace_patch_embedding.bias", [dim], device),
                blocks: (0..layers.len())
                    .map(|i| {
                        let name = format!("vace_blocks.{i}");
                        VaceBlock {
                            proj_in: (i == 0).then(|| {
                                Linear::load(w, &format!("{name}.proj_in"), dim, dim, device)
                            }),
                            block: Block::load(w, &name, c, device),
                            proj_out: Linear::load(
                                w,
                                &format!("{name}.proj_out"),
                                dim,
                                dim,
                                device,
                            ),
                        }
                    })
                    .collect(),
            }),
            _ => None,
        };
        let model = Self {
            patch_weight: w.tensor::<B, 5>(
                "patch_embedding.weight",
                [dim, c.in_channels, pt, ph, pw],
                device,
            ),
            patch_bias: w.tensor::<B, 1>("patch_embedding.bias", [dim], device),
            time_1: Linear::load(
                w,
                "condition_embedder.time_embedder.linear_1",
                c.freq_dim,
                dim,
                device,
            ),
            time_2: Linear::load(
                w,
                "condition_embedder.time_embedder.linear_2",
                dim,
                dim,
                device,
            ),
            time_proj: Linear::load(w, "condition_embedder.time_proj", dim, 6 * dim, device),
            text_1: Linear::load(
                w,
                "condition_embedder.text_embedder.linear_1",
                c.text_dim,
                dim,
                device,
            ),
            text_2: Linear::load(
                w,
                "condition_embedder.text_embedder.linear_2",
                dim,
                dim,
                device,
            ),
            image,
            blocks: (0..c.num_layers)
                .map(|i| Block::load(w, &format!("blocks.{i}"), c, device))
                .collect(),
            vace,
            head_table: w.tensor::<B, 3>("scale_shift_table", [1, 2, dim], device),
            proj_out: Linear::load(w, "proj_out", dim, c.out_channels * pt * ph * pw, device),
            attention: Kernel::default(),
            config,
        };
        weights.finish()?;
        Ok(model)
    }

    /// Runs attention with `kernel` (see [`crate::attention`]).
    pub fn with_attention(mut self, kernel: Kernel) -> Self {
        self.attention = kernel;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TransformerConfig {
        &self.config
    }

    fn patchify(
        weight: &Tensor<B, 5>,
        bias: &Tensor<B, 1>,
        x: Tensor<B, 5>,
        patch: [usize; 3],
    ) -> Tensor<B, 3> {
        let y = conv3d(
            x,
            weight.clone(),
            Some(bias.clone()),
            ConvOptions::new(patch, [0, 0, 0], [1, 1, 1], 1),
        );
        let [b, d, f, h, w] = y.dims();
        y.reshape([b, d, f * h * w]).swap_dims(1, 2)
    }

    /// The velocity (f32) for latent `x` `[batch, in_channels, frames, height, width]`.
    pub fn forward(
        &self,
        x: Tensor<B, 5>,
        cond: Conditioning<B>,
    ) -> Result<Tensor<B, 5>, WanError> {
        let c = &self.config;
        let [b, _, f, h, w] = x.dims();
        let [pt, ph, pw] = c.patch_size;
        if f % pt != 0 || h % ph != 0 || w % pw != 0 {
            return Err(WanError::Shape(format!(
                "latent {f}x{h}x{w} is not divisible by the patch {pt}x{ph}x{pw}"
            )));
        }
        let grid = [f / pt, h / ph, w / pw];
        let tokens = grid.iter().product::<usize>();
        let device = x.device();
        let dim = c.dim();
        // Inputs may come in f32; everything inside runs in the weights' precision.
        let precision = Precision::of(&self.patch_bias);
        let x = precision.apply(x);
        let cond = Conditioning {
            timestep: cond.timestep,
            text: precision.apply(cond.text),
            image: cond.image.map(|t| precision.apply(t)),
            control: cond.control.map(|(t, s)| (precision.apply(t), s)),
        };

        let hidden = Self::patchify(&self.patch_weight, &self.patch_bias, x, c.patch_size);
        // Time: [b, lm, dim] with lm = 1 (one timestep per sample) or the token count.
        let (times, lm) = match &cond.timestep {
            TimestepInput::PerSample(t) => {
                (t.clone().into_data().convert::<f32>().to_vec::<f32>(), 1)
            }
            TimestepInput::PerToken(t) => (
                t.clone().into_data().convert::<f32>().to_vec::<f32>(),
                tokens,
            ),
        };
        let times = times.map_err(|e| WanError::Shape(format!("timestep: {e:?}")))?;
        if times.len() != b * lm {
            return Err(WanError::Shape(format!(
                "{} timesteps for {b} samples of {tokens} tokens",
                times.len()
            )));
        }
        // The timestep MLP runs in f32 (its weights are kept in f32); `temb` is then rounded
        // to the stream's precision, as diffusers' `type_as(encoder_hidden_states)`.
        let features = Precision::F32.apply(Tensor::<B, 3>::from_data(
            TensorData::new(timestep_features(&times, c.freq_dim), [b, lm, c.freq_dim]),
            &device,
        ));
        let temb = precision.apply(self.time_2.forward(silu(self.time_1.forward(features))));
        let timestep_proj = self
            .time_proj
            .forward(silu(temb.clone()))
            .reshape([b, lm, 6, dim]);
        let text = self
            .text_2
            .forward(gelu_tanh(self.text_1.forward(cond.text)));
        let image = match (&self.image, cond.image) {
            (Some(embedder), Some(image)) => Some(embedder.forward(image)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(WanError::Shape("this I2V model needs image tokens".into()));
            }
            (None, Some(_)) => {
                return Err(WanError::Shape("this model takes no image tokens".into()));
            }
        };
        let ctx = BlockContext {
            timestep_proj,
            text,
            image,
            rope: Rope::new(c.attention_head_dim, grid, &device),
            attention: self.attention,
        };

        let mut hints = match (&self.vace, cond.control) {
            (Some(vace), Some((control, scales))) => {
                let blocks = &vace.blocks;
                if scales.len() != blocks.len() {
                    return Err(WanError::Shape(format!(
                        "{} control scales for {} VACE blocks",
                        scales.len(),
                        blocks.len()
                    )));
                }
                let mut stream =
                    Self::patchify(&vace.patch_weight, &vace.patch_bias, control, c.patch_size);
                let mut hints = Vec::with_capacity(blocks.len());
                for (block, scale) in blocks.iter().zip(scales) {
                    if let Some(proj_in) = &block.proj_in {
                        stream = proj_in.forward(stream) + hidden.clone();
                    }
                    stream = block.block.forward(stream, &ctx);
                    hints.push(block.proj_out.forward(stream.clone()) * scale);
                }
                hints.reverse();
                hints
            }
            (None, None) => Vec::new(),
            (Some(_), None) => {
                return Err(WanError::Shape(
                    "this VACE model needs control_hidden_states".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(WanError::Shape("this model takes no VACE control".into()));
            }
        };

        let vace_layers = c.vace_layers.clone().unwrap_or_default();
        let mut hidden = hidden;
        for (i, block) in self.blocks.iter().enumerate() {
            hidden = block.forward(hidden, &ctx);
            if vace_layers.contains(&i)
                && let Some(hint) = hints.pop()
            {
                hidden = hidden + hint;
            }
        }

        let m = modulate(
            &self.head_table,
            &temb.unsqueeze_dim::<4>(2).repeat_dim(2, 2),
        );
        let hidden = precision
            .apply(LayerNorm::plain(c.eps).forward(hidden) * (m[1].clone() + 1.0) + m[0].clone());
        let out = self.proj_out.forward(hidden);
        let [gf, gh, gw] = grid;
        let out = out
            .reshape([b * gf * gh * gw, pt * ph * pw * c.out_channels])
            .reshape([b, gf, gh, gw, pt, ph, pw, c.out_channels])
            .permute([0, 7, 1, 4, 2, 5, 3, 6])
            .reshape([b, c.out_channels, gf * pt, gh * ph, gw * pw]);
        Ok(Precision::F32.apply(out))
    }
}
