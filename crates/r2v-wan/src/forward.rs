//! Module-level runs for `r2v wan forward`: a diffusers config, weights, and an inputs
//! file named after the diffusers forward arguments → an outputs file. This is how the
//! fixtures are reproduced from their files, and how a user checks a real checkpoint.

use crate::WanError;
use crate::config::TransformerConfig;
use crate::dit::{Conditioning, TimestepInput, WanTransformer};
use crate::tensor_io::{self, TensorMap};
use crate::weights::Weights;
use burn::prelude::*;
use std::path::Path;

/// Which module to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module {
    /// `WanTransformer3DModel` (T2V, I2V, TI2V per-token timesteps).
    Dit,
    /// `WanVACETransformer3DModel`.
    Vace,
}

/// Wall-clock times of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    /// Loading the weights, in seconds.
    pub load: f64,
    /// Each forward pass (output read back, so the device has finished), in seconds.
    pub forwards: Vec<f64>,
}

/// Paths of one run.
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
    let started = std::time::Instant::now();
    let model = WanTransformer::<B>::load(config, Weights::open(files.weights)?, device)?;
    let load = started.elapsed().as_secs_f64();
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
        Module::Dit => None,
    };
    let text = tensor_io::tensor::<B, 3>(inputs, "encoder_hidden_states", device)?;
    let image = inputs
        .contains_key("encoder_hidden_states_image")
        .then(|| tensor_io::tensor::<B, 3>(inputs, "encoder_hidden_states_image", device))
        .transpose()?;
    let hidden = tensor_io::tensor::<B, 5>(inputs, "hidden_states", device)?;
    let mut forwards = Vec::with_capacity(repeat);
    let mut output = None;
    for _ in 0..repeat {
        let cond = Conditioning {
            timestep: timestep.clone(),
            text: text.clone(),
            image: image.clone(),
            control: control.clone(),
        };
        let started = std::time::Instant::now();
        let values = tensor_io::values(model.forward(hidden.clone(), cond)?);
        forwards.push(started.elapsed().as_secs_f64());
        output = Some(values);
    }
    let output = output.expect("repeat is at least 1");
    Ok((
        TensorMap::from([("output".to_owned(), output)]),
        Timings { load, forwards },
    ))
}
