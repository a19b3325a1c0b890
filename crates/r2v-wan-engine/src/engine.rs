//! [`WanEngine`]: renders a [`Plan`] with a Wan reference-to-video checkpoint.
//!
//! Per shot: the shot's text (the preamble, then the shot) and the negative prompt go
//! through umT5; every reference (a still, or the middle frame of a reference video) is
//! a reference image; the noise comes from the plan's seed and the shot's index; the
//! preset picks the sampler (flash: 4 Euler steps over LightX2V's σ list without CFG, with
//! the directory's LoRA if it has one; standard: UniPC with CFG). The model generates at its
//! own size and rate (`max_area`, 16 fps) and decodes in 256-px tiles (diffusers' tiling), so
//! the VAE's memory does not grow with the frame size; the decoded frames are scaled (cover, then
//! centre-crop) to the output size and re-timed to 30 fps by nearest frame. Shots are joined
//! with hard cuts, so the total is the plan's frame count.

use crate::memory::{self, Parameters};
use image::{DynamicImage, RgbImage as Frame, imageops::FilterType};
use r2v_api::{ErrorDetail, LocItem, Preset, RequestError};
use r2v_engine::engine::{Engine, EngineError, FrameSink, LogLevel, ReferenceMedia, RenderCtx};
use r2v_engine::plan::Plan;
use r2v_wan::dit::WanTransformer;
use r2v_wan::lora::Lora;
use r2v_wan::model_dir::{ConditioningKind, ModelDir};
use r2v_wan::pipeline::{Generation, Method, Pipeline, ReferenceOrder, RgbImage, Sampler};
use r2v_wan::scheduler::Schedule;
use r2v_wan::text::TextEncoder;
use r2v_wan::vae::{Tiling, WanVae};
use r2v_wan::{Cpu, Precision, WanError};
use std::path::Path;
use std::sync::Mutex;

type B = Cpu;

/// Steps of the flash preset (LightX2V's 4-step distillation).
const FLASH_STEPS: usize = 4;
/// Steps of the standard preset unless `r2v.json` says otherwise.
const STANDARD_STEPS: usize = 30;
/// Guidance of the standard preset unless `r2v.json` says otherwise.
const STANDARD_GUIDANCE: f32 = 5.0;

/// How the engine is set up.
#[derive(Debug, Clone, Copy)]
pub struct WanOptions {
    /// Precision of the DiT and the text encoder (the VAE stays f32).
    pub precision: Precision,
    /// Bytes a generation may need; `None`: the machine's RAM.
    pub memory_budget: Option<u64>,
}

/// A loaded checkpoint behind the [`Engine`] trait. Weights load once, in [`WanEngine::open`].
pub struct WanEngine {
    dir: ModelDir,
    parameters: Parameters,
    precision: Precision,
    budget: u64,
    text: Mutex<TextEncoder<B>>,
    standard: Pipeline<B>,
    /// The flash preset's pipeline when the directory has a flash LoRA.
    flash: Option<Pipeline<B>>,
}

/// This machine's RAM, from `/proc/meminfo`.
fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

