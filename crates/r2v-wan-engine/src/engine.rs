//! [`WanEngine`]: renders a [`Plan`] with a Wan reference-to-video checkpoint on any burn
//! backend; [`open`] picks the backend for a device and boxes the engine behind [`Engine`].
//!
//! Per shot: the shot's text (the preamble, then the shot) and the negative prompt go
//! through umT5; every reference (a still, or the middle frame of a reference video) is
//! a reference image; the noise comes from the plan's seed and the shot's index; the
//! preset picks the sampler (`ModelDir::sampler`: flash is 4 Euler steps over LightX2V's
//! fixed σ list without CFG, with the directory's LoRA if it has one; standard is UniPC with
//! CFG). The model generates at its own size and rate (`max_area`, 16 fps) and decodes in
//! 256-px tiles (diffusers' tiling), so the VAE's memory does not grow with the frame size;
//! the decoded frames are scaled (cover, then centre-crop) to the output size and re-timed
//! to 30 fps by nearest frame. Shots are joined with hard cuts, so the total is the plan's
//! frame count.
//!
//! Memory: the budget is the device's (its free memory when the engine opens, or the
//! operator's `--memory-budget-gb`). The DiT and the VAE stay resident; umT5 too when it
//! fits, else each request loads it for its text stage ([`memory::Plan`]). Each render
//! reserves its working memory in a [`MemoryGate`] first, so renders on one engine queue
//! rather than oversubscribe the device.

use crate::memory::{self, Footprint, MemoryGate, Parameters, WeightBytes, Working};
use burn::prelude::*;
use image::{DynamicImage, RgbImage as Frame, imageops::FilterType};
use r2v_api::{ErrorDetail, LocItem, Preset, RequestError};
use r2v_engine::engine::{Engine, EngineError, FrameSink, LogLevel, ReferenceMedia, RenderCtx};
use r2v_engine::plan::Plan;
use r2v_wan::device::{Device, OnDevice};
use r2v_wan::model_dir::{LoadOptions, ModelDir, SamplingPreset};
use r2v_wan::pipeline::{Generation, Method, Pipeline, RgbImage};
use r2v_wan::text::TextEncoder;
use r2v_wan::vae::Tiling;
use r2v_wan::{Precision, WanError};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How the engine is set up.
#[derive(Debug, Clone, Copy, Default)]
pub struct WanOptions {
    /// Precision of the DiT and the text encoder (the VAE stays f32); `None`: the device's
    /// default (bf16 on CUDA, f32 elsewhere).
    pub precision: Option<Precision>,
    /// Bytes the engine may use on its device; `None`: what the device had free when the
    /// engine opened.
    pub memory_budget: Option<u64>,
}

/// umT5: loaded once, or for each request's text stage.
enum TextStage<B: Backend> {
    Resident(Mutex<TextEncoder<B>>),
    OnDemand,
}

/// A loaded checkpoint on one device, behind the [`Engine`] trait.
pub struct WanEngine<B: Backend> {
    dir: ModelDir,
    device: Device,
    backend_device: B::Device,
    parameters: Parameters,
    precision: Precision,
    load: LoadOptions,
    plan: memory::Plan,
    gate: MemoryGate,
    text: TextStage<B>,
    standard: Pipeline<B>,
    /// The flash preset's pipeline when the directory has a flash LoRA.
    flash: Option<Pipeline<B>>,
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

/// Opens the engine for `path` on `device`, with the backend that device needs.
pub fn open(
    path: &Path,
    device: &Device,
    options: WanOptions,
) -> Result<Arc<dyn Engine>, WanError> {
    struct Open<'a> {
        path: &'a Path,
        device: &'a Device,
        options: WanOptions,
    }
    impl OnDevice for Open<'_> {
        type Output = Result<Arc<dyn Engine>, WanError>;
        fn run<B: Backend>(self, backend_device: B::Device) -> Self::Output {
            let engine =
                WanEngine::<B>::open(self.path, self.device.clone(), backend_device, self.options)?;
            Ok(Arc::new(engine))
        }
    }
    device.run(Open {
        path,
        device,
        options,
    })
}

