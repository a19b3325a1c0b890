//! The one attention function every model calls (the DiT's self- and cross-attention,
//! umT5, the VAE's mid-block), so that a device-specific kernel replaces it without
//! touching model code.
//!
//! [`Kernel::Backend`] is burn's `attention` as it comes: on flex (the CPU) a tiled kernel
//! with an online softmax; on the cubecl backends an autotuned choice between burn's flash
//! kernel and the naive `[B, H, Sq, Sk]` path. flex's kernel walks the heads one after the
//! other on one thread, so on the CPU [`Kernel::Threads`] hands groups of heads to rayon's
//! threads (the rest of the model's matmuls are multi-threaded already). burn takes its flash kernel only when the
//! call has no bias, no softcap and no `scale: Some(..)`, when q is f16 (its tile type)
//! and when `seq_q` is a multiple of its stage (planes × tile rows, at most 8 × 16 = 128);
//! Wan's token counts (32 760 at 480p) never are. [`Kernel::Flash`] meets those terms for
//! the calls that can: q, k and v go in as f16 (bf16's range fits; f16 keeps more mantissa),
//! q gets zero rows up to a multiple of the stage, and those rows are cut from the output.
//! Padded query rows are independent queries, so the real rows are the same as without
//! them. A scale other than `1/√d` is folded into q. Calls with a bias (umT5's relative
//! positions) always take the backend's own path.
//!
//! [`split_heads`] and [`merge_heads`] move between `[b, l, heads·d]` and `[b, heads, l, d]`
//! one head at a time: each head is a 2-D strided copy, which every backend does at memory
//! speed, where the one 4-D transpose falls to flex's element-by-element copy.

use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::module;
use burn::tensor::ops::AttentionModuleOptions;
use rayon::prelude::*;

/// Which attention implementation a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    /// burn's `attention` as it is.
    #[default]
    Backend,
    /// burn's flash kernel on cubecl backends: f16 tiles, q padded to a multiple of `stage`.
    Flash {
        /// Query rows per kernel stage (128 covers every stage burn 0.21 picks).
        stage: usize,
    },
    /// burn's own attention on groups of heads, one group per rayon thread (the CPU).
    Threads,
}

/// The softmax scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// `1/√head_dim`.
    Default,
    /// A given factor (umT5 uses 1: no scaling).
    Value(f64),
}

/// `softmax(q·kᵀ·scale + bias)·v` for `q [b, h, sq, d]`, `k [b, h, sk, d]`, `v [b, h, sk, dv]`;
/// the result has `q`'s dtype.
pub fn attention<B: Backend>(
    kernel: Kernel,
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: Option<Tensor<B, 4>>,
    scale: Scale,
) -> Tensor<B, 4> {
    let options = AttentionModuleOptions {
        scale: match scale {
            Scale::Default => None,
            Scale::Value(s) => Some(s),
        },
        ..Default::default()
    };
    match (kernel, bias) {
        (Kernel::Flash { stage }, None) => flash(q, k, v, scale, stage.max(1)),
        (Kernel::Threads, bias) => threads(q, k, v, bias, options),
        (_, bias) => module::attention(q, k, v, None, bias, options),
    }
}

/// burn's attention over groups of heads on rayon's threads, concatenated back.
fn threads<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: Option<Tensor<B, 4>>,
    options: AttentionModuleOptions,
) -> Tensor<B, 4> {
    let heads = q.dims()[1];
    let groups = rayon::current_num_threads().min(heads);
    if groups <= 1 {
        return module::attention(q, k, v, None, bias, options);
    }
    let per = heads.div_ceil(groups);
    let parts: Vec<Tensor<B, 4>> = (0..heads.div_ceil(per))
        .into_par_iter()
        .map(|g| {
            let (start, len) = (g * per, per.min(heads - g * per));
            let pick = |t: &Tensor<B, 4>| t.clone().narrow(1, start, len);
            // A bias for every head is split with them; one shared by all heads is kept whole.
            let bias = bias.as_ref().map(|b| {
                if b.dims()[1] == heads {
                    pick(b)
                } else {
                    b.clone()
                }
            });
            module::attention(pick(&q), pick(&k), pick(&v), None, bias, options)
        })
        .collect();
    Tensor::cat(parts, 1)
}

