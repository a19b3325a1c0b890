//! Runs on tensor files, mirroring diffusers: `r2v wan forward` ([`run`]: a diffusers
//! config, weights, and an inputs file named after the diffusers forward arguments → an
//! outputs file) and `r2v wan pipeline` ([`pipeline`]: `WanVACEPipeline`'s call on prompt
//! embeddings, initial latents and reference images from a file). This is how the fixtures
//! are reproduced from their files, and how a user checks a real checkpoint on a device.

use crate::attention::Kernel;
use crate::config::TransformerConfig;
use crate::device::{Device, OnDevice};
use crate::dit::{Conditioning, TimestepInput, WanTransformer};
use crate::lora::Lora;
use crate::model_dir::{LoadOptions, ModelDir};
use crate::pipeline::{Generation, Method, ReferenceOrder, RgbImage, Sampler};
use crate::scheduler::Schedule;
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
    /// The DiT's attention kernel.
    pub attention: Kernel,
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

/// [`run`] on `device`'s backend.
pub fn run_on(
    device: &Device,
    module: Module,
    files: Files<'_>,
    repeat: usize,
) -> Result<Timings, WanError> {
    struct Forward<'a> {
        module: Module,
        files: Files<'a>,
        repeat: usize,
    }
    impl OnDevice for Forward<'_> {
        type Output = Result<Timings, WanError>;
        fn run<B: Backend>(self, device: B::Device) -> Self::Output {
            run::<B>(self.module, self.files, self.repeat, &device)
        }
    }
    device.run(Forward {
        module,
        files,
        repeat,
    })
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
    let (model, load) = loaded(|| {
        Ok(WanTransformer::<B>::load(config, files.weights()?, device)?
            .with_attention(files.attention))
    })?;
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
        Ok(Umt5Encoder::<B>::load(
            Umt5Config::from_file(files.config)?,
            files.weights()?,
            device,
        )?
        .with_attention(files.attention))
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

/// The two samplers `r2v wan pipeline` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedules {
    /// UniPC with diffusers' flow schedule, CFG 5 by default (the standard preset).
    UniPc,
    /// Euler over the flash σ list, no CFG by default (the flash preset).
    Flash,
}

/// One `r2v wan pipeline` call.
#[derive(Debug, Clone, Copy)]
pub struct PipelineRun<'a> {
    /// A model directory or a prefixed single file ([`ModelDir::open`]).
    pub model_dir: &'a Path,
    /// `prompt_embeds`, `negative_prompt_embeds`, `initial_latents`, `ref_image_{i}_hwc_u8`.
    pub inputs: &'a Path,
    /// Where `latents_after_step{k}`, `final_latents` and `decoded_video` go.
    pub output: &'a Path,
    /// Pixels.
    pub height: usize,
    /// Pixels.
    pub width: usize,
    /// `1 + 4k`.
    pub num_frames: usize,
    /// Sampling steps.
    pub steps: usize,
    /// The sampler.
    pub schedule: Schedules,
    /// Guidance [default: 5 for UniPC, 1 for flash].
    pub guidance: Option<f32>,
    /// Flow shift [default: the directory's for UniPC; LightX2V's fixed list for flash].
    pub shift: Option<f64>,
    /// VACE conditioning scale [default: the directory's].
    pub conditioning_scale: Option<f32>,
    /// Order of multiple VACE references [default: the directory's].
    pub reference_order: Option<ReferenceOrder>,
    /// Precision and attention.
    pub options: LoadOptions,
}

/// Timings and the schedule of a pipeline run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PipelineReport {
    /// The σ of each step.
    pub sigmas: Vec<f32>,
    /// Seconds per step (model calls and the sampler update; the first includes encoding
    /// the references and the control).
    pub step_s: Vec<f64>,
    /// Seconds of the VAE decode.
    pub vae_decode_s: f64,
    /// Seconds of the whole call, loading excluded.
    pub total_s: f64,
}