impl<B: Backend> WanEngine<B> {
    /// Inspects `path`, plans memory for a 5 s generation on `device`, and loads the
    /// weights there.
    pub fn open(
        path: &Path,
        device: Device,
        backend_device: B::Device,
        options: WanOptions,
    ) -> Result<Self, WanError> {
        let dir = ModelDir::open(path)?;
        if dir.text.is_none() {
            return Err(WanError::Config(format!(
                "{} has no text_encoder/ and tokenizer/: the engine needs them to read prompts",
                path.display()
            )));
        }
        let precision = options
            .precision
            .unwrap_or_else(|| device.kind.default_precision());
        if !device.kind.supports(precision) {
            return Err(WanError::Device(format!(
                "{device} does not compute in bf16; use --wan-dtype f32"
            )));
        }
        let (parameters, _) = memory::parameters(&dir)?;
        let budget = options
            .memory_budget
            .or_else(|| device.memory.map(|m| m.available))
            .or_else(|| r2v_wan::device::host_memory().map(|m| m.available))
            .unwrap_or(u64::MAX);
        let flash_lora = dir.flash_lora_weights()?;
        let copies = if flash_lora.is_some() { 2 } else { 1 };
        let weights = WeightBytes::of(&parameters, precision, copies);
        let (gw, gh) = Self::size_for(&dir, 16.0 / 9.0);
        let five_seconds = memory::working(&dir, (gw, gh, 81, 1));
        let Some(plan) = memory::Plan::new(&weights, &five_seconds, device.kind, budget) else {
            let needed = Footprint::of(&weights, &five_seconds, device.kind).device;
            return Err(WanError::Config(format!(
                "{} needs about {:.1} GiB on {device} for a 5 s generation at {gw}×{gh}, over the memory budget of {:.1} GiB; \
                 lower max_area in r2v.json, use --wan-dtype bf16, or raise --memory-budget-gb",
                path.display(),
                gib(needed),
                gib(budget)
            )));
        };
        let load = LoadOptions {
            precision,
            attention: device.kind.attention(precision),
        };
        let text = if plan.text_resident {
            TextStage::Resident(Mutex::new(dir.text_encoder(load, &backend_device)?))
        } else {
            TextStage::OnDemand
        };
        let pipeline = |lora| -> Result<Pipeline<B>, WanError> {
            Ok(dir
                .pipeline(load, dir.method(), lora, &backend_device)?
                .with_vae_tiling(Some(Tiling::default())))
        };
        let standard = pipeline(None)?;
        let flash = flash_lora.map(|lora| pipeline(Some(lora))).transpose()?;
        tracing::info!(
            dir = %path.display(),
            kind = %memory::kind(&dir),
            %device,
            dtype = ?precision,
            budget_gib = gib(plan.budget),
            resident_gib = gib(plan.resident),
            text_encoder = if plan.text_resident { "resident" } else { "loaded per request" },
            flash_lora = flash.is_some(),
            "wan engine loaded"
        );
        Ok(Self {
            gate: MemoryGate::new(plan.capacity()),
            dir,
            device,
            backend_device,
            parameters,
            precision,
            load,
            plan,
            text,
            standard,
            flash,
        })
    }

