//! [`MmaudioStage`]: the [`AudioStage`] for one loaded model.

use burn::prelude::*;
use image::RgbImage;
use r2v_audio::clip::{Clip, ClipConfig, ClipTokenizer};
use r2v_audio::config::{CLIP_FPS, SYNC_FPS, Sequence};
use r2v_audio::model_dir::ModelDir;
use r2v_audio::pipeline::{AudioModel, Features};
use r2v_audio::sampler::DEFAULT_CFG;
use r2v_audio::synchformer::{SEGMENT_FRAMES, SEGMENT_STEP, Synchformer};
use r2v_audio::{ModelError, sampler};
use r2v_engine::audio::{AudioStage, Fit, FrameRequest, FrameSet};
use r2v_engine::engine::LogLevel;
use r2v_engine::{EngineError, Plan, RenderCtx};
use r2v_media::video::AudioPcm;
use r2v_wan::device::{Device, OnDevice};
use r2v_wan::weights::Weights;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::Arc;

/// Euler steps per track (upstream's default).
pub const DEFAULT_STEPS: usize = sampler::DEFAULT_STEPS;

/// CLIP frames encoded per batch.
const CLIP_BATCH: usize = 8;

struct MmaudioStage<B: Backend> {
    dir: ModelDir,
    device_name: String,
    device: B::Device,
    model: AudioModel<B>,
    clip: Clip<B>,
    tokenizer: ClipTokenizer,
    synchformer: Synchformer<B>,
}

/// Opens the model directory `path` and loads it on `device`: every inconsistency of the
/// directory (variant, vocoder, sample rate, CLIP widths) and every weight problem is an
/// error here, before any request.
pub fn open(path: &Path, device: &Device) -> Result<Arc<dyn AudioStage>, ModelError> {
    struct Open<'a> {
        path: &'a Path,
        device: &'a Device,
    }
    impl OnDevice for Open<'_> {
        type Output = Result<Arc<dyn AudioStage>, ModelError>;
        fn run<B: Backend>(self, backend_device: B::Device) -> Self::Output {
            let dir = ModelDir::open(self.path)?;
            let kernel = self.device.kind.attention(r2v_wan::Precision::F32);
            let model = dir.load::<B>(kernel, &backend_device)?;
            let (clip, tokenizer) = load_clip::<B>(&dir, kernel, &backend_device)?;
            let synchformer = load_synchformer::<B>(&dir, kernel, &backend_device)?;
            Ok(Arc::new(MmaudioStage {
                synchformer,
                device_name: self.device.to_string(),
                dir,
                device: backend_device,
                model,
                clip,
                tokenizer,
            }))
        }
    }
    device.run(Open { path, device })
}

fn load_clip<B: Backend>(
    dir: &ModelDir,
    kernel: r2v_wan::attention::Kernel,
    device: &B::Device,
) -> Result<(Clip<B>, ClipTokenizer), ModelError> {
    let root = dir.root.join("clip");
    if !root.is_dir() {
        return Err(ModelError::Config(format!(
            "{}: no clip/ (open_clip_config.json, open_clip_model.safetensors, tokenizer.json): the stage encodes frames and prompts with it",
            dir.root.display()
        )));
    }
    let config = ClipConfig::from_file(&root.join("open_clip_config.json"))?;
    let mut problems = Vec::new();
    if config.embed_dim != dir.net.clip_dim {
        problems.push(format!(
            "CLIP's image features have {} values; the network takes {}",
            config.embed_dim, dir.net.clip_dim
        ));
    }
    if config.text_cfg.width != dir.net.text_dim
        || config.text_cfg.context_length != dir.net.text_seq_len
    {
        problems.push(format!(
            "CLIP's text features are {}×{}; the network takes {}×{}",
            config.text_cfg.context_length,
            config.text_cfg.width,
            dir.net.text_seq_len,
            dir.net.text_dim
        ));
    }
    if !problems.is_empty() {
        return Err(ModelError::Config(format!(
            "{}: {}",
            root.display(),
            problems.join("; ")
        )));
    }
    let tokenizer =
        ClipTokenizer::load(&root.join("tokenizer.json"), config.text_cfg.context_length)?;
    let weights = Weights::open(&root.join("open_clip_model.safetensors"))?;
    let clip = Clip::load(&weights, &config, kernel, device);
    weights
        .finish()
        .map_err(|e| ModelError::Weights(format!("clip/open_clip_model.safetensors: {e}")))?;
    Ok((clip, tokenizer))
}

