//! Samplers for flow-matching Wan models (MODEL.md §1.6–1.7):
//! - [`UniPc`]: multistep UniPC (order 2, `bh2`, x0-prediction from the flow velocity,
//!   lower order at the end), with diffusers' schedule ([`Schedule::Diffusers`], the
//!   oracle) or the official Wan code's ([`Schedule::Official`]);
//! - [`FlowEuler`]: `x ← x + (σ_{i+1} − σ_i)·v` over an explicit σ list, as the flash
//!   (step-distilled, LightX2V) preset uses, or over diffusers' `FlowMatchEulerDiscrete`
//!   schedule;
//! - [`cfg`]: classifier-free guidance.
//!
//! Scalar math is f32, as in diffusers; the update is on burn tensors of any backend.

use burn::prelude::*;

/// Where the σ schedule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// diffusers `UniPCMultistepScheduler(use_flow_sigmas=True)`.
    Diffusers,
    /// The official `FlowUniPCMultistepScheduler` (`wan/utils/fm_solvers_unipc.py`).
    Official,
}

fn shift(sigma: f64, shift: f64) -> f64 {
    shift * sigma / (1.0 + (shift - 1.0) * sigma)
}

/// σ_0 … σ_{n−1} (then 0 is appended by the callers) and the integer timesteps.
pub fn unipc_schedule(schedule: Schedule, steps: usize, flow_shift: f64) -> (Vec<f32>, Vec<i64>) {
    let n = steps as f64;
    let mut raw: Vec<f64> = match schedule {
        // linspace(1, 1/1000, n+1)[:-1], shifted, with 1e-6 taken off σ_0 (diffusers 0.42).
        Schedule::Diffusers => (0..steps)
            .map(|i| shift(1.0 - 0.999 * i as f64 / n, flow_shift))
            .collect(),
        // linspace(0.999, 0, n+1)[:-1], shifted.
        Schedule::Official => (0..steps)
            .map(|i| shift(0.999 - 0.999 * i as f64 / n, flow_shift))
            .collect(),
    };
    if schedule == Schedule::Diffusers
        && let Some(first) = raw.first_mut()
    {
        *first -= 1e-6;
    }
    let timesteps = raw.iter().map(|s| (s * 1000.0) as i64).collect();
    let mut sigmas: Vec<f32> = raw.iter().map(|&s| s as f32).collect();
    sigmas.push(0.0);
    (sigmas, timesteps)
}

/// Multistep UniPC (order 2, `bh2`) for flow prediction.
pub struct UniPc<B: Backend> {
    sigmas: Vec<f32>,
    timesteps: Vec<i64>,
    /// x0 predictions of the last two steps (older first).
    outputs: [Option<Tensor<B, 5>>; 2],
    last_sample: Option<Tensor<B, 5>>,
    lower_order_nums: usize,
    this_order: usize,
    step_index: usize,
}

/// λ(σ) = log α − log σ with α = 1 − σ.
fn lambda(sigma: f32) -> f32 {
    (1.0 - sigma).ln() - sigma.ln()
}

impl<B: Backend> UniPc<B> {
    /// A sampler over `steps` steps with `flow_shift`.
    pub fn new(schedule: Schedule, steps: usize, flow_shift: f64) -> Self {
        let (sigmas, timesteps) = unipc_schedule(schedule, steps, flow_shift);
        Self {
            sigmas,
            timesteps,
            outputs: [None, None],
            last_sample: None,
            lower_order_nums: 0,
            this_order: 1,
            step_index: 0,
        }
    }

    /// The timesteps the model is called with, in order.
    pub fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    /// The σ schedule, with the final 0.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// One step: the model's velocity `v` at `sample` → the next sample.
    pub fn step(&mut self, v: Tensor<B, 5>, sample: Tensor<B, 5>) -> Tensor<B, 5> {
        let k = self.step_index;
        let x0 = sample.clone() - v * self.sigmas[k];
        let sample = match (&self.last_sample, k > 0) {
            (Some(last), true) => self.corrector(x0.clone(), last.clone()),
            _ => sample,
        };
        self.outputs.swap(0, 1);
        self.outputs[1] = Some(x0);
        let remaining = self.timesteps.len() - k;
        self.this_order = 2.min(remaining).min(self.lower_order_nums + 1);
        self.last_sample = Some(sample.clone());
        let next = self.predictor(sample);
        self.lower_order_nums = (self.lower_order_nums + 1).min(2);
        self.step_index += 1;
        next
    }