    /// The most bytes that renders have held at once beside the resident weights, and the
    /// capacity they share (the budget less the resident weights).
    pub fn working_memory(&self) -> (u64, u64) {
        (self.gate.peak(), self.plan.capacity())
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

    /// What one shot of `plan` needs beside the resident weights, at the largest shot.
    fn working(&self, plan: &Plan) -> (Working, usize, (usize, usize)) {
        let (w, h) = Self::size_for(&self.dir, f64::from(plan.width) / f64::from(plan.height));
        let frames = plan
            .shots
            .iter()
            .map(|s| self.generated_frames(s.frames(), plan.fps))
            .max()
            .unwrap_or(1);
        (
            memory::working(&self.dir, (w, h, frames, plan.references.len())),
            frames,
            (w, h),
        )
    }

    /// Every text of the request through umT5 (loaded for the occasion when it is not
    /// resident): the negative prompt first when it is used, then one per shot.
    fn encode_texts(
        &self,
        negative: Option<&str>,
        shots: &[String],
    ) -> Result<(Option<Tensor<B, 3>>, Vec<Tensor<B, 3>>), EngineError> {
        let run = |encoder: &TextEncoder<B>| -> Result<_, WanError> {
            let negative = negative.map(|n| encoder.encode(n)).transpose()?;
            let prompts = shots
                .iter()
                .map(|s| encoder.encode(s))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((negative, prompts))
        };
        match &self.text {
            TextStage::Resident(encoder) => {
                let encoder = encoder
                    .lock()
                    .map_err(|_| EngineError::Model("the text encoder is poisoned".into()))?;
                run(&encoder).map_err(model_error)
            }
            TextStage::OnDemand => {
                let encoder = self
                    .dir
                    .text_encoder::<B>(self.load, &self.backend_device)
                    .map_err(model_error)?;
                run(&encoder).map_err(model_error)
            }
        }
    }
}

/// Deterministic model errors (shapes, configuration) fail the request at once; the rest
/// (a device or I/O error) may pass on another attempt.
fn model_error(e: WanError) -> EngineError {
    match e {
        WanError::Cancelled => EngineError::Cancelled,
        e @ (WanError::Shape(_) | WanError::Config(_) | WanError::Weights(_)) => {
            EngineError::Refused(e.to_string())
        }
        e @ (WanError::Io { .. } | WanError::Device(_)) => EngineError::Model(e.to_string()),
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
fn to_frames<B: Backend>(chunk: Tensor<B, 5>) -> Result<Vec<Frame>, EngineError> {
    let [_, _, t, h, w] = chunk.dims();
    let values = chunk
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| EngineError::Model(format!("reading the decoded frames: {e:?}")))?;
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
            Frame::from_raw(w as u32, h as u32, data)
                .ok_or_else(|| EngineError::Model(format!("a decoded frame is not {w}×{h}")))
        })
        .collect()
}

