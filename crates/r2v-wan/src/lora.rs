//! LoRA merged at load time (MODEL.md §1.7): the LightX2V format (`<module>.lora_down.weight`
//! `[r, in]`, `.lora_up.weight` `[out, r]`, `.alpha`, plus `.diff` / `.diff_b` full-tensor
//! deltas for weights and biases), and PEFT's `lora_A` / `lora_B`.
//!
//! Module names may be official (`blocks.0.self_attn.q`, under `diffusion_model.` or
//! `model.diffusion_model.`) or diffusers (`blocks.0.attn1.to_q`, under `transformer.`);
//! both target the diffusers names the models load. `W += strength · alpha/r · up·down`,
//! computed on the model's device as each weight is loaded. A LoRA module that matches no
//! weight of the model is an error that names it ([`crate::weights::Weights::check`]).

use crate::WanError;
use crate::weights::{rename_official, to_f32};
use burn::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// A `(shape, values)` host tensor.
type HostTensor = (Vec<usize>, Vec<f32>);

/// One change to one weight.
#[derive(Debug, Clone)]
enum Delta {
    /// `scale · up · down`.
    LowRank {
        down: HostTensor,
        up: HostTensor,
        scale: f32,
    },
    /// `scale · diff`.
    Full { diff: HostTensor, scale: f32 },
}

/// The deltas of a LoRA file, by the diffusers name of the weight they change.
#[derive(Debug, Clone, Default)]
pub struct Lora {
    deltas: BTreeMap<String, Vec<Delta>>,
}

/// The parts of one LoRA module while its file is read.
#[derive(Default)]
struct Parts {
    down: Option<HostTensor>,
    up: Option<HostTensor>,
    alpha: Option<f32>,
}

impl Lora {
    /// Reads a LoRA safetensors file, to be applied with `strength` (1.0 as published).
    pub fn open(path: &Path, strength: f32) -> Result<Self, WanError> {
        let bytes = std::fs::read(path).map_err(|e| WanError::io(path, e))?;
        let file = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| WanError::Weights(format!("{}: {e}", path.display())))?;
        let names: Vec<String> = file.names().into_iter().map(str::to_owned).collect();
        let official = names
            .iter()
            .any(|n| n.contains("self_attn") || n.contains("cross_attn") || n.contains(".ffn.0"));
        let target = |module: &str, suffix: &str| {
            let key = format!("{module}.{suffix}");
            if official { rename_official(&key) } else { key }
        };
        let mut modules: BTreeMap<String, Parts> = BTreeMap::new();
        let mut lora = Self::default();
        for name in names {
            let view = file
                .tensor(&name)
                .map_err(|e| WanError::Weights(format!("{}: {name}: {e}", path.display())))?;
            let values = to_f32(view.dtype(), view.data()).ok_or_else(|| {
                WanError::Weights(format!(
                    "{}: {name} has dtype {:?}",
                    path.display(),
                    view.dtype()
                ))
            })?;
            let tensor = (view.shape().to_vec(), values);
            let bare = [
                "model.diffusion_model.",
                "diffusion_model.",
                "base_model.model.",
                "transformer.",
            ]
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .unwrap_or(&name);
            let (module, part) = [
                ".lora_down.weight",
                ".lora_A.weight",
                ".lora_up.weight",
                ".lora_B.weight",
                ".alpha",
                ".diff_b",
                ".diff",
            ]
            .iter()
            .find_map(|s| bare.strip_suffix(s).map(|m| (m, *s)))
            .ok_or_else(|| {
                WanError::Weights(format!("{}: {name} is not a LoRA tensor", path.display()))
            })?;
            match part {
                ".diff" | ".diff_b" => {
                    let suffix = if part == ".diff" { "weight" } else { "bias" };
                    lora.deltas
                        .entry(target(module, suffix))
                        .or_default()
                        .push(Delta::Full {
                            diff: tensor,
                            scale: strength,
                        });
                }
                ".alpha" => {
                    modules.entry(module.to_owned()).or_default().alpha = tensor.1.first().copied()
                }
                ".lora_down.weight" | ".lora_A.weight" => {
                    modules.entry(module.to_owned()).or_default().down = Some(tensor)
                }
                _ => modules.entry(module.to_owned()).or_default().up = Some(tensor),
            }
        }
        for (module, parts) in modules {
            let (Some(down), Some(up)) = (parts.down, parts.up) else {
                return Err(WanError::Weights(format!(
                    "{}: LoRA module {module} lacks its down or up matrix",
                    path.display()
                )));
            };
            let rank = down.0.first().copied().unwrap_or(1).max(1);
            let scale = strength * parts.alpha.map_or(1.0, |a| a / rank as f32);
            lora.deltas
                .entry(target(&module, "weight"))
                .or_default()
                .push(Delta::LowRank { down, up, scale });
        }
        Ok(lora)
    }

    /// The diffusers names this LoRA changes.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.deltas.keys().map(String::as_str)
    }

    /// Whether this LoRA changes the tensor `name`.
    pub fn changes(&self, name: &str) -> bool {
        self.deltas.contains_key(name)
    }

    /// `weight` (diffusers name `name`, shape `shape`) with this LoRA's deltas added, or
    /// an error when a delta does not fit the weight.
    pub fn apply<B: Backend, const D: usize>(
        &self,
        name: &str,
        weight: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, String> {
        let Some(deltas) = self.deltas.get(name) else {
            return Ok(weight);
        };
        let shape = weight.dims();
        let device = weight.device();
        let host = |(dims, values): &HostTensor| -> Tensor<B, 2> {
            let rows = dims.first().copied().unwrap_or(1);
            let cols = values.len() / rows.max(1);
            Tensor::from_data(TensorData::new(values.clone(), [rows, cols]), &device)
        };
        let mut weight = weight;
        for delta in deltas {
            let (change, scale) = match delta {
                Delta::LowRank { down, up, scale } => (host(up).matmul(host(down)), *scale),
                Delta::Full { diff, scale } => (host(diff), *scale),
            };
            let count: usize = change.dims().iter().product();
            if count != shape.iter().product::<usize>() {
                return Err(format!(
                    "LoRA delta for {name} has {count} values; the weight has shape {shape:?}"
                ));
            }
            weight = weight + change.reshape(shape) * scale;
        }
        Ok(weight)
    }
}
