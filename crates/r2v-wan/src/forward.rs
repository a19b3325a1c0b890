//! Module-level runs for `r2v wan forward`: a diffusers config, weights, and an inputs
//! file named after the diffusers forward arguments → an outputs file. This is how the
//! fixtures are reproduced from their files, and how a user checks a real checkpoint.

use crate::config::TransformerConfig;
use crate::dit::{Conditioning, TimestepInput, WanTransformer};
use crate::lora::Lora;
use crate::tensor_io::{self, TensorMap};
use crate::umt5::{Umt5Config, Umt5Encoder};
use crate::vae::{Tiling, VaeConfig, WanVae};
use crate::weights::Weights;
use crate::{Precision, WanError};
use burn::prelude::*;
use std::path::Path;

/// Which module to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module {
    /// `WanTransformer3DModel` (T2V, I2V, TI2V per-token timesteps).
    Dit,
    /// `WanVACETransformer3DModel`.
    Vace,
    /// `AutoencoderKLWan._encode`: `video` → `moments`, `mu`.
    VaeEncode,
    /// `AutoencoderKLWan.decode`: `z` → `decoded`.
    VaeDecode,
    /// `UMT5EncoderModel`: `input_ids`, `attention_mask` → `last_hidden_state`.
    Umt5,
}

/// Wall-clock times of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    /// Loading the weights, in seconds.
    pub load: f64,
    /// Each forward pass (output read back, so the device has finished), in seconds.
    pub forwards: Vec<f64>,
}

/// What one run reads and writes, and its precision.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    /// The diffusers `config.json`.
    pub config: &'a Path,
    /// The weights (file, index json or directory).
    pub weights: &'a Path,
    /// The inputs.
    pub inputs: &'a Path,
    /// Where the outputs go.
    pub output: &'a Path,
    /// The precision of weights and activations.
    pub precision: Precision,
    /// A LoRA and its strength, merged into the DiT.
    pub lora: Option<(&'a Path, f32)>,
    /// Decode in spatial tiles (`vae-decode`).
    pub vae_tiling: Option<Tiling>,
}

impl Files<'_> {
    /// The weights with this run's precision and LoRA.
    fn weights(&self) -> Result<Weights, WanError> {
        let mut weights = Weights::open(self.weights)?.with_precision(self.precision);
        if let Some((path, strength)) = self.lora {
            weights = weights.with_lora(Lora::open(path, strength)?);
        }
        Ok(weights)
    }
}

/// Runs `module` `repeat` times and writes its outputs (`output` for the DiT).
pub fn run<B: Backend>(
    module: Module,
    files: Files<'_>,
    repeat: usize,
    device: &B::Device,
) -> Result<Timings, WanError> {
    let inputs = tensor_io::read(files.inputs)?;
    let (outputs, timings) = match module {
        Module::Dit | Module::Vace => dit::<B>(module, files, &inputs, repeat.max(1), device)?,
        Module::VaeEncode | Module::VaeDecode => {
            vae::<B>(module, files, &inputs, repeat.max(1), device)?
        }
        Module::Umt5 => umt5::<B>(files, &inputs, repeat.max(1), device)?,
    };
    tensor_io::write(files.output, &outputs)?;
    Ok(timings)
}

fn dit<B: Backend>(
    module: Module,
    files: Files<'_>,
    inputs: &TensorMap,
    repeat: usize,
    device: &B::Device,
) -> Result<(TensorMap, Timings), WanError> {
    let config = TransformerConfig::from_file(files.config)?;
    if (module == Module::Vace) != config.vace_layers.is_some() {
        return Err(WanError::Config(format!(
            "--module {} does not fit this config ({})",
            if module == Module::Vace {
                "vace"
            } else {
                "dit"
            },
            if config.vace_layers.is_some() {
                "a VACE model"
            } else {
                "not a VACE model"
            }
        )));
    }
    let (model, load) = loaded(|| WanTransformer::<B>::load(config, files.weights()?, device))?;
    let timestep = match inputs.get("timestep").map(|(shape, _)| shape.len()) {
        Some(2) => TimestepInput::PerToken(tensor_io::tensor(inputs, "timestep", device)?),
        _ => TimestepInput::PerSample(tensor_io::tensor(inputs, "timestep", device)?),
    };
    let control = match module {
        Module::Vace => Some((
            tensor_io::tensor::<B, 5>(inputs, "control_hidden_states", device)?,
            inputs
                .get("control_hidden_states_scale")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| {
                    vec![1.0; model.config().vace_layers.as_ref().map_or(0, Vec::len)]
                }),
        )),
        _ => None,
    };
    let text = tensor_io::tensor::<B, 3>(inputs, "encoder_hidden_states", device)?;
    let image = inputs
        .contains_key("encoder_hidden_states_image")
        .then(|| tensor_io::tensor::<B, 3>(inputs, "encoder_hidden_states_image", device))
        .transpose()?;
    let hidden = tensor_io::tensor::<B, 5>(inputs, "hidden_states", device)?;
    let (outputs, forwards) = timed(repeat, || {
        let cond = Conditioning {
            timestep: timestep.clone(),
            text: text.clone(),
            image: image.clone(),
            control: control.clone(),
        };
        let output = tensor_io::values(model.forward(hidden.clone(), cond)?);
        Ok(TensorMap::from([("output".to_owned(), output)]))
    })?;
    Ok((outputs, Timings { load, forwards }))
}

