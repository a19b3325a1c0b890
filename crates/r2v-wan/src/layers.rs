//! The small layers the Wan models are built from, loaded from diffusers-named weights:
//! [`Linear`], [`LayerNorm`] (optionally affine; computed and answered in f32, as
//! diffusers' `FP32LayerNorm` under `_keep_in_fp32_modules`), [`RmsNorm`] (statistics in
//! f32, the gain in the activations' precision, as T5's norm) and [`gelu_tanh`].

use crate::Precision;
use crate::weights::Weights;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

/// `y = x W + b`, with `W` kept as `[in, out]` (PyTorch stores `[out, in]`).
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    weight: Tensor<B, 3>,
    bias: Option<Tensor<B, 3>>,
}

impl<B: Backend> Linear<B> {
    /// Loads `{name}.weight` `[out, in]` and `{name}.bias` `[out]`.
    pub fn load(w: &Weights, name: &str, d_in: usize, d_out: usize, device: &B::Device) -> Self {
        let weight = w
            .tensor::<B, 2>(&format!("{name}.weight"), [d_out, d_in], device)
            .transpose()
            .unsqueeze::<3>();
        let bias = w
            .tensor::<B, 1>(&format!("{name}.bias"), [d_out], device)
            .reshape([1, 1, d_out]);
        Self {
            weight,
            bias: Some(bias),
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

/// LayerNorm over the last dim; affine when the checkpoint has `weight` and `bias`.
#[derive(Debug, Clone)]
pub struct LayerNorm<B: Backend> {
    affine: Option<(Tensor<B, 3>, Tensor<B, 3>)>,
    eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// A norm without parameters.
    pub fn plain(eps: f64) -> Self {
        Self { affine: None, eps }
    }

    /// Loads `{name}.weight` and `{name}.bias` `[dim]`.
    pub fn load(w: &Weights, name: &str, dim: usize, eps: f64, device: &B::Device) -> Self {
        let weight = w
            .tensor::<B, 1>(&format!("{name}.weight"), [dim], device)
            .reshape([1, 1, dim]);
        let bias = w
            .tensor::<B, 1>(&format!("{name}.bias"), [dim], device)
            .reshape([1, 1, dim]);
        Self {
            affine: Some((weight, bias)),
            eps,
        }
    }

    /// Normalises `[batch, tokens, dim]` in f32 and answers in f32 (the caller modulates
    /// in f32 and rounds once to its stream's precision, as diffusers' blocks do).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = Precision::F32.apply(x);
        let (var, mean) = x.clone().var_mean_bias(2);
        let y = (x - mean) / (var + self.eps).sqrt();
        match &self.affine {
            Some((w, b)) => y * Precision::F32.apply(w.clone()) + Precision::F32.apply(b.clone()),
            None => y,
        }
    }
}

/// RMSNorm over the last dim with a learned gain (Wan's q/k norms span all heads).
#[derive(Debug, Clone)]
pub struct RmsNorm<B: Backend> {
    weight: Tensor<B, 3>,
    eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Loads `{name}.weight` `[dim]`.
    pub fn load(w: &Weights, name: &str, dim: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: w
                .tensor::<B, 1>(&format!("{name}.weight"), [dim], device)
                .reshape([1, 1, dim]),
            eps,
        }
    }

    /// Normalises `[batch, tokens, dim]` (in f32 whatever the input's precision).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let precision = Precision::of(&x);
        let x = Precision::F32.apply(x);
        let mean_square = (x.clone() * x.clone()).mean_dim(2);
        precision.apply(x / (mean_square + self.eps).sqrt()) * self.weight.clone()
    }
}

/// GELU with the tanh approximation (PyTorch's `approximate="tanh"`), written as
/// `x · σ(2u)` (= `x · ½(1 + tanh u)`) with `x³` as products: burn's version goes through
/// `powf` and `tanh`, which were a fifth of a CPU forward pass.
pub fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    const TWO_SQRT_2_OVER_PI: f64 =
        2.0 * core::f64::consts::FRAC_2_SQRT_PI * core::f64::consts::FRAC_1_SQRT_2;
    let cube = x.clone() * x.clone() * x.clone();
    let u = (x.clone() + cube * 0.044715) * TWO_SQRT_2_OVER_PI;
    x * sigmoid(u)
}
