//! One request, start to finish, without HTTP: references fetched and checked, plan,
//! render, encode, and the output probed so that every reported field is what ffprobe
//! reads from the file. `r2v run` calls this directly; a server worker calls it on its
//! engine thread.

use crate::audio::{self, AudioStage, Fit, FrameRequest};
use crate::engine::{Engine, EngineError, FrameSink, LogLevel, ReferenceMedia, RenderCtx};
use crate::plan::{self, Plan};
use crate::safety::SafetyPolicy;
use r2v_api::{Output, Preset, RequestError, ValidInput, VideoFile};
use r2v_media::MediaError;
use r2v_media::probe::{self, VideoProbe};
use r2v_media::reference::{LoadError, LoadedMedia, ReferenceLoader};
use r2v_media::video::{self, EncodeSettings, Mp4Encoder};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Longest side of reference images as the preview samples them.
const REFERENCE_MAX_SIDE: u32 = 1280;
/// Longest side of decoded reference-video frames.
const REFERENCE_VIDEO_MAX_SIDE: u32 = 720;
/// Most seconds of each reference video that are decoded.
const REFERENCE_VIDEO_SECONDS: u32 = 10;

/// A finished video and what ffprobe read from it.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Where the mp4 was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub file_size: u64,
    /// What ffprobe read from it (frames counted).
    pub probe: VideoProbe,
    /// The seed that was used.
    pub seed: u64,
    /// The rewritten prompt, when expansion ran.
    pub actual_prompt: Option<String>,
}

impl Generated {
    /// The API's output object, with the video served at `url`.
    pub fn to_output(&self, url: String) -> Output {
        let v = &self.probe.video;
        Output {
            video: VideoFile {
                url,
                content_type: "video/mp4".to_owned(),
                file_name: self.path.file_name().map_or_else(
                    || "output.mp4".to_owned(),
                    |n| n.to_string_lossy().into_owned(),
                ),
                file_size: self.file_size,
                width: v.width,
                height: v.height,
                fps: v.fps,
                duration: v.duration.unwrap_or(self.probe.duration),
                num_frames: v.num_frames.unwrap_or(0),
            },
            seed: self.seed,
            actual_prompt: self.actual_prompt.clone(),
        }
    }
}

/// Runs requests on one engine.
#[derive(Clone)]
pub struct Generator {
    engine: Arc<dyn Engine>,
    audio: Option<Arc<dyn AudioStage>>,
    loader: ReferenceLoader,
    safety: SafetyPolicy,
    x264_preset: String,
    stall_timeout: Duration,
}

impl Generator {
    /// A generator that renders with `engine` and loads references with `loader`.
    pub fn new(engine: Arc<dyn Engine>, loader: ReferenceLoader, safety: SafetyPolicy) -> Self {
        let defaults = EncodeSettings::new(2, 2, 1);
        Self {
            engine,
            audio: None,
            loader,
            safety,
            x264_preset: defaults.preset,
            stall_timeout: defaults.stall_timeout,
        }
    }

    /// Makes audio tracks with `stage` (from the finished frames) instead of the bed.
    pub fn with_audio_stage(mut self, stage: Arc<dyn AudioStage>) -> Self {
        self.audio = Some(stage);
        self
    }

    /// Uses another x264 preset (speed against file size; the format is the same).
    pub fn with_x264_preset(mut self, preset: String) -> Self {
        self.x264_preset = preset;
        self
    }

    /// How long the encoder may block on one frame (or on finishing) before it counts as
    /// hung. The engine's own time between frames never counts.
    pub fn with_encoder_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// The engine requests run on.
    pub fn engine(&self) -> &dyn Engine {
        self.engine.as_ref()
    }