/// `[b, l, heads·d]` → `[b, heads, l, d]`.
pub fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [b, l, dim] = x.dims();
    let d = dim / heads;
    if b != 1 || heads == 1 {
        return x.reshape([b, l, heads, d]).swap_dims(1, 2);
    }
    let parts = (0..heads)
        .map(|h| x.clone().narrow(2, h * d, d).reshape([1, 1, l, d]))
        .collect();
    Tensor::cat(parts, 1)
}

/// `[b, heads, l, d]` → `[b, l, heads·d]`.
pub fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, heads, l, d] = x.dims();
    if b != 1 || heads == 1 {
        return x.swap_dims(1, 2).reshape([b, l, heads * d]);
    }
    let parts = (0..heads)
        .map(|h| x.clone().narrow(1, h, 1).reshape([1, l, d]))
        .collect();
    Tensor::cat(parts, 2)
}

fn flash<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    scale: Scale,
    stage: usize,
) -> Tensor<B, 4> {
    let dtype = q.dtype();
    let [b, h, sq, d] = q.dims();
    let q = match scale {
        Scale::Default => q,
        Scale::Value(s) => q * (s * (d as f64).sqrt()),
    };
    let padded = sq.div_ceil(stage) * stage;
    let q = if padded == sq {
        q
    } else {
        let zeros = Tensor::zeros([b, h, padded - sq, d], (&q.device(), q.dtype()));
        Tensor::cat(vec![q, zeros], 2)
    };
    let half = |t: Tensor<B, 4>| t.cast(DType::F16);
    let out = module::attention(
        half(q),
        half(k),
        half(v),
        None,
        None,
        AttentionModuleOptions::default(),
    );
    let out = if padded == sq {
        out
    } else {
        out.narrow(2, 0, sq)
    };
    out.cast(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cpu;
    use crate::compare::difference;

    fn random(shape: [usize; 4], seed: u64) -> Tensor<Cpu, 4> {
        let n: usize = shape.iter().product();
        let mut state = seed;
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect();
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    }

    /// The flash path's padding and scale folding change nothing but f16 rounding.
    #[test]
    fn padded_flash_path_equals_the_plain_call() {
        let (q, k, v) = (
            random([1, 2, 37, 16], 1),
            random([1, 2, 23, 16], 2),
            random([1, 2, 23, 8], 3),
        );
        for scale in [Scale::Default, Scale::Value(1.0), Scale::Value(0.3)] {
            let plain = attention(
                Kernel::Backend,
                q.clone(),
                k.clone(),
                v.clone(),
                None,
                scale,
            );
            let flash = attention(
                Kernel::Flash { stage: 16 },
                q.clone(),
                k.clone(),
                v.clone(),
                None,
                scale,
            );
            assert_eq!(flash.dims(), [1, 2, 37, 8]);
            assert_eq!(flash.dtype(), DType::F32);
            let d = difference(
                &flash.into_data().to_vec::<f32>().unwrap(),
                &plain.into_data().to_vec::<f32>().unwrap(),
            )
            .unwrap();
            // f16 keeps 11 significant bits: about 5e-4 relative per value.
            assert!(d.relative() < 4e-3, "{scale:?}: {d:?}");
        }
    }
}

#[cfg(test)]
mod head_tests {
    use super::*;
    use crate::Cpu;

    #[test]
    fn heads_split_and_merge_like_a_transpose() {
        let values: Vec<f32> = (0..2 * 5 * 12).map(|i| i as f32).collect();
        let x =
            Tensor::<Cpu, 3>::from_data(TensorData::new(values, [1, 10, 12]), &Default::default());
        let transposed = x.clone().reshape([1, 10, 3, 4]).swap_dims(1, 2);
        let split = split_heads(x.clone(), 3);
        assert_eq!(split.dims(), [1, 3, 10, 4]);
        assert_eq!(
            split.clone().into_data().to_vec::<f32>().unwrap(),
            transposed.into_data().to_vec::<f32>().unwrap()
        );
        assert_eq!(
            merge_heads(split).into_data().to_vec::<f32>().unwrap(),
            x.into_data().to_vec::<f32>().unwrap()
        );
    }
}