fn load_synchformer<B: Backend>(
    dir: &ModelDir,
    kernel: r2v_wan::attention::Kernel,
    device: &B::Device,
) -> Result<Synchformer<B>, ModelError> {
    let path = dir.root.join("synchformer.safetensors");
    if !path.is_file() {
        return Err(ModelError::Config(format!(
            "{}: no synchformer.safetensors (Synchformer's visual encoder, for the audio's timing)",
            dir.root.display()
        )));
    }
    if dir.synchformer.embed_dim != dir.net.sync_dim {
        return Err(ModelError::Config(format!(
            "{}: Synchformer's features have {} values; the network takes {}",
            dir.root.display(),
            dir.synchformer.embed_dim,
            dir.net.sync_dim
        )));
    }
    let weights = Weights::open(&path)?.with_prefix("vfeat_extractor.");
    let model = Synchformer::load(&weights, &dir.synchformer, kernel, device);
    weights
        .finish()
        .map_err(|e| ModelError::Weights(format!("synchformer.safetensors: {e}")))?;
    Ok(model)
}

/// The frames' pixels as planar `[frames, 3, h, w]` values, each byte mapped by `value`.
fn planar(frames: &[RgbImage], value: impl Fn(u8) -> f32) -> Vec<f32> {
    let mut values = Vec::with_capacity(frames.iter().map(|f| f.len()).sum());
    for frame in frames {
        for channel in 0..3 {
            values.extend(frame.pixels().map(|p| value(p[channel])));
        }
    }
    values
}

/// The text MMAudio hears: the rewritten prompt, else the preamble and the shots' text.
fn audio_prompt(plan: &Plan) -> String {
    if let Some(actual) = &plan.actual_prompt {
        return actual.clone();
    }
    std::iter::once(plan.preamble.as_str())
        .chain(plan.shots.iter().map(|s| s.text.as_str()))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Standard normal noise `[1, n, channels]` from `seed` (Box–Muller over a seeded
/// ChaCha stream: the same on every machine and backend).
fn noise(seed: u64, n: usize, channels: usize) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x6d6d_6175_6469_6f00);
    let count = n * channels;
    let mut out = Vec::with_capacity(count + 1);
    while out.len() < count {
        let u1: f64 = 1.0 - rng.r#gen::<f64>();
        let u2: f64 = rng.r#gen::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        out.push((r * theta.cos()) as f32);
        out.push((r * theta.sin()) as f32);
    }
    out.truncate(count);
    out
}

impl<B: Backend> MmaudioStage<B> {
    fn clip_features(&self, frames: Vec<RgbImage>) -> Tensor<B, 3> {
        let n = frames.len();
        let mut features = Vec::with_capacity(n.div_ceil(CLIP_BATCH));
        for chunk in frames.chunks(CLIP_BATCH) {
            let (w, h) = chunk[0].dimensions();
            let values = planar(chunk, |v| f32::from(v) / 255.0);
            let pixels = Tensor::<B, 1>::from_data(
                TensorData::new(values, [chunk.len() * 3 * (w * h) as usize]),
                &self.device,
            )
            .reshape([chunk.len(), 3, h as usize, w as usize]);
            features.push(self.clip.image.encode(pixels));
        }
        let features = Tensor::cat(features, 0);
        let dim = features.dims()[1];
        features.reshape([1, n, dim])
    }

    /// Synchformer features `[1, segments·8, dim]` of 25 fps frames: 16-frame segments
    /// every 8 frames, pixels in [−1, 1].
    fn sync_features(&self, frames: Vec<RgbImage>) -> Tensor<B, 3> {
        let segments = (frames.len().saturating_sub(SEGMENT_FRAMES)) / SEGMENT_STEP + 1;
        let (w, h) = frames[0].dimensions();
        let plane = (w * h) as usize;
        let mut features = Vec::with_capacity(segments);
        for s in 0..segments {
            let segment = &frames[s * SEGMENT_STEP..s * SEGMENT_STEP + SEGMENT_FRAMES];
            let values = planar(segment, |v| f32::from(v) / 127.5 - 1.0);
            let video = Tensor::<B, 1>::from_data(
                TensorData::new(values, [SEGMENT_FRAMES * 3 * plane]),
                &self.device,
            )
            .reshape([1, 1, SEGMENT_FRAMES, 3, h as usize, w as usize]);
            features.push(self.synchformer.encode(video));
        }
        let features = Tensor::cat(features, 1);
        let [_, s, t, d] = features.dims();
        features.reshape([1, s * t, d])
    }

