//! `r2v audio forward|pipeline`: one module, or a whole generation from conditions, on
//! tensor files named after upstream's arguments, so that a fixture or a real checkpoint
//! can be checked against PyTorch from files.

use crate::ModelError;
use crate::clip::{Clip, ClipConfig};
use crate::config::{NetConfig, VocoderConfig};
use crate::model_dir::ModelDir;
use crate::net::Net;
use crate::pipeline::Features;
use crate::synchformer::{Synchformer, SynchformerConfig};
use crate::vae::Decoder;
use crate::vocoder::Vocoder;
use burn::prelude::*;
use r2v_wan::attention::Kernel;
use r2v_wan::config::read_params;
use r2v_wan::device::{Device, OnDevice};
use r2v_wan::tensor_io::{self, TensorMap};
use r2v_wan::weights::Weights;
use std::path::Path;
use std::time::Instant;

/// The modules `r2v audio forward` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module {
    /// `MMAudio.forward`: `latent`, `clip_f`, `sync_f`, `text_f`, `t` → `flow`.
    Net,
    /// The VAE decoder: `z` `[b, n, embed_dim]` → `mel`.
    VaeDecode,
    /// BigVGAN: `mel` → `audio`.
    Vocoder,
    /// The CLIP image tower: `pixels` `[b, 3, h, w]` in [0, 1] → `image_features`.
    ClipImage,
    /// The CLIP text tower (MMAudio's patch): `tokens` `[b, 77]` → `text_features`.
    ClipText,
    /// Synchformer's visual encoder: `video` `[b, s, 16, 3, h, w]` in [−1, 1] → `features`
    /// `[b, s, 8, dim]`.
    Synchformer,
}

/// The files of a module run.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    /// The constructor arguments (at the top level, or under `config` as in the fixtures).
    pub config: &'a Path,
    /// Upstream's state dict as safetensors.
    pub weights: &'a Path,
    /// The inputs.
    pub inputs: &'a Path,
    /// Where the outputs go.
    pub output: &'a Path,
    /// The attention kernel.
    pub attention: Kernel,
}

/// Seconds spent loading and running.
#[derive(Debug, Clone)]
pub struct Timings {
    /// Loading the weights.
    pub load: f64,
    /// Each run (a module run may repeat; a pipeline runs once).
    pub runs: Vec<f64>,
}

impl Timings {
    /// The median run.
    pub fn median(&self) -> f64 {
        let mut sorted = self.runs.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

struct ModuleRun<'a> {
    module: Module,
    files: Files<'a>,
    repeat: usize,
}

/// A loaded module, ready to run on its inputs.
enum Loaded<B: Backend> {
    Net(Net<B>),
    Vae(Decoder<B>),
    Vocoder(Vocoder<B>),
    Clip(Clip<B>, Module),
    Synchformer(Synchformer<B>),
}

impl<B: Backend> Loaded<B> {
    fn load(module: Module, f: &Files<'_>, device: &B::Device) -> Result<Self, ModelError> {
        let weights = Weights::open(f.weights)?;
        let weights = if module == Module::Synchformer {
            weights.with_prefix("vfeat_extractor.")
        } else {
            weights
        };
        let loaded = match module {
            Module::Net => {
                let config: NetConfig = read_params(f.config)?;
                config.validate()?;
                Self::Net(Net::load(&weights, &config, f.attention, device))
            }
            Module::VaeDecode => Self::Vae(Decoder::load(
                &weights,
                read_params(f.config)?,
                f.attention,
                device,
            )),
            Module::Vocoder => {
                let config: VocoderConfig = read_params(f.config)?;
                config.validate()?;
                Self::Vocoder(Vocoder::load(&weights, &config, device))
            }
            Module::ClipImage | Module::ClipText => {
                let config = ClipConfig::from_file(f.config)?;
                Self::Clip(Clip::load(&weights, &config, f.attention, device), module)
            }
            Module::Synchformer => {
                let config: SynchformerConfig = read_params(f.config)?;
                Self::Synchformer(Synchformer::load(&weights, &config, f.attention, device))
            }
        };
        weights.finish()?;
        Ok(loaded)
    }

