//! Synchformer's visual encoder (`mmaudio/ext/synchformer`: a MotionFormer ViT with divided
//! space-time attention, factorised to per-frame features), which gives MMAudio its
//! audio-visual timing: 16-frame segments of 25 fps video at 224 px in [−1, 1] → 8
//! features per segment.
//!
//! Tubelets of 2 frames × 16 × 16 px are embedded (a Conv3d with kernel = stride, done as
//! one matrix product), a class token is prepended; each patch gets its spatial position
//! plus its time step's embedding (the class token its own position only). Each block runs
//! time attention (every patch with the same spatial position across the 8 time steps),
//! then space attention (every patch of a time step), then the MLP, each pre-LN (ε 1e-6)
//! with a residual; in both attentions the class token attends to every token and is a
//! key/value of every group. The class token is dropped, the final norm applied, and each
//! time step's patches are pooled by a post-LN-free `TransformerEncoderLayer` (pre-norm,
//! GELU, its own class token, whose output is the feature). Weights load by upstream's
//! names under `vfeat_extractor.` (other parts of the sync model are ignored; the unused
//! 2-D `patch_embed` is marked known).

use crate::layers::Linear;
use burn::prelude::*;
use burn::tensor::activation::gelu;
use r2v_wan::attention::{Kernel, Scale, attention, merge_heads, split_heads};
use r2v_wan::layers::LayerNorm;
use r2v_wan::weights::Weights;
use serde::Deserialize;

/// The encoder's shape (`VIT` of upstream's `divided_224_16x4.yaml`).
#[derive(Debug, Clone, Deserialize)]
pub struct SynchformerConfig {
    /// Input frames are this many pixels square.
    pub img_size: usize,
    /// Width.
    pub embed_dim: usize,
    /// Blocks.
    pub depth: usize,
    /// Heads.
    pub num_heads: usize,
}

impl SynchformerConfig {
    /// Upstream's encoder.
    pub fn real() -> Self {
        Self {
            img_size: 224,
            embed_dim: 768,
            depth: 12,
            num_heads: 12,
        }
    }
}

/// Spatial patch size.
const PATCH: usize = 16;
/// Frames per tubelet.
const TUBELET: usize = 2;
/// Frames per segment.
pub const SEGMENT_FRAMES: usize = 16;
/// Frames between segment starts.
pub const SEGMENT_STEP: usize = 8;
/// Features per segment.
pub const FEATURES_PER_SEGMENT: usize = SEGMENT_FRAMES / TUBELET;
/// LayerNorm ε of every norm here.
const EPS: f64 = 1e-6;

type Norm<B> = LayerNorm<B>;

fn norm<B: Backend>(w: &Weights, name: &str, dim: usize, device: &B::Device) -> Norm<B> {
    LayerNorm::load(w, name, dim, EPS, device)
}

/// `DividedAttention`: packed qkv (q, k, v chunks, heads outermost), output projection.
#[derive(Debug, Clone)]
struct DividedAttention<B: Backend> {
    qkv: Linear<B>,
    proj: Linear<B>,
}

/// Which tokens attend together.
#[derive(Debug, Clone, Copy)]
enum Axis {
    /// One spatial position across time steps.
    Time,
    /// One time step across positions.
    Space,
}

impl<B: Backend> DividedAttention<B> {
    fn load(w: &Weights, name: &str, dim: usize, device: &B::Device) -> Self {
        Self {
            qkv: Linear::load(w, &format!("{name}.qkv"), [dim, 3 * dim], true, device),
            proj: Linear::load(w, &format!("{name}.proj"), [dim, dim], true, device),
        }
    }