    /// Everything before the first frame: the safety check, the references fetched,
    /// checked and decoded, and the plan.
    pub fn prepare(
        &self,
        runtime: &tokio::runtime::Handle,
        input: &ValidInput,
        preset: Preset,
        ctx: &mut dyn RenderCtx,
    ) -> Result<(Plan, Vec<ReferenceMedia>), RequestError> {
        ctx.log(
            LogLevel::Info,
            &format!("engine: {}", self.engine.describe()),
        );
        if input.enable_safety_checker {
            self.safety.check_prompt(&input.prompt)?;
            ctx.log(
                LogLevel::Info,
                "safety checker: prompt checked against the policy list; no output classifier is configured, so frames are not checked",
            );
        }

        let seed = input.seed.unwrap_or_else(plan::random_seed);
        let plan = plan::plan(input, preset, seed);
        self.engine.admit(&plan)?;

        let count = input.reference_count() as u64;
        ctx.progress("download", 0, count);
        ctx.log(
            LogLevel::Info,
            &format!("download: fetching and checking {count} reference(s)"),
        );
        let loaded = runtime
            .block_on(self.loader.load_all(input))
            .map_err(|e| match e {
                LoadError::Invalid(details) => RequestError::Invalid(details),
                LoadError::Internal(error) => internal(&error),
            })?;
        ctx.progress("download", count, count);
        let references = self.decode_references(loaded, ctx)?;
        log_plan(&plan, ctx);
        Ok((plan, references))
    }

    /// Generates the video for `input` into `output`. Blocking: call it from a thread
    /// that may block; `runtime` drives the reference downloads.
    pub fn generate(
        &self,
        runtime: &tokio::runtime::Handle,
        input: &ValidInput,
        preset: Preset,
        output: &Path,
        ctx: &mut dyn RenderCtx,
    ) -> Result<Generated, RequestError> {
        let (plan, references) = self.prepare(runtime, input, preset, ctx)?;
        let stage = self.audio.as_ref().filter(|_| plan.enable_audio);
        let pcm = (plan.enable_audio && stage.is_none()).then(|| {
            ctx.log(
                LogLevel::Info,
                "audio: procedural bed with a cue per shot (no neural audio stage configured: see --audio-model-dir)",
            );
            audio::render_bed(&plan)
        });
        if let Some(stage) = stage {
            ctx.log(
                LogLevel::Info,
                &format!(
                    "audio: {} (after the frames, from them and the prompt)",
                    stage.describe()
                ),
            );
        }
        let settings = self.encode_settings(&plan);
        let tools = self.loader.tools();
        // A neural track needs the finished frames: the video is encoded alone first and
        // the track muxed in afterwards.
        let video_path = match stage {
            Some(_) => output.with_extension("video.mp4"),
            None => output.to_path_buf(),
        };
        let _intermediate = Intermediate(stage.map(|_| video_path.clone()));
        let mut encoder = EncoderSink {
            encoder: Some(
                Mp4Encoder::start(tools, &video_path, &settings, pcm.as_ref())
                    .map_err(|e| internal(&e))?,
            ),
            sampler: stage.map(|s| FrameSampler::new(s.frames(&plan), &plan)),
        };
        match self.engine.render(&plan, &references, ctx, &mut encoder) {
            Ok(()) => {}
            Err(EngineError::Cancelled) => return Err(RequestError::Cancelled),
            Err(error @ (EngineError::Model(_) | EngineError::Refused(_))) => {
                let message = error.to_string();
                if let Some(enc) = encoder.encoder.take() {
                    enc.abort(MediaError::io(
                        "the engine failed",
                        std::io::Error::other(message.clone()),
                    ));
                }
                return Err(match error {
                    EngineError::Refused(_) => RequestError::Fatal { message },
                    _ => RequestError::Internal { message },
                });
            }
            Err(EngineError::Media(error)) => {
                let error = match encoder.encoder.take() {
                    Some(enc) => enc.abort(error),
                    None => error,
                };
                return Err(internal(&error));
            }
        }
        ctx.log(LogLevel::Info, "mux: finishing the mp4");
        let sampler = encoder.sampler.take();
        encoder
            .encoder
            .take()
            .expect("the encoder is only taken on failure")
            .finish()
            .map_err(|e| internal(&e))?;
        if let (Some(stage), Some(sampler)) = (stage, sampler) {
            let pcm = self.add_track(stage.as_ref(), &plan, sampler.frames, ctx)?;
            ctx.log(LogLevel::Info, "mux: adding the audio track");
            video::mux_audio(tools, &video_path, &pcm, output, &settings)
                .map_err(|e| internal(&e))?;
        }
        let probe = probe::probe(tools, output, true).map_err(|e| internal(&e))?;
        let file_size = std::fs::metadata(output)
            .map_err(|e| internal(&MediaError::io("reading the output size", e)))?
            .len();
        ctx.log(
            LogLevel::Info,
            &format!(
                "done: {} bytes, {} frames",
                file_size,
                probe.video.num_frames.unwrap_or(0)
            ),
        );
        Ok(Generated {
            path: output.to_path_buf(),
            file_size,
            probe,
            seed: plan.seed,
            actual_prompt: plan.actual_prompt,
        })
    }