    fn predictor(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let k = self.step_index;
        let m0 = self.outputs[1]
            .clone()
            .expect("the current output is stored first");
        let (sigma_t, sigma_s0) = (self.sigmas[k + 1], self.sigmas[k]);
        let alpha_t = 1.0 - sigma_t;
        let h = lambda(sigma_t) - lambda(sigma_s0);
        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let b_h = hh.exp_m1();
        let x_t = x * (sigma_t / sigma_s0) - m0.clone() * (alpha_t * h_phi_1);
        if self.this_order == 2 {
            let m1 = self.outputs[0]
                .clone()
                .expect("order 2 has a previous output");
            let rk = (lambda(self.sigmas[k - 1]) - lambda(sigma_s0)) / h;
            let d1 = (m1 - m0) / rk;
            x_t - d1 * (alpha_t * b_h * 0.5)
        } else {
            x_t
        }
    }

    /// UniC: corrects the sample the last predictor made, from the step before it.
    fn corrector(&self, model_t: Tensor<B, 5>, last: Tensor<B, 5>) -> Tensor<B, 5> {
        let k = self.step_index;
        let order = self.this_order;
        let m0 = self.outputs[1]
            .clone()
            .expect("a previous output exists after step 0");
        let (sigma_t, sigma_s0) = (self.sigmas[k], self.sigmas[k - 1]);
        let alpha_t = 1.0 - sigma_t;
        let h = lambda(sigma_t) - lambda(sigma_s0);
        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let b_h = hh.exp_m1();
        let x_t = last * (sigma_t / sigma_s0) - m0.clone() * (alpha_t * h_phi_1);
        let d1_t = model_t - m0.clone();
        if order == 1 {
            return x_t - d1_t * (alpha_t * b_h * 0.5);
        }
        // Order 2: solve R ρ = b with R = [[1, 1], [r, 1]].
        let m1 = self.outputs[0]
            .clone()
            .expect("order 2 has an older output");
        let r = (lambda(self.sigmas[k - 2]) - lambda(sigma_s0)) / h;
        let d1 = (m1 - m0) / r;
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let b0 = h_phi_k / b_h;
        h_phi_k = h_phi_k / hh - 0.5;
        let b1 = h_phi_k * 2.0 / b_h;
        let det = 1.0 - r;
        let rho0 = (b0 - b1) / det;
        let rho1 = (b1 - r * b0) / det;
        x_t - (d1 * rho0 + d1_t * rho1) * (alpha_t * b_h)
    }
}

/// Flow-matching Euler over an explicit σ list.
pub struct FlowEuler {
    sigmas: Vec<f32>,
    step_index: usize,
}

impl FlowEuler {
    /// Over `sigmas` (a final 0 is appended when missing).
    pub fn from_sigmas(mut sigmas: Vec<f32>) -> Self {
        if sigmas.last() != Some(&0.0) {
            sigmas.push(0.0);
        }
        Self {
            sigmas,
            step_index: 0,
        }
    }

    /// The flash preset's schedule: LightX2V's step list over the shifted 1000-step σ
    /// table (`[1000, 750, 500, 250]` with shift 5 → σ = 1, 0.9375, 0.8333, 0.625).
    pub fn flash(denoising_steps: &[u32], flow_shift: f64) -> Self {
        let sigmas = denoising_steps
            .iter()
            .map(|&t| shift(f64::from(t) / 1000.0, flow_shift) as f32)
            .collect();
        Self::from_sigmas(sigmas)
    }

    /// diffusers' `FlowMatchEulerDiscreteScheduler(shift)` with `steps` steps (its σ_min is
    /// shifted twice, so this is *not* the flash list).
    pub fn diffusers(steps: usize, flow_shift: f64) -> Self {
        let sigma_max = 1.0f64;
        let sigma_min = shift(1.0 / 1000.0, flow_shift);
        let sigmas = (0..steps)
            .map(|i| {
                let t = sigma_max * 1000.0
                    + (sigma_min * 1000.0 - sigma_max * 1000.0) * i as f64
                        / (steps - 1).max(1) as f64;
                shift(t / 1000.0, flow_shift) as f32
            })
            .collect();
        Self::from_sigmas(sigmas)
    }

    /// The σ schedule, with the final 0.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// The model timesteps, σ·1000.
    pub fn timesteps(&self) -> Vec<f32> {
        self.sigmas[..self.sigmas.len() - 1]
            .iter()
            .map(|s| s * 1000.0)
            .collect()
    }

    /// One step with velocity `v`.
    pub fn step<B: Backend>(&mut self, v: Tensor<B, 5>, sample: Tensor<B, 5>) -> Tensor<B, 5> {
        let k = self.step_index;
        self.step_index += 1;
        sample + v * (self.sigmas[k + 1] - self.sigmas[k])
    }
}

/// Classifier-free guidance: `uncond + scale · (cond − uncond)`.
pub fn cfg<B: Backend>(cond: Tensor<B, 5>, uncond: Tensor<B, 5>, scale: f32) -> Tensor<B, 5> {
    uncond.clone() + (cond - uncond) * scale
}
