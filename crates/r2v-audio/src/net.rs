//! The MMAudio network (upstream's `mmaudio/model/networks.py` and `transformer_layers.py`).
//!
//! The conditions are projected once per generation ([`Net::conditions`]): CLIP frame
//! features and text tokens to the model width (their means, projected again, join the
//! timestep in the global conditioning), Synchformer features (plus a learned position
//! within each 8-token segment) to the width and stretched to the audio's length by
//! nearest-exact interpolation. Each step ([`Net::flow`]) runs the joint blocks, where
//! audio, CLIP and text tokens attend together (audio and CLIP with rotary positions on a
//! shared time axis), then the fused audio-only blocks, then the final layer. The blocks
//! are adaLN-modulated: by the global conditioning, and for audio tokens by it plus that
//! token's Synchformer feature. The final layer takes the global conditioning only, as
//! upstream's does (its issue #55).

use crate::config::NetConfig;
use crate::layers::{Conv1d, Layout, Linear, Mlp, Projection, WeightForm, selu};
use burn::prelude::*;
use burn::tensor::activation::silu;
use r2v_wan::attention::{Kernel, Scale, attention, merge_heads};
use r2v_wan::layers::LayerNorm;
use r2v_wan::weights::Weights;

/// nn.LayerNorm's default epsilon.
const LN_EPS: f64 = 1e-5;

/// The blocks' parameter-free LayerNorm.
fn layer_norm<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    LayerNorm::plain(LN_EPS).forward(x)
}

/// `x · (1 + scale) + shift`.
fn modulate<B: Backend>(x: Tensor<B, 3>, shift: Tensor<B, 3>, scale: Tensor<B, 3>) -> Tensor<B, 3> {
    x * (scale + 1.0) + shift
}

/// Rotary tables for one sequence: `cos` and `sin` `[1, 1, len, head/2, 1]`.
#[derive(Debug, Clone)]
pub struct Rotary<B: Backend> {
    cos: Tensor<B, 5>,
    sin: Tensor<B, 5>,
}

impl<B: Backend> Rotary<B> {
    /// Upstream's `compute_rope_rotations(len, dim, 10000, freq_scaling)`, in f32.
    pub fn new(len: usize, dim: usize, freq_scaling: f32, device: &B::Device) -> Self {
        let half = dim / 2;
        let freqs: Vec<f32> = (0..half)
            .map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / dim as f32) * freq_scaling)
            .collect();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for pos in 0..len {
            for f in &freqs {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let table = |v: Vec<f32>| {
            Tensor::<B, 1>::from_data(TensorData::new(v, [len * half]), device)
                .reshape([1, 1, len, half, 1])
        };
        Self {
            cos: table(cos),
            sin: table(sin),
        }
    }

    /// Rotates adjacent pairs of `x` `[b, h, len, d]`.
    fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, n, d] = x.dims();
        let pairs = x.reshape([b, h, n, d / 2, 2]);
        let x0 = pairs.clone().narrow(4, 0, 1);
        let x1 = pairs.narrow(4, 1, 1);
        let out0 = self.cos.clone() * x0.clone() - self.sin.clone() * x1.clone();
        let out1 = self.sin.clone() * x0 + self.cos.clone() * x1;
        Tensor::cat(vec![out0, out1], 4).reshape([b, h, n, d])
    }
}

/// The rotary tables of one generation's lengths: audio at frequency scale 1, CLIP frames
/// stretched onto the audio's time axis (`latent_len / clip_len`).
#[derive(Debug, Clone)]
pub struct Rotations<B: Backend> {
    latent: Rotary<B>,
    clip: Rotary<B>,
}

/// The conditions after their projections (upstream's `PreprocessedConditions`).
#[derive(Debug, Clone)]
pub struct Conditions<B: Backend> {
    clip: Tensor<B, 3>,
    sync: Tensor<B, 3>,
    text: Tensor<B, 3>,
    clip_c: Tensor<B, 3>,
    text_c: Tensor<B, 3>,
}