/// A model and the seconds `load` took.
fn loaded<T>(load: impl FnOnce() -> Result<T, WanError>) -> Result<(T, f64), WanError> {
    let started = std::time::Instant::now();
    let model = load()?;
    Ok((model, started.elapsed().as_secs_f64()))
}

/// Runs `forward` `repeat` times, timing each, and keeps the last result.
fn timed<T>(
    repeat: usize,
    mut forward: impl FnMut() -> Result<T, WanError>,
) -> Result<(T, Vec<f64>), WanError> {
    let mut times = Vec::with_capacity(repeat);
    let mut last = None;
    for _ in 0..repeat {
        let started = std::time::Instant::now();
        last = Some(forward()?);
        times.push(started.elapsed().as_secs_f64());
    }
    Ok((last.expect("repeat is at least 1"), times))
}

fn vae<B: Backend>(
    module: Module,
    files: Files<'_>,
    inputs: &TensorMap,
    repeat: usize,
    device: &B::Device,
) -> Result<(TensorMap, Timings), WanError> {
    let (model, load) = loaded(|| {
        WanVae::<B>::load(
            VaeConfig::from_file(files.config)?,
            files.weights()?,
            device,
        )
    })?;
    let z_dim = model.config().z_dim;
    let (outputs, forwards) = if module == Module::VaeEncode {
        let video = tensor_io::tensor::<B, 5>(inputs, "video", device)?;
        timed(repeat, || {
            let moments = model.encode_moments(video.clone())?;
            let mu = tensor_io::values(moments.clone().narrow(1, 0, z_dim));
            Ok(TensorMap::from([
                ("moments".to_owned(), tensor_io::values(moments)),
                ("mu".to_owned(), mu),
            ]))
        })?
    } else {
        let z = tensor_io::tensor::<B, 5>(inputs, "z", device)?;
        timed(repeat, || {
            let decoded = match files.vae_tiling {
                Some(tiling) => model.decode_tiled(z.clone(), tiling)?,
                None => model.decode(z.clone())?,
            };
            let decoded = tensor_io::values(decoded);
            Ok(TensorMap::from([("decoded".to_owned(), decoded)]))
        })?
    };
    Ok((outputs, Timings { load, forwards }))
}

fn umt5<B: Backend>(
    files: Files<'_>,
    inputs: &TensorMap,
    repeat: usize,
    device: &B::Device,
) -> Result<(TensorMap, Timings), WanError> {
    let (model, load) = loaded(|| {
        Umt5Encoder::<B>::load(
            Umt5Config::from_file(files.config)?,
            files.weights()?,
            device,
        )
    })?;
    let (shape, ids) = inputs
        .get("input_ids")
        .ok_or_else(|| WanError::Shape("the inputs have no `input_ids`".to_owned()))?;
    if shape.len() != 2 || shape[0] != 1 {
        return Err(WanError::Shape(format!(
            "`input_ids` must be [1, L]; got {shape:?}"
        )));
    }
    let ids: Vec<u32> = ids.iter().map(|&v| v as u32).collect();
    let mask: Vec<bool> = match inputs.get("attention_mask") {
        Some((_, values)) => values.iter().map(|&v| v > 0.5).collect(),
        None => vec![true; ids.len()],
    };
    let (outputs, forwards) = timed(repeat, || {
        let hidden = tensor_io::values(model.forward(&ids, &mask)?);
        Ok(TensorMap::from([("last_hidden_state".to_owned(), hidden)]))
    })?;
    Ok((outputs, Timings { load, forwards }))
}