impl WanEngine {
    /// Inspects `path`, checks that a 5 s generation fits the budget, and loads the weights.
    pub fn open(path: &Path, options: WanOptions) -> Result<Self, WanError> {
        let dir = ModelDir::open(path)?;
        let Some((text_part, tokenizer)) = dir.text.clone() else {
            return Err(WanError::Config(format!(
                "{} has no text_encoder/ and tokenizer/: the engine needs them to read prompts",
                path.display()
            )));
        };
        let (parameters, _) = memory::parameters(&dir)?;
        let budget = options
            .memory_budget
            .or_else(total_memory)
            .unwrap_or(u64::MAX);
        let engine_size = Self::size_for(&dir, 16.0 / 9.0);
        let needed = memory::peak_bytes(
            &dir,
            &parameters,
            options.precision,
            (engine_size.0, engine_size.1, 81, 1),
        );
        if needed > budget {
            return Err(WanError::Config(format!(
                "{} needs about {:.1} GiB for a 5 s generation at {}×{}, over the memory budget of {:.1} GiB; \
                 lower max_area in r2v.json, use --wan-dtype bf16, or raise --memory-budget-gb",
                path.display(),
                gib(needed),
                engine_size.0,
                engine_size.1,
                gib(budget)
            )));
        }
        let device = Default::default();
        let text_len = dir.settings.text_len.unwrap_or(512);
        let text = TextEncoder::<B>::load(
            &tokenizer,
            dir.text_config()?
                .expect("the directory has a text encoder"),
            dir.weights(&text_part, options.precision)?,
            text_len,
            &device,
        )?;
        let method = match dir.kind {
            ConditioningKind::Vace => Method::Vace {
                scale: 1.0,
                order: ReferenceOrder::Diffusers,
            },
            ConditioningKind::Phantom => Method::Phantom {
                image_guidance: 5.0,
            },
        };
        let load = |lora: Option<Lora>| -> Result<Pipeline<B>, WanError> {
            let mut weights = dir.weights(&dir.transformer, options.precision)?;
            if let Some(lora) = lora {
                weights = weights.with_lora(lora);
            }
            let transformer =
                WanTransformer::load(dir.transformer_config.clone(), weights, &device)?;
            let vae = WanVae::load(
                dir.vae_config.clone(),
                dir.weights(&dir.vae, Precision::F32)?,
                &device,
            )?;
            Ok(Pipeline::new(transformer, vae, method)?.with_vae_tiling(Some(Tiling::default())))
        };
        let standard = load(None)?;
        let flash = dir
            .flash_lora()
            .map(|path| load(Some(Lora::open(&path, 1.0)?)))
            .transpose()?;
        tracing::info!(
            dir = %path.display(),
            kind = %memory::kind(&dir),
            flash_lora = flash.is_some(),
            "wan engine loaded"
        );
        Ok(Self {
            dir,
            parameters,
            precision: options.precision,
            budget,
            text: Mutex::new(text),
            standard,
            flash,
        })
    }

    /// The generation size for an output aspect ratio.
    fn size_for(dir: &ModelDir, aspect: f64) -> (usize, usize) {
        let multiple = dir.vae_config.scale_factor_spatial * dir.transformer_config.patch_size[1];
        memory::generation_size(dir.max_area(), aspect, multiple)
    }

    /// Frames the model generates for `output_frames` at `fps`: `1 + 4k` at its own rate.
    fn generated_frames(&self, output_frames: u32, fps: u32) -> usize {
        let t = self.dir.vae_config.scale_factor_temporal.max(1) as f64;
        let seconds = f64::from(output_frames) / f64::from(fps.max(1));
        let k = (seconds * f64::from(self.dir.fps()) / t).round().max(1.0);
        (k * t) as usize + 1
    }

    fn sampler(&self, preset: Preset) -> (Sampler, f32) {
        let shift = self.dir.flow_shift();
        match preset {
            Preset::Flash => (Sampler::flash(FLASH_STEPS, shift), 1.0),
            Preset::Standard => (
                Sampler::UniPc {
                    steps: self.dir.settings.steps.unwrap_or(STANDARD_STEPS),
                    shift,
                    schedule: Schedule::Diffusers,
                },
                self.dir.settings.guidance.unwrap_or(STANDARD_GUIDANCE),
            ),
        }
    }

    fn encode_text(&self, text: &str) -> Result<burn::prelude::Tensor<B, 3>, EngineError> {
        let encoder = self
            .text
            .lock()
            .map_err(|_| EngineError::Model("the text encoder is poisoned".into()))?;
        encoder.encode(text).map_err(model_error)
    }
}

fn model_error(e: WanError) -> EngineError {
    match e {
        WanError::Cancelled => EngineError::Cancelled,
        other => EngineError::Model(other.to_string()),
    }
}