impl<B: Backend> Conditions<B> {
    /// Repeats a batch-of-one condition `batch` times.
    fn expand(self, batch: usize) -> Self {
        let grow = |t: Tensor<B, 3>| {
            let [_, n, d] = t.dims();
            t.expand([batch, n, d])
        };
        Self {
            clip: grow(self.clip),
            sync: grow(self.sync),
            text: grow(self.text),
            clip_c: grow(self.clip_c),
            text_c: grow(self.text_c),
        }
    }

    /// The conditional and unconditional halves of a guided step, as one batch.
    pub fn stack(a: &Self, b: &Self) -> Self {
        let cat = |x: &Tensor<B, 3>, y: &Tensor<B, 3>| Tensor::cat(vec![x.clone(), y.clone()], 0);
        Self {
            clip: cat(&a.clip, &b.clip),
            sync: cat(&a.sync, &b.sync),
            text: cat(&a.text, &b.text),
            clip_c: cat(&a.clip_c, &b.clip_c),
            text_c: cat(&a.text_c, &b.text_c),
        }
    }
}

/// Self-attention's projections (`SelfAttention`): packed qkv, q/k RMS norms per head.
#[derive(Debug, Clone)]
struct Attention<B: Backend> {
    qkv: Linear<B>,
    q_norm: Tensor<B, 4>,
    k_norm: Tensor<B, 4>,
    heads: usize,
}

impl<B: Backend> Attention<B> {
    fn load(w: &Weights, name: &str, dim: usize, heads: usize, device: &B::Device) -> Self {
        let head = dim / heads;
        // Upstream splits qkv as `(h d j)`: reorder the rows to `(j h d)` once, here.
        let order: Vec<i64> = (0..3)
            .flat_map(|j| {
                (0..dim).map(move |c| ((c / head) * head * 3 + (c % head) * 3 + j) as i64)
            })
            .collect();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(order, [3 * dim]), device);
        let weight = w
            .tensor::<B, 2>(&format!("{name}.qkv.weight"), [3 * dim, dim], device)
            .select(0, index.clone());
        let bias = w
            .tensor::<B, 1>(&format!("{name}.qkv.bias"), [3 * dim], device)
            .select(0, index);
        let norm = |n: &str| {
            w.tensor::<B, 1>(&format!("{name}.{n}.weight"), [head], device)
                .reshape([1, 1, 1, head])
        };
        Self {
            qkv: Linear::from_parts(weight, Some(bias)),
            q_norm: norm("q_norm"),
            k_norm: norm("k_norm"),
            heads,
        }
    }

    /// `(q, k, v)` `[b, h, n, d]`, q and k normalised and rotated.
    fn project(&self, x: Tensor<B, 3>, rot: Option<&Rotary<B>>) -> [Tensor<B, 4>; 3] {
        let [b, n, _] = x.dims();
        let qkv = self.qkv.forward(x);
        let dim = qkv.dims()[2] / 3;
        let head = dim / self.heads;
        let split = |j: usize| {
            qkv.clone()
                .narrow(2, j * dim, dim)
                .reshape([b, n, self.heads, head])
                .swap_dims(1, 2)
        };
        let rms = |t: Tensor<B, 4>, weight: &Tensor<B, 4>| {
            let mean_square = t.clone().powi_scalar(2).mean_dim(3);
            t / (mean_square + f64::from(f32::EPSILON)).sqrt() * weight.clone()
        };
        let mut q = rms(split(0), &self.q_norm);
        let mut k = rms(split(1), &self.k_norm);
        if let Some(rot) = rot {
            q = rot.apply(q);
            k = rot.apply(k);
        }
        [q, k, split(2)]
    }
}

/// What `pre_attention` hands `post_attention`: the gates and the MLP's modulation.
struct Modulation<B: Backend> {
    gate_msa: Tensor<B, 3>,
    shift_mlp: Tensor<B, 3>,
    scale_mlp: Tensor<B, 3>,
    gate_mlp: Tensor<B, 3>,
}

/// `MMDitSingleBlock`: adaLN-modulated attention projections, and (unless `pre_only`) the
/// output projection and MLP.
#[derive(Debug, Clone)]
struct SingleBlock<B: Backend> {
    adaln: Linear<B>,
    attn: Attention<B>,
    /// `linear1`, `ffn`; absent in a pre-only block.
    post: Option<(Projection<B>, Mlp<B>)>,
}