    /// `x` `[b, 1 + t·n, dim]` (class token first; patches time-major).
    fn forward(
        &self,
        x: Tensor<B, 3>,
        (heads, t, n): (usize, usize, usize),
        axis: Axis,
        kernel: Kernel,
    ) -> Tensor<B, 3> {
        let qkv = self.qkv.forward(x);
        let [b, tokens, width] = qkv.dims();
        let dim = width / 3;
        let d = dim / heads;
        let part = |j: usize| split_heads(qkv.clone().narrow(2, j * dim, dim), heads);
        let (q, k, v) = (part(0), part(1), part(2));
        debug_assert_eq!(tokens, 1 + t * n);
        let cls = attention(
            kernel,
            q.clone().narrow(2, 0, 1),
            k.clone(),
            v.clone(),
            None,
            Scale::Default,
        );
        // Patches in groups, each with the class token's key and value in front.
        let patches = |x: Tensor<B, 4>| x.narrow(2, 1, t * n).reshape([b, heads, t, n, d]);
        let (group, len, groups) = match axis {
            Axis::Time => (n, t, heads * n),
            Axis::Space => (t, n, heads * t),
        };
        let grouped = |x: Tensor<B, 5>| match axis {
            Axis::Time => x.swap_dims(2, 3).reshape([b, groups, len, d]),
            Axis::Space => x.reshape([b, groups, len, d]),
        };
        let with_cls = |x: Tensor<B, 4>, all: &Tensor<B, 4>| {
            let head = all
                .clone()
                .narrow(2, 0, 1)
                .reshape([b, heads, 1, 1, d])
                .expand([b, heads, group, 1, d])
                .reshape([b, groups, 1, d]);
            Tensor::cat(vec![head, x], 2)
        };
        let kp = with_cls(grouped(patches(k.clone())), &k);
        let vp = with_cls(grouped(patches(v.clone())), &v);
        let out = attention(kernel, grouped(patches(q)), kp, vp, None, Scale::Default);
        let out = match axis {
            Axis::Time => out.reshape([b, heads, n, t, d]).swap_dims(2, 3),
            Axis::Space => out.reshape([b, heads, t, n, d]),
        }
        .reshape([b, heads, t * n, d]);
        self.proj
            .forward(merge_heads(Tensor::cat(vec![cls, out], 2)))
    }
}

/// `DividedSpaceTimeBlock`.
#[derive(Debug, Clone)]
struct Block<B: Backend> {
    norm1: Norm<B>,
    norm2: Norm<B>,
    norm3: Norm<B>,
    attn: DividedAttention<B>,
    timeattn: DividedAttention<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

/// The spatial pooling layer (`nn.TransformerEncoderLayer`, pre-norm, GELU) with its token.
#[derive(Debug, Clone)]
struct SpatialPool<B: Backend> {
    cls: Tensor<B, 3>,
    norm1: Norm<B>,
    norm2: Norm<B>,
    in_proj: Linear<B>,
    out_proj: Linear<B>,
    linear1: Linear<B>,
    linear2: Linear<B>,
}

/// The encoder.
#[derive(Debug, Clone)]
pub struct Synchformer<B: Backend> {
    config: SynchformerConfig,
    kernel: Kernel,
    tubelet: Linear<B>,
    cls: Tensor<B, 3>,
    positions: Tensor<B, 3>,
    time: Tensor<B, 3>,
    blocks: Vec<Block<B>>,
    norm: Norm<B>,
    pool: SpatialPool<B>,
}

impl<B: Backend> Synchformer<B> {
    /// Loads `vfeat_extractor.*` from `w` (opened with that prefix).
    pub fn load(
        w: &Weights,
        config: &SynchformerConfig,
        kernel: Kernel,
        device: &B::Device,
    ) -> Self {
        let dim = config.embed_dim;
        let n = (config.img_size / PATCH).pow(2);
        let t = FEATURES_PER_SEGMENT;
        let tubelet = w
            .tensor::<B, 5>(
                "patch_embed_3d.proj.weight",
                [dim, 3, TUBELET, PATCH, PATCH],
                device,
            )
            .reshape([dim, 3 * TUBELET * PATCH * PATCH]);
        w.expect_shape("patch_embed.proj.weight", &[dim, 3, PATCH, PATCH]);
        w.expect_shape("patch_embed.proj.bias", &[dim]);
        let lin = |name: &str, d_in: usize, d_out: usize| {
            Linear::load(w, name, [d_in, d_out], true, device)
        };
        let blocks = (0..config.depth)
            .map(|i| {
                let p = format!("blocks.{i}");
                Block {
                    norm1: norm(w, &format!("{p}.norm1"), dim, device),
                    norm2: norm(w, &format!("{p}.norm2"), dim, device),
                    norm3: norm(w, &format!("{p}.norm3"), dim, device),
                    attn: DividedAttention::load(w, &format!("{p}.attn"), dim, device),
                    timeattn: DividedAttention::load(w, &format!("{p}.timeattn"), dim, device),
                    fc1: lin(&format!("{p}.mlp.fc1"), dim, 4 * dim),
                    fc2: lin(&format!("{p}.mlp.fc2"), 4 * dim, dim),
                }
            })
            .collect();
        let pool = SpatialPool {
            cls: w.tensor("spatial_attn_agg.cls_token", [1, 1, dim], device),
            norm1: norm(w, "spatial_attn_agg.norm1", dim, device),
            norm2: norm(w, "spatial_attn_agg.norm2", dim, device),
            in_proj: Linear::from_parts(
                w.tensor(
                    "spatial_attn_agg.self_attn.in_proj_weight",
                    [3 * dim, dim],
                    device,
                ),
                Some(w.tensor("spatial_attn_agg.self_attn.in_proj_bias", [3 * dim], device)),
            ),
            out_proj: lin("spatial_attn_agg.self_attn.out_proj", dim, dim),
            linear1: lin("spatial_attn_agg.linear1", dim, 4 * dim),
            linear2: lin("spatial_attn_agg.linear2", 4 * dim, dim),
        };
        Self {
            config: config.clone(),
            kernel,
            tubelet: Linear::from_parts(
                tubelet,
                Some(w.tensor("patch_embed_3d.proj.bias", [dim], device)),
            ),
            cls: w.tensor("cls_token", [1, 1, dim], device),
            positions: w.tensor("pos_embed", [1, n + 1, dim], device),
            time: w.tensor("temp_embed", [1, t, dim], device),
            blocks,
            norm: norm(w, "norm", dim, device),
            pool,
        }
    }