    fn track(
        &self,
        plan: &Plan,
        mut frames: Vec<Vec<RgbImage>>,
        ctx: &mut dyn RenderCtx,
    ) -> Result<AudioPcm, ModelError> {
        let mode = self.model.mode;
        let seconds = plan.duration_seconds();
        let lengths = Sequence::for_duration(mode, seconds);
        let sync_frames = frames.pop().unwrap_or_default();
        let clip_frames = frames.pop().unwrap_or_default();
        ctx.log(
            LogLevel::Info,
            &format!(
                "audio: CLIP on {} frames, Synchformer on {} frames",
                clip_frames.len(),
                sync_frames.len()
            ),
        );
        let clip = self.clip_features(clip_frames);
        let sync = self.sync_features(sync_frames);
        let prompt = audio_prompt(plan);
        let text = self
            .clip
            .encode_prompt(&self.tokenizer, &prompt, &self.device)?;
        let negative = match plan.negative_prompt.trim() {
            "" => None,
            negative => Some(
                self.clip
                    .encode_prompt(&self.tokenizer, negative, &self.device)?,
            ),
        };
        let latent_dim = self.dir.net.latent_dim;
        let x0 = Tensor::<B, 1>::from_data(
            TensorData::new(
                noise(plan.seed, lengths.latent, latent_dim),
                [lengths.latent * latent_dim],
            ),
            &self.device,
        )
        .reshape([1, lengths.latent, latent_dim]);
        let features = Features {
            clip: Some(clip),
            sync: Some(sync),
            text: Some(text),
            negative_text: negative,
        };
        let generated = self.model.generate(
            features,
            x0,
            (lengths.clip, lengths.sync),
            (DEFAULT_STEPS, DEFAULT_CFG),
            |k, n| {
                ctx.log(LogLevel::Info, &format!("audio: step {k}/{n}"));
                ctx.progress("audio", k as u64, n as u64);
                if ctx.cancelled() {
                    Err(ModelError::Cancelled)
                } else {
                    Ok(())
                }
            },
        )?;
        let rate = mode.sample_rate();
        let wanted = (seconds * f64::from(rate)).round() as usize;
        let samples = generated
            .audio
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| ModelError::Shape(format!("reading the waveform: {e:?}")))?;
        if samples.len() < wanted || samples.iter().any(|s| !s.is_finite()) {
            return Err(ModelError::Shape(format!(
                "the vocoder made {} samples (finite: {}), {wanted} wanted",
                samples.len(),
                samples.iter().all(|s| s.is_finite())
            )));
        }
        Ok(AudioPcm {
            sample_rate: rate,
            channels: 1,
            samples: samples[..wanted]
                .iter()
                .map(|s| (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16)
                .collect(),
        })
    }
}

impl<B: Backend> AudioStage for MmaudioStage<B> {
    fn describe(&self) -> String {
        format!(
            "MMAudio {} ({} Hz) from {} on {}; {DEFAULT_STEPS} steps, guidance {DEFAULT_CFG}",
            self.dir.variant,
            self.model.mode.sample_rate(),
            self.dir.root.display(),
            self.device_name
        )
    }

    fn frames(&self, plan: &Plan) -> FrameRequest {
        let seconds = plan.duration_seconds();
        let last = plan.num_frames.saturating_sub(1);
        let at = |count: usize, rate: f64| -> Vec<u32> {
            (0..count)
                .map(|i| ((i as f64 / rate * f64::from(plan.fps)).floor() as u32).min(last))
                .collect()
        };
        let clip_side = self.clip.config.vision_cfg.image_size as u32;
        let sync_side = self.synchformer.img_size() as u32;
        vec![
            FrameSet {
                indices: at(
                    Sequence::for_duration(self.model.mode, seconds).clip,
                    CLIP_FPS,
                ),
                size: (clip_side, clip_side),
                fit: Fit::Stretch,
            },
            FrameSet {
                indices: at((seconds * SYNC_FPS) as usize, SYNC_FPS),
                size: (sync_side, sync_side),
                fit: Fit::CenterCrop,
            },
        ]
    }