impl<B: Backend> SingleBlock<B> {
    fn load(
        w: &Weights,
        name: &str,
        config: &NetConfig,
        (pre_only, kernel): (bool, usize),
        device: &B::Device,
    ) -> Self {
        let dim = config.hidden_dim;
        let chunks = if pre_only { 2 } else { 6 };
        let post = (!pre_only).then(|| {
            (
                Projection::load(
                    w,
                    &format!("{name}.linear1"),
                    [dim, dim, kernel],
                    true,
                    device,
                ),
                Mlp::load(
                    w,
                    &format!("{name}.ffn"),
                    dim,
                    (dim as f64 * config.mlp_ratio) as usize,
                    kernel,
                    device,
                ),
            )
        });
        Self {
            adaln: Linear::load(
                w,
                &format!("{name}.adaLN_modulation.1"),
                [dim, chunks * dim],
                true,
                device,
            ),
            attn: Attention::load(w, &format!("{name}.attn"), dim, config.num_heads, device),
            post,
        }
    }

    fn pre_attention(
        &self,
        x: Tensor<B, 3>,
        c: Tensor<B, 3>,
        rot: Option<&Rotary<B>>,
    ) -> ([Tensor<B, 4>; 3], Option<Modulation<B>>) {
        let m = self.adaln.forward(silu(c));
        let dim = m.dims()[2] / if self.post.is_some() { 6 } else { 2 };
        let chunk = |i: usize| m.clone().narrow(2, i * dim, dim);
        let x = modulate(layer_norm(x), chunk(0), chunk(1));
        let qkv = self.attn.project(x, rot);
        let modulation = self.post.as_ref().map(|_| Modulation {
            gate_msa: chunk(2),
            shift_mlp: chunk(3),
            scale_mlp: chunk(4),
            gate_mlp: chunk(5),
        });
        (qkv, modulation)
    }

    fn post_attention(
        &self,
        x: Tensor<B, 3>,
        attn_out: Tensor<B, 3>,
        modulation: Option<Modulation<B>>,
    ) -> Tensor<B, 3> {
        let (Some((linear1, ffn)), Some(m)) = (&self.post, modulation) else {
            return x;
        };
        let x = x + linear1.forward(attn_out) * m.gate_msa;
        let r = modulate(layer_norm(x.clone()), m.shift_mlp, m.scale_mlp);
        x + ffn.forward(r) * m.gate_mlp
    }
}

/// `JointBlock`: audio, CLIP and text tokens in one attention.
#[derive(Debug, Clone)]
struct JointBlock<B: Backend> {
    latent: SingleBlock<B>,
    clip: SingleBlock<B>,
    text: SingleBlock<B>,
}

/// The MMAudio network.
#[derive(Debug, Clone)]
pub struct Net<B: Backend> {
    config: NetConfig,
    kernel: Kernel,
    audio_in: (Conv1d<B>, Mlp<B>),
    clip_in: (Linear<B>, Mlp<B>),
    sync_in: (Conv1d<B>, Mlp<B>),
    text_in: (Linear<B>, Mlp<B>),
    clip_cond: Linear<B>,
    text_cond: Linear<B>,
    global_cond: Mlp<B>,
    sync_pos: Tensor<B, 4>,
    t_mlp: (Linear<B>, Linear<B>),
    t_freqs: Vec<f32>,
    joint: Vec<JointBlock<B>>,
    fused: Vec<SingleBlock<B>>,
    final_adaln: Linear<B>,
    final_conv: Conv1d<B>,
    latent_mean: Tensor<B, 3>,
    latent_std: Tensor<B, 3>,
    empty_text: Tensor<B, 3>,
    empty_clip: Tensor<B, 3>,
    empty_sync: Tensor<B, 3>,
}

