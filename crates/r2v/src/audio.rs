//! `r2v audio forward|pipeline` (MMAudio's modules and a generation from conditions, on
//! tensor files), and the audio stage `--audio-model-dir` adds to `run`, `serve` and
//! `worker`.

use crate::cli::{AudioArgs, AudioCommand, AudioModuleArg, WanEngineArgs};
use crate::commands::Exit;
use anyhow::Context;
use r2v_audio::forward::{self, Files, Module, PipelineRun};
use r2v_engine::audio::AudioStage;
use std::path::Path;
use std::sync::Arc;

/// `r2v audio`.
pub fn audio(args: AudioArgs) -> anyhow::Result<Exit> {
    let timings = match args.command {
        AudioCommand::Forward(a) => {
            let (device, attention) = crate::wan::device(&a.device, r2v_wan::Precision::F32)?;
            let module = match a.module {
                AudioModuleArg::Net => Module::Net,
                AudioModuleArg::VaeDecode => Module::VaeDecode,
                AudioModuleArg::Vocoder => Module::Vocoder,
                AudioModuleArg::ClipImage => Module::ClipImage,
                AudioModuleArg::ClipText => Module::ClipText,
                AudioModuleArg::Synchformer => Module::Synchformer,
            };
            let files = Files {
                config: &a.config,
                weights: &a.weights,
                inputs: &a.inputs,
                output: &a.output,
                attention,
            };
            let timings = forward::run_on(&device, module, files, a.repeat)?;
            println!("wrote {}", a.output.display());
            timings
        }
        AudioCommand::Pipeline(a) => {
            let (device, attention) = crate::wan::device(&a.device, r2v_wan::Precision::F32)?;
            let run = PipelineRun {
                model_dir: &a.model_dir,
                inputs: &a.inputs,
                output: &a.output,
                steps: a.steps,
                cfg: a.cfg,
                attention,
            };
            let timings = forward::pipeline_on(&device, run)?;
            println!("wrote {}", a.output.display());
            timings
        }
    };
    println!(
        "load {:.3} s; run {:.4} s median of {}",
        timings.load,
        timings.median(),
        timings.runs.len()
    );
    Ok(Exit::Ok)
}

/// The audio stage `--audio-model-dir` names, loaded on the engine's device (GPU kernels
/// cached as the wan engine's are), or `None`.
pub fn stage(
    args: &WanEngineArgs,
    kernel_cache: &Path,
) -> anyhow::Result<Option<Arc<dyn AudioStage>>> {
    let Some(dir) = &args.audio_model_dir else {
        return Ok(None);
    };
    let request = args.device.unwrap_or_default();
    let device = request
        .resolve()
        .with_context(|| format!("--device {request}"))?;
    device.use_kernel_cache(args.kernel_cache.as_deref().unwrap_or(kernel_cache))?;
    let stage = r2v_audio_engine::open(dir, &device)
        .with_context(|| format!("loading the audio model from {}", dir.display()))?;
    tracing::info!(stage = %stage.describe(), "audio stage");
    Ok(Some(stage))
}