    /// The frames' side in pixels.
    pub fn img_size(&self) -> usize {
        self.config.img_size
    }

    /// Features `[b, s, 8, dim]` of `video` `[b, s, 16, 3, h, w]` in [−1, 1].
    pub fn encode(&self, video: Tensor<B, 6>) -> Tensor<B, 4> {
        let [b, s, frames, c, h, w] = video.dims();
        let dim = self.config.embed_dim;
        let heads = self.config.num_heads;
        let (t, gh, gw) = (frames / TUBELET, h / PATCH, w / PATCH);
        let n = gh * gw;
        let bs = b * s;
        // [bs, 16, 3, h, w] → tubelets [bs, t·gh·gw, 3·2·16·16] in (c, kt, kh, kw) order.
        let x = video
            .reshape([bs * t, TUBELET, c, gh, PATCH, gw, PATCH])
            .permute([0, 3, 5, 2, 1, 4, 6])
            .reshape([bs, t * n, c * TUBELET * PATCH * PATCH]);
        let x = self.tubelet.forward(x);
        let spatial = self
            .positions
            .clone()
            .narrow(1, 1, n)
            .reshape([1, 1, n, dim]);
        let temporal = self.time.clone().reshape([1, t, 1, dim]);
        let patches = x + (spatial + temporal).reshape([1, t * n, dim]);
        let cls = (self.cls.clone() + self.positions.clone().narrow(1, 0, 1)).expand([bs, 1, dim]);
        let mut x = Tensor::cat(vec![cls, patches], 1);
        for block in &self.blocks {
            let shape = (heads, t, n);
            x = x.clone()
                + block
                    .timeattn
                    .forward(block.norm3.forward(x), shape, Axis::Time, self.kernel);
            x = x.clone()
                + block
                    .attn
                    .forward(block.norm1.forward(x), shape, Axis::Space, self.kernel);
            let h = block
                .fc2
                .forward(gelu(block.fc1.forward(block.norm2.forward(x.clone()))));
            x = x + h;
        }
        let x = self
            .norm
            .forward(x.narrow(1, 1, t * n))
            .reshape([bs * t, n, dim]);
        let pool = &self.pool;
        let x = Tensor::cat(vec![pool.cls.clone().expand([bs * t, 1, dim]), x], 1);
        let qkv = pool.in_proj.forward(pool.norm1.forward(x.clone()));
        let part = |j: usize| split_heads(qkv.clone().narrow(2, j * dim, dim), heads);
        let a = attention(self.kernel, part(0), part(1), part(2), None, Scale::Default);
        let x = x + pool.out_proj.forward(merge_heads(a));
        let x = x.clone()
            + pool
                .linear2
                .forward(gelu(pool.linear1.forward(pool.norm2.forward(x))));
        x.narrow(1, 0, 1).reshape([b, s, t, dim])
    }
}