impl<B: Backend> Net<B> {
    /// Loads every tensor of upstream's state dict (`latent_rot`, `clip_rot` and
    /// `t_embed.freqs` are computed, and ignored when present).
    pub fn load(w: &Weights, config: &NetConfig, kernel: Kernel, device: &B::Device) -> Self {
        let c = config;
        let d = c.hidden_dim;
        // v2 puts a SiLU between the input projections' two layers.
        let second = if c.v2 { 2 } else { 1 };
        // Upstream's `load_weights` drops these buffers when a checkpoint has them.
        let head = d / c.num_heads;
        let freq_size = if c.v2 { d } else { 256 };
        for (computed, shape) in [
            ("latent_rot", vec![1, c.latent_seq_len, head / 2, 2, 2]),
            ("clip_rot", vec![1, c.clip_seq_len, head / 2, 2, 2]),
            ("t_embed.freqs", vec![freq_size / 2]),
        ] {
            if w.contains(computed) {
                w.expect_shape(computed, &shape);
            }
        }
        let conv = |name: &str, d_in: usize, k: usize| {
            Conv1d::load(
                w,
                name,
                [d_in, d, k],
                (1, Layout::ChannelLast),
                (WeightForm::Plain, true),
                device,
            )
        };
        let joint_count = c.depth - c.fused_depth;
        let joint = (0..joint_count)
            .map(|i| {
                let name = format!("joint_blocks.{i}");
                let pre_only = i == joint_count - 1;
                JointBlock {
                    latent: SingleBlock::load(
                        w,
                        &format!("{name}.latent_block"),
                        c,
                        (false, 3),
                        device,
                    ),
                    clip: SingleBlock::load(
                        w,
                        &format!("{name}.clip_block"),
                        c,
                        (pre_only, 3),
                        device,
                    ),
                    text: SingleBlock::load(
                        w,
                        &format!("{name}.text_block"),
                        c,
                        (pre_only, 1),
                        device,
                    ),
                }
            })
            .collect();
        let fused = (0..c.fused_depth)
            .map(|i| SingleBlock::load(w, &format!("fused_blocks.{i}"), c, (false, 3), device))
            .collect();
        let freq_scale = if c.v2 { 10000f32 } else { 1.0 };
        let t_freqs = (0..freq_size / 2)
            .map(|i| freq_scale * (1.0 / 10000f32.powf((2 * i) as f32 / freq_size as f32)))
            .collect();
        Self {
            config: c.clone(),
            kernel,
            audio_in: (
                conv("audio_input_proj.0", c.latent_dim, 7),
                Mlp::load(w, "audio_input_proj.2", d, 4 * d, 7, device),
            ),
            clip_in: (
                Linear::load(w, "clip_input_proj.0", [c.clip_dim, d], true, device),
                Mlp::load(w, &format!("clip_input_proj.{second}"), d, 4 * d, 3, device),
            ),
            sync_in: (
                conv("sync_input_proj.0", c.sync_dim, 7),
                Mlp::load(w, "sync_input_proj.2", d, 4 * d, 3, device),
            ),
            text_in: (
                Linear::load(w, "text_input_proj.0", [c.text_dim, d], true, device),
                Mlp::load(w, &format!("text_input_proj.{second}"), d, 4 * d, 1, device),
            ),
            clip_cond: Linear::load(w, "clip_cond_proj", [d, d], true, device),
            text_cond: Linear::load(w, "text_cond_proj", [d, d], true, device),
            global_cond: Mlp::load(w, "global_cond_mlp", d, 4 * d, 1, device),
            sync_pos: w.tensor("sync_pos_emb", [1, 1, 8, c.sync_dim], device),
            t_mlp: (
                Linear::load(w, "t_embed.mlp.0", [freq_size, d], true, device),
                Linear::load(w, "t_embed.mlp.2", [d, d], true, device),
            ),
            t_freqs,
            joint,
            fused,
            final_adaln: Linear::load(
                w,
                "final_layer.adaLN_modulation.1",
                [d, 2 * d],
                true,
                device,
            ),
            final_conv: Conv1d::load(
                w,
                "final_layer.conv",
                [d, c.latent_dim, 7],
                (1, Layout::ChannelLast),
                (WeightForm::Plain, true),
                device,
            ),
            latent_mean: w.tensor("latent_mean", [1, 1, c.latent_dim], device),
            latent_std: w.tensor("latent_std", [1, 1, c.latent_dim], device),
            empty_text: w
                .tensor::<B, 2>("empty_string_feat", [c.text_seq_len, c.text_dim], device)
                .unsqueeze(),
            empty_clip: w
                .tensor::<B, 2>("empty_clip_feat", [1, c.clip_dim], device)
                .unsqueeze(),
            empty_sync: w
                .tensor::<B, 2>("empty_sync_feat", [1, c.sync_dim], device)
                .unsqueeze(),
        }
    }