/// The reference image the model sees: the still, or a reference video's middle frame.
fn key_frame(reference: &ReferenceMedia) -> RgbImage {
    let frame = match reference {
        ReferenceMedia::Image(image) => image,
        ReferenceMedia::Video(frames) => &frames[frames.len() / 2],
    };
    RgbImage {
        width: frame.width() as usize,
        height: frame.height() as usize,
        data: frame.as_raw().clone(),
    }
}

/// Standard normal noise from a seed: SplitMix64 and Box–Muller, the same on every machine.
fn gaussian(seed: u64, count: usize) -> Vec<f32> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut out = Vec::with_capacity(count + 1);
    while out.len() < count {
        let u1 = ((next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let u2 = (next() >> 11) as f64 / (1u64 << 53) as f64;
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        out.push((radius * angle.cos()) as f32);
        out.push((radius * angle.sin()) as f32);
    }
    out.truncate(count);
    out
}

/// `[1, 3, t, H, W]` in `[-1, 1]` → `t` RGB frames.
fn to_frames(chunk: burn::prelude::Tensor<B, 5>) -> Vec<Frame> {
    let [_, _, t, h, w] = chunk.dims();
    let values = chunk.into_data().to_vec::<f32>().unwrap_or_default();
    let plane = h * w;
    (0..t)
        .map(|f| {
            let mut data = Vec::with_capacity(plane * 3);
            for p in 0..plane {
                for c in 0..3 {
                    let v = values[(c * t + f) * plane + p];
                    data.push(((v * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8);
                }
            }
            Frame::from_raw(w as u32, h as u32, data).expect("exact size")
        })
        .collect()
}

impl Engine for WanEngine {
    fn name(&self) -> &'static str {
        "wan"
    }

    fn describe(&self) -> String {
        let (w, h) = Self::size_for(&self.dir, 16.0 / 9.0);
        let kind = memory::kind(&self.dir);
        format!(
            "wan ({kind}, a neural model, {} parameters): generates about {w}×{h} at {} fps, then scales and re-times to the output",
            self.parameters.transformer,
            self.dir.fps()
        )
    }

    fn admit(&self, plan: &Plan) -> Result<(), RequestError> {
        let (w, h) = Self::size_for(&self.dir, f64::from(plan.width) / f64::from(plan.height));
        let frames = plan
            .shots
            .iter()
            .map(|s| self.generated_frames(s.frames(), plan.fps))
            .max()
            .unwrap_or(1);
        let needed = memory::peak_bytes(
            &self.dir,
            &self.parameters,
            self.precision,
            (w, h, frames, plan.references.len()),
        );
        if needed <= self.budget {
            return Ok(());
        }
        Err(RequestError::Invalid(vec![ErrorDetail::new(
            vec![LocItem::from("body"), LocItem::from("duration")],
            "memory_budget_exceeded",
            format!(
                "a {frames}-frame shot at {w}×{h} with {} reference(s) needs about {:.1} GiB with this model; \
                 this deployment's budget is {:.1} GiB (use shorter shots or fewer references)",
                plan.references.len(),
                gib(needed),
                gib(self.budget)
            ),
        )]))
    }

    fn render(
        &self,
        plan: &Plan,
        references: &[ReferenceMedia],
        ctx: &mut dyn RenderCtx,
        sink: &mut dyn FrameSink,
    ) -> Result<(), EngineError> {
        let pipeline = match plan.preset {
            Preset::Flash => self.flash.as_ref().unwrap_or(&self.standard),
            Preset::Standard => &self.standard,
        };
        let (sampler, guidance) = self.sampler(plan.preset);
        let steps = sampler.timesteps().len();
        let (gw, gh) = Self::size_for(&self.dir, f64::from(plan.width) / f64::from(plan.height));
        let images: Vec<RgbImage> = references.iter().map(key_frame).collect();
        let phantom = matches!(pipeline.method(), Method::Phantom { .. });
        let negative = (guidance > 1.0 || phantom)
            .then(|| self.encode_text(&plan.negative_prompt))
            .transpose()?;
        let device = Default::default();
        // Every shot is conditioned on the same references: encode them once.
        let encoded = pipeline
            .encode_references(&images, gh, gw, &device)
            .map_err(model_error)?;
        let total = (plan.shots.len() * steps) as u64;
        ctx.log(
            LogLevel::Info,
            &format!(
                "wan: {} shot(s), {steps} {} steps each at {gw}×{gh}, {} reference image(s), guidance {guidance}",
                plan.shots.len(),
                match plan.preset {
                    Preset::Flash => "flash (Euler, distilled σ list)",
                    Preset::Standard => "standard (UniPC)",
                },
                images.len()
            ),
        );
        for (index, shot) in plan.shots.iter().enumerate() {
            let text = [plan.preamble.trim(), shot.text.trim()]
                .iter()
                .filter(|t| !t.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            let prompt = self.encode_text(&text)?;
            let frames = self.generated_frames(shot.frames(), plan.fps);
            let shape = pipeline.latent_shape(gh, gw, frames, images.len());
            let noise_seed = plan.seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
            let noise = burn::prelude::Tensor::<B, 5>::from_data(
                burn::prelude::TensorData::new(gaussian(noise_seed, shape.iter().product()), shape),
                &device,
            );
            let generation = Generation {
                prompt,
                negative: negative.clone(),
                references: images.clone(),
                height: gh,
                width: gw,
                num_frames: frames,
                sampler: sampler.clone(),
                guidance,
                noise,
            };
            let done_before = (index * steps) as u64;
            let latents = pipeline
                .sample_encoded(&generation, &encoded, |k, n, _| {
                    ctx.progress("denoise", done_before + k as u64, total);
                    ctx.log(
                        LogLevel::Info,
                        &format!(
                            "denoise: shot {}/{}, step {k}/{n}",
                            index + 1,
                            plan.shots.len()
                        ),
                    );
                    if ctx.cancelled() {
                        Err(WanError::Cancelled)
                    } else {
                        Ok(())
                    }
                })
                .map_err(model_error)?;
            let video = pipeline.video_latents(latents, images.len());
            let mut generated: Vec<Frame> = Vec::with_capacity(frames);
            pipeline
                .decode(video, |chunk| {
                    generated.extend(to_frames(chunk));
                    Ok(())
                })
                .map_err(model_error)?;
            ctx.log(
                LogLevel::Info,
                &format!(
                    "decode: shot {}/{}: {} frames at {gw}×{gh} → {} at {} fps, {}×{}",
                    index + 1,
                    plan.shots.len(),
                    generated.len(),
                    shot.frames(),
                    plan.fps,
                    plan.width,
                    plan.height
                ),
            );
            let mut cache: Option<(usize, Frame)> = None;
            for j in 0..shot.frames() {
                if ctx.cancelled() {
                    return Err(EngineError::Cancelled);
                }
                let seconds = f64::from(j) / f64::from(plan.fps);
                let source = ((seconds * f64::from(self.dir.fps())).round() as usize)
                    .min(generated.len() - 1);
                if cache.as_ref().map(|(i, _)| *i) != Some(source) {
                    let frame = generated[source].clone();
                    let scaled = if (gw, gh) == (plan.width as usize, plan.height as usize) {
                        frame
                    } else {
                        DynamicImage::ImageRgb8(frame)
                            .resize_to_fill(plan.width, plan.height, FilterType::Triangle)
                            .to_rgb8()
                    };
                    cache = Some((source, scaled));
                }
                let (_, frame) = cache.as_ref().expect("just set");
                sink.frame(frame.as_raw())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_standard_normal_and_seeded() {
        let a = gaussian(7, 20_000);
        assert_eq!(a, gaussian(7, 20_000));
        assert_ne!(a, gaussian(8, 20_000));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }
}
