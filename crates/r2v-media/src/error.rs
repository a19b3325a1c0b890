//! [`MediaError`]: everything that can go wrong with media, and which of it is the
//! user's doing (a typed 422 detail) versus ours (internal, retried).

use r2v_api::{ErrorDetail, LocItem};
use serde_json::json;

/// A media failure. Variants up to [`MediaError::VideoFpsTooLow`] are caused by the
/// input and map to SPEC §2 error types; the rest are internal.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The URL could not be fetched: DNS, connection, status, timeout or the SSRF guard.
    #[error("could not download {url}: {reason}")]
    Download {
        /// The URL as given.
        url: String,
        /// Why, in words.
        reason: String,
    },
    /// A `data:` URI is malformed.
    #[error("could not decode the data URI: {reason}")]
    DataUri {
        /// Why, in words.
        reason: String,
    },
    /// A local reference file could not be read (command line only).
    #[error("could not read {path}: {reason}")]
    LocalFile {
        /// The path as given.
        path: String,
        /// Why, in words.
        reason: String,
    },
    /// The file is over the size limit for its kind.
    #[error("file is larger than the limit of {max_size} bytes")]
    TooLarge {
        /// The limit in bytes.
        max_size: u64,
    },
    /// The bytes are not JPEG, PNG, BMP or WEBP.
    #[error("unsupported image format {found}; expected JPEG, PNG, BMP or WEBP")]
    UnsupportedImageFormat {
        /// What the bytes look like.
        found: String,
    },
    /// A PNG or WEBP has pixels that are not fully opaque.
    #[error(
        "image has a transparent alpha channel ({transparent_pixels} pixels are not opaque); remove the transparency"
    )]
    ImageAlpha {
        /// How many pixels have alpha < 255.
        transparent_pixels: u64,
    },
    /// A side is under the minimum.
    #[error("image is {width}x{height}; each side must be at least {min} pixels")]
    ImageTooSmall {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The minimum side.
        min: u32,
    },
    /// A side is over the maximum.
    #[error("image is {width}x{height}; each side must be at most {max} pixels")]
    ImageTooLarge {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The maximum side.
        max: u32,
    },
    /// The image header looked right but the pixels would not decode.
    #[error("image could not be decoded: {reason}")]
    ImageLoad {
        /// The decoder's message.
        reason: String,
    },
    /// Not an mp4/mov, or no decodable video stream.
    #[error("unsupported video: {reason}; expected an mp4 or mov file with a video stream")]
    UnsupportedVideoFormat {
        /// Why, in words.
        reason: String,
    },
    /// The video is shorter than allowed.
    #[error("video is {duration:.2}s long; it must be at least {min}s")]
    VideoTooShort {
        /// Its duration in seconds.
        duration: f64,
        /// The minimum in seconds.
        min: u32,
    },
    /// The video is longer than allowed.
    #[error("video is {duration:.2}s long; it must be at most {max}s")]
    VideoTooLong {
        /// Its duration in seconds.
        duration: f64,
        /// The maximum in seconds.
        max: u32,
    },
    /// The video's frame rate is under the minimum.
    #[error("video has {fps:.2} fps; it must have at least {min} fps")]
    VideoFpsTooLow {
        /// Its frame rate.
        fps: f64,
        /// The minimum frame rate.
        min: u32,
    },
    /// A subprocess could not be started or waited for.
    #[error("could not run {program}: {source}")]
    Spawn {
        /// The program's name.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A subprocess ran past its wall-clock limit and was killed.
    #[error("{program} did not finish within {seconds}s and was killed")]
    Timeout {
        /// The program's name.
        program: String,
        /// The limit in seconds.
        seconds: f64,
    },
    /// A subprocess failed: non-zero exit, a signal, or too much output.
    #[error("{program} failed with {status}: {stderr_tail}")]
    Ffmpeg {
        /// The program's name.
        program: String,
        /// Exit code or signal, in words.
        status: String,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// Reading or writing a temporary or output file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl MediaError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The 422 detail at `loc` for errors the input caused; `None` for internal ones.
    pub fn detail(&self, loc: Vec<LocItem>) -> Option<ErrorDetail> {
        let msg = self.to_string();
        let detail = match self {
            Self::Download { url, .. } => {
                ErrorDetail::new(loc, "file_download_error", msg).with_input(json!(url))
            }
            Self::DataUri { .. } | Self::LocalFile { .. } => {
                ErrorDetail::new(loc, "file_download_error", msg)
            }
            Self::TooLarge { max_size } => ErrorDetail::new(loc, "file_too_large", msg)
                .with_ctx(json!({ "max_size": max_size })),
            Self::UnsupportedImageFormat { found } => {
                ErrorDetail::new(loc, "unsupported_image_format", msg).with_ctx(json!({
                    "found": found, "supported_formats": ["jpeg", "png", "bmp", "webp"]
                }))
            }
            Self::ImageAlpha { transparent_pixels } => {
                ErrorDetail::new(loc, "unsupported_image_format", msg).with_ctx(json!({
                    "reason": "alpha", "transparent_pixels": transparent_pixels
                }))
            }
            Self::ImageTooSmall { width, height, min } => {
                ErrorDetail::new(loc, "image_too_small", msg).with_ctx(json!({
                    "min_height": min, "min_width": min, "width": width, "height": height
                }))
            }
            Self::ImageTooLarge { width, height, max } => {
                ErrorDetail::new(loc, "image_too_large", msg).with_ctx(json!({
                    "max_height": max, "max_width": max, "width": width, "height": height
                }))
            }
            Self::ImageLoad { .. } => ErrorDetail::new(loc, "image_load_error", msg),
            Self::UnsupportedVideoFormat { .. } => {
                ErrorDetail::new(loc, "unsupported_video_format", msg)
            }
            Self::VideoTooShort { duration, min } => {
                ErrorDetail::new(loc, "video_duration_too_short", msg)
                    .with_ctx(json!({ "min_duration": min, "duration": duration }))
            }
            Self::VideoTooLong { duration, max } => {
                ErrorDetail::new(loc, "video_duration_too_long", msg)
                    .with_ctx(json!({ "max_duration": max, "duration": duration }))
            }
            Self::VideoFpsTooLow { fps, min } => ErrorDetail::new(loc, "video_fps_too_low", msg)
                .with_ctx(json!({ "min_fps": min, "fps": fps })),
            Self::Spawn { .. } | Self::Timeout { .. } | Self::Ffmpeg { .. } | Self::Io { .. } => {
                return None;
            }
        };
        Some(detail)
    }
}
