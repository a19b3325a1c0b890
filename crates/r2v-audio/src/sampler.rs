//! Upstream's flow-matching sampler (`FlowMatching.to_data` in Euler mode, through
//! `MMAudio.ode_wrapper`): `N` steps over `torch.linspace(0, 1, N + 1)` in f32, each
//! `x += dt · v` with the guided velocity `cfg · v(cond) + (1 − cfg) · v(empty)` (the
//! unguided velocity when `cfg < 1`). The two velocities of a guided step run as one
//! batch.

use crate::ModelError;
use crate::net::{Conditions, Net, Rotations};
use burn::prelude::*;

/// Upstream's defaults.
pub const DEFAULT_STEPS: usize = 25;
/// Upstream's default guidance strength.
pub const DEFAULT_CFG: f64 = 4.5;

/// `torch.linspace(start, end, steps)` in f32: the first half counted up from `start`, the
/// rest down from `end`, as PyTorch's kernel does.
pub fn linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}

/// What the sampler runs with.
pub struct Sampling<'a, B: Backend> {
    /// The network.
    pub net: &'a Net<B>,
    /// The request's conditions.
    pub conditions: &'a Conditions<B>,
    /// The empty (or negative-prompt) conditions.
    pub empty: &'a Conditions<B>,
    /// The rotary tables of these lengths.
    pub rotations: &'a Rotations<B>,
    /// Euler steps.
    pub steps: usize,
    /// Guidance strength.
    pub cfg: f64,
}

impl<B: Backend> Sampling<'_, B> {
    /// Integrates `x0` `[b, n, latent_dim]` from noise to data; `on_step(k, n)` runs after
    /// each step and may stop the run.
    pub fn run(
        &self,
        x0: Tensor<B, 3>,
        mut on_step: impl FnMut(usize, usize) -> Result<(), ModelError>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let device = x0.device();
        let batch = x0.dims()[0];
        let times = linspace(0.0, 1.0, self.steps + 1);
        let guided = self.cfg >= 1.0;
        let both = guided.then(|| Conditions::stack(self.conditions, self.empty));
        let mut x = x0;
        for (k, pair) in times.windows(2).enumerate() {
            let (t, next) = (pair[0], pair[1]);
            let flow = match &both {
                Some(both) => {
                    let tt = Tensor::<B, 1>::full([2 * batch], t, &device);
                    let v = self.net.flow(
                        Tensor::cat(vec![x.clone(), x.clone()], 0),
                        tt,
                        both,
                        self.rotations,
                    );
                    let cond = v.clone().narrow(0, 0, batch);
                    let empty = v.narrow(0, batch, batch);
                    cond * self.cfg + empty * (1.0 - self.cfg)
                }
                None => {
                    let tt = Tensor::<B, 1>::full([batch], t, &device);
                    self.net
                        .flow(x.clone(), tt, self.conditions, self.rotations)
                }
            };
            x = x + flow * f64::from(next - t);
            on_step(k + 1, self.steps)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::linspace;

    #[test]
    fn linspace_ends_exactly_and_is_symmetric() {
        let t = linspace(0.0, 1.0, 26);
        assert_eq!((t[0], t[25]), (0.0, 1.0));
        assert_eq!(t[1], 1.0f32 / 25.0);
        assert_eq!(t[24], 1.0 - 1.0f32 / 25.0);
        assert_eq!(linspace(0.0, 1.0, 2), vec![0.0, 1.0]);
    }
}
