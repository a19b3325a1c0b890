//! `r2v wan …` (module and pipeline runs on tensor files, mirroring diffusers) and
//! `r2v models inspect`.

use crate::cli::{
    DtypeArg, ModelsArgs, ModelsCommand, ReferenceOrderArg, ScheduleArg, WanArgs, WanCommand,
    WanModuleArg, WanPipelineArgs,
};
use crate::commands::Exit;
use anyhow::{Context, bail};
use r2v_wan::Precision;
use r2v_wan::dit::WanTransformer;
use r2v_wan::forward::{self, Files, Module};
use r2v_wan::model_dir::{ConditioningKind, ModelDir};
use r2v_wan::pipeline::{Generation, Method, Pipeline, ReferenceOrder, RgbImage, Sampler};
use r2v_wan::scheduler::Schedule;
use r2v_wan::tensor_io::{self, TensorMap};
use r2v_wan::vae::{Tiling, WanVae};

/// The precision a `--dtype`/`--wan-dtype` names.
pub fn precision(dtype: DtypeArg) -> Precision {
    match dtype {
        DtypeArg::F32 => Precision::F32,
        DtypeArg::Bf16 => Precision::Bf16,
    }
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
            };
            let timings = if a.cuda {
                #[cfg(feature = "cuda")]
                {
                    forward::run::<r2v_wan::Gpu>(
                        module,
                        files,
                        a.repeat,
                        &r2v_wan::GpuDevice::default(),
                    )?
                }
                #[cfg(not(feature = "cuda"))]
                bail!("--cuda needs r2v built with `--features cuda`");
            } else {
                forward::run::<r2v_wan::Cpu>(module, files, a.repeat, &Default::default())?
            };
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
        WanCommand::Pipeline(a) => pipeline(&a),
    }
}

/// `r2v wan pipeline`: diffusers' `WanVACEPipeline` call on tensors from a file.
fn pipeline(a: &WanPipelineArgs) -> anyhow::Result<Exit> {
    type B = r2v_wan::Cpu;
    let device = Default::default();
    let dir = ModelDir::open(&a.model_dir)?;
    let p = precision(a.dtype);
    let transformer = WanTransformer::<B>::load(
        dir.transformer_config.clone(),
        dir.weights(&dir.transformer, p)?,
        &device,
    )?;
    let vae = WanVae::<B>::load(
        dir.vae_config.clone(),
        dir.weights(&dir.vae, Precision::F32)?,
        &device,
    )?;
    let method = match dir.kind {
        ConditioningKind::Vace => Method::Vace {
            scale: a.conditioning_scale,
            order: match a.reference_order {
                ReferenceOrderArg::Diffusers => ReferenceOrder::Diffusers,
                ReferenceOrderArg::Official => ReferenceOrder::Official,
            },
        },
        ConditioningKind::Phantom => Method::Phantom {
            image_guidance: 5.0,
        },
    };
    let pipeline = Pipeline::new(transformer, vae, method)?;
    let inputs = tensor_io::read(&a.inputs)?;
    let mut references = Vec::new();
    while let Some((shape, values)) = inputs.get(&format!("ref_image_{}_hwc_u8", references.len()))
    {
        let [height, width, 3] = shape[..] else {
            bail!("ref_image_{}_hwc_u8 must be [H, W, 3]", references.len());
        };
        references.push(RgbImage {
            width,
            height,
            data: values.iter().map(|&v| v.clamp(0.0, 255.0) as u8).collect(),
        });
    }
    let shift = a.shift.unwrap_or_else(|| dir.flow_shift());
    let (sampler, default_guidance) = match a.schedule {
        ScheduleArg::Unipc => (
            Sampler::UniPc {
                steps: a.steps,
                shift,
                schedule: Schedule::Diffusers,
            },
            5.0,
        ),
        ScheduleArg::Flash => (Sampler::flash(a.steps, shift), 1.0),
    };
    let generation = Generation {
        prompt: tensor_io::tensor(&inputs, "prompt_embeds", &device)?,
        negative: inputs
            .contains_key("negative_prompt_embeds")
            .then(|| tensor_io::tensor(&inputs, "negative_prompt_embeds", &device))
            .transpose()?,
        references,
        height: a.height,
        width: a.width,
        num_frames: a.num_frames,
        sampler,
        guidance: a.guidance.unwrap_or(default_guidance),
        noise: tensor_io::tensor(&inputs, "initial_latents", &device)?,
    };
    let n_refs = generation.references.len();
    let mut outputs = TensorMap::new();
    let started = std::time::Instant::now();
    let mut last = started;
    let mut step_seconds = Vec::new();
    let latents = pipeline.sample(&generation, |k, n, latents| {
        let now = std::time::Instant::now();
        step_seconds.push((now - last).as_secs_f64());
        eprintln!("step {k}/{n}: {:.3} s", (now - last).as_secs_f64());
        last = now;
        outputs.insert(
            format!("latents_after_step{}", k - 1),
            tensor_io::values(latents.clone()),
        );
        Ok(())
    })?;
    let video = pipeline.video_latents(latents, n_refs);
    outputs.insert("final_latents".to_owned(), tensor_io::values(video.clone()));
    let decode_started = std::time::Instant::now();
    outputs.insert(
        "decoded_video".to_owned(),
        tensor_io::values(pipeline.decode_all(video)?),
    );
    let decode = decode_started.elapsed().as_secs_f64();
    tensor_io::write(&a.output, &outputs)?;
    println!("wrote {}", a.output.display());
    println!(
        "{}",
        serde_json::json!({
            "step_s": step_seconds,
            "vae_decode_s": decode,
            "total_s": started.elapsed().as_secs_f64(),
        })
    );
    Ok(Exit::Ok)
}

/// `r2v models`.
pub fn models(args: ModelsArgs) -> anyhow::Result<Exit> {
    match args.command {
        ModelsCommand::Inspect { dir, json } => {
            let model =
                ModelDir::open(&dir).with_context(|| format!("inspecting {}", dir.display()))?;
            let report = r2v_wan_engine::inspect(&model)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(Exit::Ok)
        }
    }
}
