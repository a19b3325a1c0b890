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

/// Runs `module` and writes its outputs (`output` for the DiT) to `output`.
pub fn run<B: Backend>(
    module: Module,
    config: &Path,
    weights: &Path,
    inputs: &Path,
    output: &Path,
    device: &B::Device,
) -> Result<(), WanError> {
    let inputs = tensor_io::read(inputs)?;
    let outputs = match module {
        Module::Dit | Module::Vace => dit::<B>(module, config, weights, &inputs, device)?,
    };
    tensor_io::write(output, &outputs)
}

fn dit<B: Backend>(
    module: Module,
    config: &Path,
    weights: &Path,
    inputs: &TensorMap,
    device: &B::Device,
) -> Result<TensorMap, WanError> {
    let config = TransformerConfig::from_file(config)?;
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
    let model = WanTransformer::<B>::load(config, Weights::open(weights)?, device)?;
    let timestep = match inputs.get("timestep").map(|(shape, _)| shape.len()) {
        Some(2) => TimestepInput::PerToken(tensor_io::tensor(inputs, "timestep", device)?),
        _ => TimestepInput::PerSample(tensor_io::tensor(inputs, "timestep", device)?),
    };
    let control = match module {
        Module::Vace => Some((
            tensor_io::tensor(inputs, "control_hidden_states", device)?,
            inputs
                .get("control_hidden_states_scale")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| {
                    vec![1.0; model.config().vace_layers.as_ref().map_or(0, Vec::len)]
                }),
        )),
        Module::Dit => None,
    };
    let cond = Conditioning {
        timestep,
        text: tensor_io::tensor(inputs, "encoder_hidden_states", device)?,
        image: inputs
            .contains_key("encoder_hidden_states_image")
            .then(|| tensor_io::tensor(inputs, "encoder_hidden_states_image", device))
            .transpose()?,
        control,
    };
    let out = model.forward(tensor_io::tensor(inputs, "hidden_states", device)?, cond)?;
    Ok(TensorMap::from([(
        "output".to_owned(),
        tensor_io::values(out),
    )]))
}