    /// The constructor arguments.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The rotary tables for `latent_len` audio tokens and `clip_len` CLIP frames.
    pub fn rotations(
        &self,
        latent_len: usize,
        clip_len: usize,
        device: &B::Device,
    ) -> Rotations<B> {
        let head = self.config.hidden_dim / self.config.num_heads;
        Rotations {
            latent: Rotary::new(latent_len, head, 1.0, device),
            clip: Rotary::new(clip_len, head, latent_len as f32 / clip_len as f32, device),
        }
    }

    /// `preprocess_conditions`: `clip_f [b, clip, clip_dim]`, `sync_f [b, sync, sync_dim]`
    /// (a multiple of 8 tokens), `text_f [b, text, text_dim]`, for `latent_len` tokens.
    pub fn conditions(
        &self,
        clip_f: Tensor<B, 3>,
        sync_f: Tensor<B, 3>,
        text_f: Tensor<B, 3>,
        latent_len: usize,
    ) -> Conditions<B> {
        let [b, s, sd] = sync_f.dims();
        let sync = (sync_f.reshape([b, s / 8, 8, sd]) + self.sync_pos.clone()).reshape([b, s, sd]);
        let act = |x: Tensor<B, 3>| if self.config.v2 { silu(x) } else { selu(x) };
        let clip = self.clip_in.0.forward(clip_f);
        let clip = self
            .clip_in
            .1
            .forward(if self.config.v2 { silu(clip) } else { clip });
        let sync = self
            .sync_in
            .1
            .forward(act(self.sync_in.0.forward_channel_last(sync)));
        let text = self.text_in.0.forward(text_f);
        let text = self
            .text_in
            .1
            .forward(if self.config.v2 { silu(text) } else { text });
        let sync = nearest_exact(sync, latent_len);
        let clip_c = self.clip_cond.forward(clip.clone().mean_dim(1));
        let text_c = self.text_cond.forward(text.clone().mean_dim(1));
        Conditions {
            clip,
            sync,
            text,
            clip_c,
            text_c,
        }
    }

    /// `get_empty_conditions`: the learned "no video" features and, as the text, the
    /// negative prompt's features (`[b, text, text_dim]`) or the empty string's.
    pub fn empty_conditions(
        &self,
        batch: usize,
        negative_text: Option<Tensor<B, 3>>,
        (latent_len, clip_len, sync_len): (usize, usize, usize),
    ) -> Conditions<B> {
        let [_, _, cd] = self.empty_clip.dims();
        let [_, _, sd] = self.empty_sync.dims();
        let clip = self.empty_clip.clone().expand([1, clip_len, cd]);
        let sync = self.empty_sync.clone().expand([1, sync_len, sd]);
        let text = negative_text.unwrap_or_else(|| self.empty_text.clone());
        // Projected per tensor (clip and sync at batch 1, the text at its own), then repeated.
        self.conditions(clip, sync, text, latent_len).expand(batch)
    }