    fn run(&self, inputs: &TensorMap, device: &B::Device) -> Result<TensorMap, ModelError> {
        let get = |name: &str| tensor_io::tensor::<B, 3>(inputs, name, device);
        let mut out = TensorMap::new();
        match self {
            Self::Net(net) => {
                let t = tensor_io::tensor::<B, 1>(inputs, "t", device)?;
                let flow = net.forward(
                    get("latent")?,
                    (get("clip_f")?, get("sync_f")?, get("text_f")?),
                    t,
                );
                out.insert("flow".into(), tensor_io::values(flow));
            }
            Self::Vae(vae) => {
                out.insert("mel".into(), tensor_io::values(vae.decode(get("z")?)));
            }
            Self::Vocoder(vocoder) => {
                out.insert(
                    "audio".into(),
                    tensor_io::values(vocoder.forward(get("mel")?)),
                );
            }
            Self::Clip(clip, Module::ClipImage) => {
                let pixels = tensor_io::tensor::<B, 4>(inputs, "pixels", device)?;
                out.insert(
                    "image_features".into(),
                    tensor_io::values(clip.image.encode(pixels)),
                );
            }
            Self::Synchformer(model) => {
                let video = tensor_io::tensor::<B, 6>(inputs, "video", device)?;
                out.insert("features".into(), tensor_io::values(model.encode(video)));
            }
            Self::Clip(clip, _) => {
                let tokens = tensor_io::tensor::<B, 2>(inputs, "tokens", device)?;
                out.insert(
                    "text_features".into(),
                    tensor_io::values(clip.text.encode(tokens.int())),
                );
            }
        }
        Ok(out)
    }
}

impl OnDevice for ModuleRun<'_> {
    type Output = Result<Timings, ModelError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let f = self.files;
        let inputs = tensor_io::read(f.inputs)?;
        let started = Instant::now();
        let loaded = Loaded::<B>::load(self.module, &f, &device)?;
        let load = started.elapsed().as_secs_f64();
        let mut runs = Vec::new();
        let mut out = TensorMap::new();
        for _ in 0..self.repeat.max(1) {
            let run_started = Instant::now();
            // The outputs are read back to the host, so the time includes the whole run.
            out = loaded.run(&inputs, &device)?;
            runs.push(run_started.elapsed().as_secs_f64());
        }
        tensor_io::write(f.output, &out)?;
        Ok(Timings { load, runs })
    }
}

/// Runs `module` on `device` `repeat` times (the outputs of the last run are written).
pub fn run_on(
    device: &Device,
    module: Module,
    files: Files<'_>,
    repeat: usize,
) -> Result<Timings, ModelError> {
    device.run(ModuleRun {
        module,
        files,
        repeat,
    })
}

/// A whole generation from files.
#[derive(Debug, Clone, Copy)]
pub struct PipelineRun<'a> {
    /// The model directory.
    pub model_dir: &'a Path,
    /// `clip_f`, `sync_f`, `text_f`, optional `negative_text_f`, and `x0`.
    pub inputs: &'a Path,
    /// `latent`, `mel`, `audio`.
    pub output: &'a Path,
    /// Euler steps.
    pub steps: usize,
    /// Guidance strength.
    pub cfg: f64,
    /// The attention kernel.
    pub attention: Kernel,
}

impl OnDevice for PipelineRun<'_> {
    type Output = Result<Timings, ModelError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let dir = ModelDir::open(self.model_dir)?;
        let inputs = tensor_io::read(self.inputs)?;
        let started = Instant::now();
        let model = dir.load::<B>(self.attention, &device)?;
        let run_started = Instant::now();
        let get = |name: &str| tensor_io::tensor::<B, 3>(&inputs, name, &device);
        let optional = |name: &str| inputs.contains_key(name).then(|| get(name)).transpose();
        let x0 = get("x0")?;
        let clip = get("clip_f")?;
        let sync = get("sync_f")?;
        let lengths = (clip.dims()[1], sync.dims()[1]);
        let features = Features {
            clip: Some(clip),
            sync: Some(sync),
            text: Some(get("text_f")?),
            negative_text: optional("negative_text_f")?,
        };
        let generated =
            model.generate(features, x0, lengths, (self.steps, self.cfg), |_, _| Ok(()))?;
        let mut out = TensorMap::new();
        out.insert("latent".into(), tensor_io::values(generated.latent));
        out.insert("mel".into(), tensor_io::values(generated.mel));
        out.insert("audio".into(), tensor_io::values(generated.audio));
        let timings = Timings {
            load: (run_started - started).as_secs_f64(),
            runs: vec![run_started.elapsed().as_secs_f64()],
        };
        tensor_io::write(self.output, &out)?;
        Ok(timings)
    }
}

/// Runs a generation on `device`.
pub fn pipeline_on(device: &Device, run: PipelineRun<'_>) -> Result<Timings, ModelError> {
    device.run(run)
}
