//! The one attention function every model calls (the DiT's self- and cross-attention,
//! umT5, the VAE's mid-block), so that a device-specific kernel replaces it without
//! touching model code.
//!
//! [`Kernel::Backend`] is burn's `attention` as it comes: on flex (the CPU) a tiled kernel
//! with an online softmax; on the cubecl backends an autotuned choice between burn's flash
//! kernel and the naive `[B, H, Sq, Sk]` path. burn takes its flash kernel only when the
//! call has no bias, no softcap and no `scale: Some(..)`, when q is f16 (its tile type)
//! and when `seq_q` is a multiple of its stage (planes × tile rows, at most 8 × 16 = 128);
//! Wan's token counts (32 760 at 480p) never are. [`Kernel::Flash`] meets those terms for
//! the calls that can: q, k and v go in as f16 (bf16's range fits; f16 keeps more mantissa),
//! q gets zero rows up to a multiple of the stage, and those rows are cut from the output.
//! Padded query rows are independent queries, so the real rows are the same as without
//! them. A scale other than `1/√d` is folded into q. Calls with a bias (umT5's relative
//! positions) always take the backend's own path.

use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::module;
use burn::tensor::ops::AttentionModuleOptions;

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
    match (kernel, bias) {
        (Kernel::Flash { stage }, None) => flash(q, k, v, scale, stage.max(1)),
        (_, bias) => {
            let options = AttentionModuleOptions {
                scale: match scale {
                    Scale::Default => None,
                    Scale::Value(s) => Some(s),
                },
                ..Default::default()
            };
            module::attention(q, k, v, None, bias, options)
        }
    }
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
