//! `r2v wan …` (module and pipeline runs on tensor files, mirroring diffusers) and
//! `r2v models inspect`, on the device the user picks.

use crate::cli::{
    AttentionArg, DtypeArg, ModelsArgs, ModelsCommand, ReferenceOrderArg, ScheduleArg, WanArgs,
    WanCommand, WanDeviceArgs, WanModuleArg,
};
use crate::commands::Exit;
use anyhow::Context;
use r2v_wan::Precision;
use r2v_wan::attention::Kernel;
use r2v_wan::device::Device;
use r2v_wan::forward::{self, Files, Module, PipelineRun, Schedules};
use r2v_wan::model_dir::{LoadOptions, ModelDir};
use r2v_wan::pipeline::ReferenceOrder;
use r2v_wan::vae::Tiling;
use std::path::PathBuf;

/// The precision a `--dtype`/`--wan-dtype` names.
pub fn precision(dtype: DtypeArg) -> Precision {
    match dtype {
        DtypeArg::F32 => Precision::F32,
        DtypeArg::Bf16 => Precision::Bf16,
    }
}

/// Where GPU kernels are cached unless told otherwise.
pub fn default_kernel_cache() -> PathBuf {
    r2v_server::config::default_data_dir().join("kernels")
}

/// The device `args` name, present, with its kernel cache set up, and the attention kernel
/// for `precision` there.
pub fn device(args: &WanDeviceArgs, precision: Precision) -> anyhow::Result<(Device, Kernel)> {
    let device = args
        .device
        .resolve()
        .with_context(|| format!("--device {}", args.device))?;
    eprintln!("device: {device}");
    device.use_kernel_cache(
        &args
            .kernel_cache
            .clone()
            .unwrap_or_else(default_kernel_cache),
    )?;
    let attention = match args.attention {
        Some(AttentionArg::Flash) => Kernel::Flash { stage: 128 },
        Some(AttentionArg::Backend) => Kernel::Backend,
        None => device.kind.attention(precision),
    };
    Ok((device, attention))
}

/// `r2v wan`.
pub fn wan(args: WanArgs) -> anyhow::Result<Exit> {
    match args.command {
        WanCommand::Forward(a) => {
            let module = match a.module {
                WanModuleArg::Dit => Module::Dit,
                WanModuleArg::Vace => Module::Vace,
                WanModuleArg::VaeEncode => Module::VaeEncode,
                WanModuleArg::VaeDecode => Module::VaeDecode,
                WanModuleArg::Umt5 => Module::Umt5,
            };
            let (device, attention) = device(&a.device, precision(a.dtype))?;
            let files = Files {
                config: &a.config,
                weights: &a.weights,
                inputs: &a.inputs,
                output: &a.output,
                precision: precision(a.dtype),
                lora: a.lora.as_deref().map(|path| (path, a.lora_strength)),
                vae_tiling: a.vae_tile.map(|tile| Tiling {
                    tile,
                    stride: tile * 3 / 4,
                }),
                attention,
            };
            let timings = forward::run_on(&device, module, files, a.repeat)?;
            let mut sorted = timings.forwards.clone();
            sorted.sort_by(f64::total_cmp);
            println!("wrote {}", a.output.display());
            println!(
                "load {:.3} s; forward {:.4} s median of {} (first {:.4} s)",
                timings.load,
                sorted[sorted.len() / 2],
                sorted.len(),
                timings.forwards[0]
            );
            Ok(Exit::Ok)
        }
        WanCommand::Pipeline(a) => {
            let (device, attention) = device(&a.device, precision(a.dtype))?;
            let run = PipelineRun {
                model_dir: &a.model_dir,
                inputs: &a.inputs,
                output: &a.output,
                height: a.height,
                width: a.width,
                num_frames: a.num_frames,
                steps: a.steps,
                schedule: match a.schedule {
                    ScheduleArg::Unipc => Schedules::UniPc,
                    ScheduleArg::Flash => Schedules::Flash,
                },
                guidance: a.guidance,
                shift: a.shift,
                conditioning_scale: a.conditioning_scale,
                reference_order: a.reference_order.map(|order| match order {
                    ReferenceOrderArg::Diffusers => ReferenceOrder::Diffusers,
                    ReferenceOrderArg::Official => ReferenceOrder::Official,
                }),
                options: LoadOptions {
                    precision: precision(a.dtype),
                    attention,
                },
            };
            let report = forward::pipeline_on(&device, run)?;
            println!("wrote {}", a.output.display());
            println!("{}", serde_json::to_string(&report)?);
            Ok(Exit::Ok)
        }
    }
}

/// `r2v models`.
pub fn models(args: ModelsArgs) -> anyhow::Result<Exit> {
    match args.command {
        ModelsCommand::Inspect { dir, device, json } => {
            if dir.join("mmaudio.json").is_file() {
                let report = r2v_audio_engine::inspect(&dir)
                    .with_context(|| format!("inspecting {}", dir.display()))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{}", report.to_text());
                }
                return Ok(Exit::Ok);
            }
            let model =
                ModelDir::open(&dir).with_context(|| format!("inspecting {}", dir.display()))?;
            let device = device
                .resolve()
                .with_context(|| format!("--device {device}"))?;
            let report = r2v_wan_engine::inspect(&model, &device)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(Exit::Ok)
        }
    }
}