    /// Runs the audio stage on the sampled frames.
    fn add_track(
        &self,
        stage: &dyn AudioStage,
        plan: &Plan,
        frames: Vec<Vec<image::RgbImage>>,
        ctx: &mut dyn RenderCtx,
    ) -> Result<r2v_media::video::AudioPcm, RequestError> {
        stage
            .generate(plan, frames, ctx)
            .map_err(|error| match error {
                EngineError::Cancelled => RequestError::Cancelled,
                EngineError::Refused(_) => RequestError::Fatal {
                    message: error.to_string(),
                },
                EngineError::Model(_) => RequestError::Internal {
                    message: error.to_string(),
                },
                EngineError::Media(e) => internal(&e),
            })
    }

    /// How this generator encodes the output of `plan`.
    pub fn encode_settings(&self, plan: &Plan) -> EncodeSettings {
        let mut settings = EncodeSettings::new(plan.width, plan.height, plan.fps);
        settings.preset = self.x264_preset.clone();
        settings.stall_timeout = self.stall_timeout;
        settings.comment = format!("r2v {} engine, seed {}", self.engine.name(), plan.seed);
        settings
    }

    fn decode_references(
        &self,
        loaded: Vec<LoadedMedia>,
        ctx: &mut dyn RenderCtx,
    ) -> Result<Vec<ReferenceMedia>, RequestError> {
        let total = loaded.len() as u64;
        let mut media = Vec::with_capacity(loaded.len());
        for (i, item) in loaded.into_iter().enumerate() {
            if ctx.cancelled() {
                return Err(RequestError::Cancelled);
            }
            media.push(match item {
                LoadedMedia::Image(image) => ReferenceMedia::Image(fit(image, REFERENCE_MAX_SIDE)),
                LoadedMedia::Video(video) => {
                    let frames = video::decode_frames(
                        self.loader.tools(),
                        &video.path,
                        REFERENCE_VIDEO_MAX_SIDE,
                        ReferenceMedia::VIDEO_FPS,
                        ReferenceMedia::VIDEO_FPS * REFERENCE_VIDEO_SECONDS,
                    )
                    .map_err(|e| {
                        match e.detail(r2v_api::loc!["body", "video_urls", i]) {
                            Some(detail) => RequestError::Invalid(vec![detail]),
                            None => internal(&e),
                        }
                    })?;
                    ReferenceMedia::Video(frames)
                }
            });
            ctx.progress("decode references", i as u64 + 1, total);
        }
        Ok(media)
    }
}

/// Shrinks `image` so that its longest side is at most `max_side`.
fn fit(image: image::RgbImage, max_side: u32) -> image::RgbImage {
    let longest = image.width().max(image.height());
    if longest <= max_side {
        return image;
    }
    let scale = f64::from(max_side) / f64::from(longest);
    let (w, h) = (
        (f64::from(image.width()) * scale).round() as u32,
        (f64::from(image.height()) * scale).round() as u32,
    );
    image::imageops::resize(
        &image,
        w.max(1),
        h.max(1),
        image::imageops::FilterType::Triangle,
    )
}