/// [`pipeline`] on `device`'s backend.
pub fn pipeline_on(device: &Device, run: PipelineRun<'_>) -> Result<PipelineReport, WanError> {
    struct Pipeline<'a>(PipelineRun<'a>);
    impl OnDevice for Pipeline<'_> {
        type Output = Result<PipelineReport, WanError>;
        fn run<B: Backend>(self, device: B::Device) -> Self::Output {
            pipeline::<B>(self.0, &device)
        }
    }
    device.run(Pipeline(run))
}

/// Runs `WanVACEPipeline`'s call (or Phantom's) on tensors from a file.
pub fn pipeline<B: Backend>(
    run: PipelineRun<'_>,
    device: &B::Device,
) -> Result<PipelineReport, WanError> {
    let dir = ModelDir::open(run.model_dir)?;
    let method = match dir.method() {
        Method::Vace { scale, order } => Method::Vace {
            scale: run.conditioning_scale.unwrap_or(scale),
            order: run.reference_order.unwrap_or(order),
        },
        phantom @ Method::Phantom { .. } => phantom,
    };
    let pipeline = dir.pipeline::<B>(run.options, method, None, device)?;
    let inputs = tensor_io::read(run.inputs)?;
    let mut references = Vec::new();
    while let Some((shape, values)) = inputs.get(&format!("ref_image_{}_hwc_u8", references.len()))
    {
        let [height, width, 3] = shape[..] else {
            return Err(WanError::Shape(format!(
                "ref_image_{}_hwc_u8 must be [H, W, 3]",
                references.len()
            )));
        };
        references.push(RgbImage {
            width,
            height,
            data: values.iter().map(|&v| v.clamp(0.0, 255.0) as u8).collect(),
        });
    }
    let (sampler, default_guidance) = match run.schedule {
        Schedules::UniPc => (
            Sampler::UniPc {
                steps: run.steps,
                shift: run.shift.unwrap_or_else(|| dir.flow_shift()),
                schedule: Schedule::Diffusers,
            },
            crate::model_dir::STANDARD_GUIDANCE,
        ),
        Schedules::Flash => (
            match run.shift {
                Some(shift) => Sampler::flash_shifted(run.steps, shift),
                None => Sampler::flash(run.steps),
            },
            1.0,
        ),
    };
    let sigmas = sampler.sigmas();
    let generation = Generation {
        prompt: tensor_io::tensor(&inputs, "prompt_embeds", device)?,
        negative: inputs
            .contains_key("negative_prompt_embeds")
            .then(|| tensor_io::tensor(&inputs, "negative_prompt_embeds", device))
            .transpose()?,
        references,
        height: run.height,
        width: run.width,
        num_frames: run.num_frames,
        sampler,
        guidance: run.guidance.unwrap_or(default_guidance),
        noise: tensor_io::tensor(&inputs, "initial_latents", device)?,
    };
    let n_refs = generation.references.len();
    let mut outputs = TensorMap::new();
    let started = std::time::Instant::now();
    let mut last = started;
    let mut step_s = Vec::new();
    let latents = pipeline.sample(&generation, |k, n, latents| {
        outputs.insert(
            format!("latents_after_step{}", k - 1),
            tensor_io::values(latents.clone()),
        );
        let now = std::time::Instant::now();
        step_s.push((now - last).as_secs_f64());
        tracing::info!(
            step = k,
            of = n,
            seconds = (now - last).as_secs_f64(),
            "denoise"
        );
        last = now;
        Ok(())
    })?;
    let video = pipeline.video_latents(latents, n_refs);
    outputs.insert("final_latents".to_owned(), tensor_io::values(video.clone()));
    let decode_started = std::time::Instant::now();
    outputs.insert(
        "decoded_video".to_owned(),
        tensor_io::values(pipeline.decode_all(video)?),
    );
    let vae_decode_s = decode_started.elapsed().as_secs_f64();
    let total_s = started.elapsed().as_secs_f64();
    tensor_io::write(run.output, &outputs)?;
    Ok(PipelineReport {
        sigmas,
        step_s,
        vae_decode_s,
        total_s,
    })
}