    /// Upstream's `get_empty_{clip,sync,string}_sequence`: the learned "no video" features
    /// and the empty prompt's text features, for a batch.
    pub fn empty_features(
        &self,
        batch: usize,
        (clip_len, sync_len): (usize, usize),
    ) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
        let [_, _, cd] = self.empty_clip.dims();
        let [_, _, sd] = self.empty_sync.dims();
        let [_, tl, td] = self.empty_text.dims();
        (
            self.empty_clip.clone().expand([batch, clip_len, cd]),
            self.empty_sync.clone().expand([batch, sync_len, sd]),
            self.empty_text.clone().expand([batch, tl, td]),
        )
    }

    /// The timestep embedding `[b, 1, d]` of `t` `[b]`.
    fn t_embed(&self, t: Tensor<B, 1>) -> Tensor<B, 3> {
        let [b] = t.dims();
        let half = self.t_freqs.len();
        let freqs =
            Tensor::<B, 1>::from_data(TensorData::new(self.t_freqs.clone(), [half]), &t.device())
                .reshape([1, 1, half]);
        let args = t.reshape([b, 1, 1]) * freqs;
        let emb = Tensor::cat(vec![args.clone().cos(), args.sin()], 2);
        self.t_mlp.1.forward(silu(self.t_mlp.0.forward(emb)))
    }

    /// `predict_flow`: the velocity `[b, n, latent_dim]` at `latent` `[b, n, latent_dim]`, `t` `[b]`.
    pub fn flow(
        &self,
        latent: Tensor<B, 3>,
        t: Tensor<B, 1>,
        c: &Conditions<B>,
        rot: &Rotations<B>,
    ) -> Tensor<B, 3> {
        let mut latent = self.audio_in.0.forward_channel_last(latent);
        latent = self.audio_in.1.forward(if self.config.v2 {
            silu(latent)
        } else {
            selu(latent)
        });
        let global = self
            .global_cond
            .forward(c.clip_c.clone() + c.text_c.clone());
        let global = self.t_embed(t) + global;
        let extended = global.clone() + c.sync.clone();
        let (mut clip, mut text) = (c.clip.clone(), c.text.clone());
        for block in &self.joint {
            let (xq, xm) =
                block
                    .latent
                    .pre_attention(latent.clone(), extended.clone(), Some(&rot.latent));
            let (cq, cm) = block
                .clip
                .pre_attention(clip.clone(), global.clone(), Some(&rot.clip));
            let (tq, tm) = block.text.pre_attention(text.clone(), global.clone(), None);
            let (nl, nc) = (latent.dims()[1], clip.dims()[1]);
            let [q, k, v] = [0, 1, 2]
                .map(|i| Tensor::cat(vec![xq[i].clone(), cq[i].clone(), tq[i].clone()], 2));
            let out = merge_heads(attention(self.kernel, q, k, v, None, Scale::Default));
            let nt = out.dims()[1] - nl - nc;
            latent = block
                .latent
                .post_attention(latent, out.clone().narrow(1, 0, nl), xm);
            clip = block
                .clip
                .post_attention(clip, out.clone().narrow(1, nl, nc), cm);
            text = block
                .text
                .post_attention(text, out.narrow(1, nl + nc, nt), tm);
        }
        for block in &self.fused {
            let (qkv, m) = block.pre_attention(latent.clone(), extended.clone(), Some(&rot.latent));
            let [q, k, v] = qkv;
            let out = merge_heads(attention(self.kernel, q, k, v, None, Scale::Default));
            latent = block.post_attention(latent, out, m);
        }
        let m = self.final_adaln.forward(silu(global));
        let d = m.dims()[2] / 2;
        let x = modulate(
            layer_norm(latent),
            m.clone().narrow(2, 0, d),
            m.narrow(2, d, d),
        );
        self.final_conv.forward_channel_last(x)
    }

    /// `forward`: conditions and one velocity, at the inputs' own lengths.
    pub fn forward(
        &self,
        latent: Tensor<B, 3>,
        (clip_f, sync_f, text_f): (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>),
        t: Tensor<B, 1>,
    ) -> Tensor<B, 3> {
        let device = latent.device();
        let n = latent.dims()[1];
        let rot = self.rotations(n, clip_f.dims()[1], &device);
        let c = self.conditions(clip_f, sync_f, text_f, n);
        self.flow(latent, t, &c, &rot)
    }

    /// `x · std + mean`: a sampled latent in the VAE's units.
    pub fn unnormalize(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        x * self.latent_std.clone() + self.latent_mean.clone()
    }
}

/// `F.interpolate(mode="nearest-exact")` along the tokens of `[b, n, d]` to `len` tokens.
fn nearest_exact<B: Backend>(x: Tensor<B, 3>, len: usize) -> Tensor<B, 3> {
    let n = x.dims()[1];
    let scale = n as f32 / len as f32;
    let index: Vec<i64> = (0..len)
        .map(|i| (((i as f32 + 0.5) * scale).floor() as usize).min(n - 1) as i64)
        .collect();
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [len]), &x.device());
    x.select(1, index)
}