fn log_plan(plan: &Plan, ctx: &mut dyn RenderCtx) {
    ctx.log(
        LogLevel::Info,
        &format!(
            "plan: {}x{} at {} fps, {} frames, {} shot(s), {} reference(s), seed {}",
            plan.width,
            plan.height,
            plan.fps,
            plan.num_frames,
            plan.shots.len(),
            plan.references.len(),
            plan.seed
        ),
    );
}

fn internal(error: &MediaError) -> RequestError {
    RequestError::Internal {
        message: error.to_string(),
    }
}

/// The video-only file a neural track is muxed into, removed however generation ends.
struct Intermediate(Option<PathBuf>);

impl Drop for Intermediate {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Feeds rendered frames into the mp4 encoder, keeping the ones an audio stage asked for.
struct EncoderSink {
    encoder: Option<Mp4Encoder>,
    sampler: Option<FrameSampler>,
}

impl FrameSink for EncoderSink {
    fn frame(&mut self, rgb: &[u8]) -> Result<(), EngineError> {
        let encoder = self
            .encoder
            .as_mut()
            .expect("frames arrive only while encoding");
        encoder.write_frame(rgb).map_err(EngineError::Media)?;
        if let Some(sampler) = &mut self.sampler {
            sampler.offer(rgb);
        }
        Ok(())
    }
}

/// Keeps resized copies of the frames a [`FrameRequest`] names, as they stream past.
struct FrameSampler {
    request: FrameRequest,
    frame_size: (u32, u32),
    next: u32,
    frames: Vec<Vec<image::RgbImage>>,
}

impl FrameSampler {
    fn new(request: FrameRequest, plan: &Plan) -> Self {
        Self {
            frames: request
                .iter()
                .map(|set| Vec::with_capacity(set.indices.len()))
                .collect(),
            request,
            frame_size: (plan.width, plan.height),
            next: 0,
        }
    }

    fn offer(&mut self, rgb: &[u8]) {
        let index = self.next;
        self.next += 1;
        let (w, h) = self.frame_size;
        let mut frame = None;
        for (set, kept) in self.request.iter().zip(&mut self.frames) {
            let copies = set.indices.iter().filter(|&&i| i == index).count();
            if copies == 0 {
                continue;
            }
            let Some(frame) =
                frame.get_or_insert_with(|| image::RgbImage::from_raw(w, h, rgb.to_vec()))
            else {
                return;
            };
            let small = fit_frame(frame, set.size, set.fit);
            // Sets are in time order; a repeated index is kept as many times as asked.
            for _ in 0..copies {
                kept.push(small.clone());
            }
        }
    }
}

/// `frame` brought to `size` as `fit` says.
fn fit_frame(frame: &image::RgbImage, (sw, sh): (u32, u32), fit: Fit) -> image::RgbImage {
    use image::imageops::{FilterType, crop_imm, resize};
    match fit {
        Fit::Stretch => resize(frame, sw, sh, FilterType::CatmullRom),
        Fit::CenterCrop => {
            let (w, h) = frame.dimensions();
            // torchvision: the shorter side to the target, the longer scaled (truncated).
            let (rw, rh) = if w <= h {
                (sw, (f64::from(sw) * f64::from(h) / f64::from(w)) as u32)
            } else {
                ((f64::from(sh) * f64::from(w) / f64::from(h)) as u32, sh)
            };
            let resized = resize(frame, rw.max(sw), rh.max(sh), FilterType::CatmullRom);
            let left = ((f64::from(resized.width() - sw)) / 2.0).round() as u32;
            let top = ((f64::from(resized.height() - sh)) / 2.0).round() as u32;
            crop_imm(&resized, left, top, sw, sh).to_image()
        }
    }
}