    fn generate(
        &self,
        plan: &Plan,
        frames: Vec<Vec<RgbImage>>,
        ctx: &mut dyn RenderCtx,
    ) -> Result<AudioPcm, EngineError> {
        let wanted: Vec<usize> = self
            .frames(plan)
            .iter()
            .map(|set| set.indices.len())
            .collect();
        let got: Vec<usize> = frames.iter().map(Vec::len).collect();
        if got != wanted || got.contains(&0) {
            return Err(EngineError::Model(format!(
                "the audio stage got {got:?} frames, {wanted:?} wanted"
            )));
        }
        self.track(plan, frames, ctx).map_err(|e| match e {
            ModelError::Cancelled => EngineError::Cancelled,
            other => EngineError::Model(format!("audio: {other}")),
        })
    }
}

/// What `r2v models inspect` prints for an MMAudio directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AudioInspect {
    /// The variant.
    pub variant: String,
    /// 16 kHz or 44.1 kHz.
    pub sample_rate: u32,
    /// Parameters and bytes per part (network, VAE, vocoder, CLIP, Synchformer).
    pub parts: Vec<(String, u64, u64)>,
    /// Parameters in all.
    pub parameters: u64,
    /// An estimate of the peak memory of a 10 s track in f32: every weight plus the
    /// largest attention's scores and the vocoder's widest activation.
    pub peak_bytes: u64,
    /// Files the audio stage needs that the directory lacks (it is refused until they are
    /// there; `r2v audio pipeline` does not need them).
    pub missing: Vec<String>,
}

impl AudioInspect {
    /// The report as text.
    pub fn to_text(&self) -> String {
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        let mut out = format!(
            "kind: MMAudio {} ({} Hz audio)\nparameters: {:.1} M\n",
            self.variant,
            self.sample_rate,
            self.parameters as f64 / 1e6
        );
        for (name, params, bytes) in &self.parts {
            out += &format!(
                "  {name}: {:.1} M parameters, {:.2} GiB on disk\n",
                *params as f64 / 1e6,
                gib(*bytes)
            );
        }
        out += &format!(
            "peak memory (estimate, f32, a 10 s track): {:.2} GiB\n",
            gib(self.peak_bytes)
        );
        if !self.missing.is_empty() {
            out += &format!("missing for the audio stage: {}\n", self.missing.join(", "));
        }
        out
    }
}

/// Inspects an MMAudio directory without loading it.
pub fn inspect(path: &Path) -> Result<AudioInspect, ModelError> {
    let dir = ModelDir::open(path)?;
    let mut parts: Vec<(String, u64, u64)> = dir
        .parameters()?
        .into_iter()
        .map(|(name, params, bytes)| (name.to_owned(), params, bytes))
        .collect();
    let mut missing = Vec::new();
    for (name, file, prefix) in [
        ("clip", "clip/open_clip_model.safetensors", ""),
        ("synchformer", "synchformer.safetensors", "vfeat_extractor."),
    ] {
        let path = dir.root.join(file);
        if !path.is_file() {
            missing.push(file.to_owned());
            continue;
        }
        let (params, bytes, _) = Weights::open(&path)?.with_prefix(prefix).summary();
        parts.push((name.into(), params, bytes));
    }
    let parameters = parts.iter().map(|p| p.1).sum::<u64>();
    let lengths = Sequence::for_duration(dir.mode, 10.0);
    let tokens = (lengths.latent + lengths.clip + dir.net.text_seq_len) as u64;
    let scores = 2 * dir.net.num_heads as u64 * tokens * tokens * 4;
    let vocoder_activation = lengths.samples as u64
        * 2
        * (dir.vocoder.upsample_initial_channel as u64
            >> dir.vocoder.upsample_rates.len().saturating_sub(1))
        * 4
        * 3;
    Ok(AudioInspect {
        variant: dir.variant,
        sample_rate: dir.mode.sample_rate(),
        parts,
        parameters,
        peak_bytes: parameters * 4 + scores + vocoder_activation,
        missing,
    })
}
