//! The [`Engine`] seam: what every engine (preview now, wan next) implements, and the
//! [`RenderCtx`] through which it reports progress and learns of cancellation.

use crate::plan::Plan;
use image::RgbImage;

/// A reference as the engines see it: decoded pixels, in Character order.
#[derive(Debug, Clone)]
pub enum ReferenceMedia {
    /// A still image.
    Image(RgbImage),
    /// Frames of a reference video, sampled at [`ReferenceMedia::VIDEO_FPS`].
    Video(Vec<RgbImage>),
}

impl ReferenceMedia {
    /// Rate at which reference-video frames are sampled.
    pub const VIDEO_FPS: u32 = 15;

    /// The frame to show `seconds` into a shot (videos loop).
    pub fn frame_at(&self, seconds: f64) -> &RgbImage {
        match self {
            Self::Image(image) => image,
            Self::Video(frames) => {
                let index = (seconds.max(0.0) * f64::from(Self::VIDEO_FPS)) as usize;
                &frames[index % frames.len()]
            }
        }
    }
}

/// Severity of a request log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Normal progress.
    Info,
    /// Something the user should know (e.g. "this is a preview, not a neural model").
    Warn,
}

/// How an engine talks to whoever runs it: the CLI's progress bar, or a server worker
/// that appends to the request's logs. Checked at every step boundary.
pub trait RenderCtx: Send {
    /// Appends a user-visible log line to the request.
    fn log(&mut self, level: LogLevel, message: &str);
    /// Reports that `done` of `total` units of `stage` are finished.
    fn progress(&mut self, stage: &str, done: u64, total: u64);
    /// Whether the request was cancelled; engines stop at the next step boundary.
    fn cancelled(&self) -> bool;
}

/// Where rendered frames go (the mp4 encoder, or a buffer in tests and benchmarks).
pub trait FrameSink {
    /// Takes one RGB24 frame of the plan's width × height.
    fn frame(&mut self, rgb: &[u8]) -> Result<(), EngineError>;
}

impl FrameSink for Vec<Vec<u8>> {
    fn frame(&mut self, rgb: &[u8]) -> Result<(), EngineError> {
        self.push(rgb.to_vec());
        Ok(())
    }
}

/// Why an engine stopped without finishing.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// [`RenderCtx::cancelled`] said so at a step boundary.
    #[error("cancelled")]
    Cancelled,
    /// Media I/O failed (the encoder died, a frame could not be written).
    #[error(transparent)]
    Media(#[from] r2v_media::MediaError),
    /// The model failed in a way another attempt may not (a device error; a message safe
    /// to show the client): retried.
    #[error("model: {0}")]
    Model(String),
    /// The model refused this plan in a way every attempt would repeat (a shape or
    /// configuration error): failed at once, not retried.
    #[error("model: {0}")]
    Refused(String),
}

/// A video generator.
pub trait Engine: Send + Sync {
    /// Short name for logs and config: `preview`, `wan`.
    fn name(&self) -> &'static str;

    /// A line for the request log that says what this engine is.
    fn describe(&self) -> String;

    /// Whether this engine can render `plan` here (e.g. within its memory budget); called
    /// before any reference is fetched. The default admits everything.
    fn admit(&self, plan: &Plan) -> Result<(), r2v_api::RequestError> {
        let _ = plan;
        Ok(())
    }

    /// Renders `plan.num_frames` frames of `plan.width` × `plan.height` into `sink`.
    fn render(
        &self,
        plan: &Plan,
        references: &[ReferenceMedia],
        ctx: &mut dyn RenderCtx,
        sink: &mut dyn FrameSink,
    ) -> Result<(), EngineError>;
}