impl<B: Backend> Engine for WanEngine<B> {
    fn name(&self) -> &'static str {
        "wan"
    }

    fn describe(&self) -> String {
        let (w, h) = Self::size_for(&self.dir, 16.0 / 9.0);
        format!(
            "wan ({}, a neural model, {} parameters, {} on {}): generates about {w}×{h} at {} fps, then scales and re-times to the output",
            memory::kind(&self.dir),
            self.parameters.transformer,
            match self.precision {
                Precision::F32 => "f32",
                Precision::Bf16 => "bf16",
            },
            self.device,
            self.dir.fps()
        )
    }

    fn admit(&self, plan: &Plan) -> Result<(), RequestError> {
        let (working, frames, (w, h)) = self.working(plan);
        let needed = self.plan.reservation(&working, self.device.kind);
        if needed <= self.plan.capacity() {
            return Ok(());
        }
        Err(RequestError::Invalid(vec![ErrorDetail::new(
            vec![LocItem::from("body"), LocItem::from("duration")],
            "memory_budget_exceeded",
            format!(
                "a {frames}-frame shot at {w}×{h} with {} reference(s) needs about {:.1} GiB with this model; \
                 this deployment's budget is {:.1} GiB (use shorter shots or fewer references)",
                plan.references.len(),
                gib(self.plan.resident + needed),
                gib(self.plan.budget)
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
        let (working, _, (gw, gh)) = self.working(plan);
        let bytes = self.plan.reservation(&working, self.device.kind);
        let mut waited = None;
        let reservation =
            self.gate
                .reserve(bytes, |in_use| waited = Some(in_use), || ctx.cancelled());
        if let Some(in_use) = waited {
            ctx.log(
                LogLevel::Info,
                &format!(
                    "memory: waited for other renders on {} to free memory ({:.1} GiB of {:.1} GiB were in use)",
                    self.device,
                    gib(in_use),
                    gib(self.plan.capacity())
                ),
            );
        }
        let Some(_reservation) = reservation else {
            return Err(EngineError::Cancelled);
        };
        let pipeline = match plan.preset {
            Preset::Flash => self.flash.as_ref().unwrap_or(&self.standard),
            Preset::Standard => &self.standard,
        };
        let preset = match plan.preset {
            Preset::Flash => SamplingPreset::Flash,
            Preset::Standard => SamplingPreset::Standard,
        };
        let (sampler, guidance) = self.dir.sampler(preset);
        let steps = sampler.timesteps().len();
        let images: Vec<RgbImage> = references.iter().map(key_frame).collect();
        let phantom = matches!(pipeline.method(), Method::Phantom { .. });
        let texts: Vec<String> = plan
            .shots
            .iter()
            .map(|shot| {
                [plan.preamble.trim(), shot.text.trim()]
                    .iter()
                    .filter(|t| !t.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        ctx.log(
            LogLevel::Info,
            &format!(
                "encode text: {} prompt(s){} with umT5{}",
                texts.len(),
                if guidance > 1.0 || phantom {
                    " and the negative prompt"
                } else {
                    ""
                },
                if matches!(self.text, TextStage::OnDemand) {
                    " (loaded for this request: it does not fit beside the DiT)"
                } else {
                    ""
                }
            ),
        );
        let (negative, prompts) = self.encode_texts(
            (guidance > 1.0 || phantom).then_some(plan.negative_prompt.as_str()),
            &texts,
        )?;
        let frame_counts: Vec<usize> = plan
            .shots
            .iter()
            .map(|s| self.generated_frames(s.frames(), plan.fps))
            .collect();
        // Every shot is conditioned on the same references: encode them once.
        let encoded = pipeline
            .encode(&images, gh, gw, &frame_counts, &self.backend_device)
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
        for (index, ((shot, prompt), &frames)) in plan
            .shots
            .iter()
            .zip(prompts)
            .zip(&frame_counts)
            .enumerate()
        {
            let shape = pipeline.latent_shape(gh, gw, frames, images.len());
            let noise_seed = plan.seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
            let noise = Tensor::<B, 5>::from_data(
                TensorData::new(gaussian(noise_seed, shape.iter().product()), shape),
                (&self.backend_device, burn::tensor::DType::F32),
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
            let mut decoded = Ok(());
            pipeline
                .decode(video, |chunk| {
                    match to_frames(chunk) {
                        Ok(frames) => generated.extend(frames),
                        Err(e) => decoded = Err(e),
                    }
                    Ok(())
                })
                .map_err(model_error)?;
            decoded?;
            let Some(last) = generated.len().checked_sub(1) else {
                return Err(EngineError::Refused(format!(
                    "the VAE decoded no frames for shot {}",
                    index + 1
                )));
            };
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
                let source = ((seconds * f64::from(self.dir.fps())).round() as usize).min(last);
                let frame = match cache.take() {
                    Some((i, frame)) if i == source => frame,
                    _ => {
                        let frame = generated[source].clone();
                        if (gw, gh) == (plan.width as usize, plan.height as usize) {
                            frame
                        } else {
                            DynamicImage::ImageRgb8(frame)
                                .resize_to_fill(plan.width, plan.height, FilterType::Triangle)
                                .to_rgb8()
                        }
                    }
                };
                sink.frame(frame.as_raw())?;
                cache = Some((source, frame));
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
