//! Turning reference sources into checked media.
//!
//! [`ReferenceLoader::load_all`] obtains every reference of a validated input (URL,
//! `data:` URI or local path), checks it against SPEC §2 and decodes it. Fetches run
//! concurrently; image decodes, the part that takes memory (a 5000×5000 16-bit RGBA PNG is
//! 200 MB decoded), run one at a time in the whole process ([`IMAGE_DECODES`]). Problems the input caused come back together as 422 details at
//! `["body","video_urls",i]` / `["body","image_urls",i]`; the first internal failure
//! (ffprobe crashed, a temp file could not be written) comes back on its own, to be retried.

use crate::data_uri;
use crate::error::MediaError;
use crate::fetch::Fetcher;
use crate::ffmpeg::Tools;
use crate::image_check::{self, MAX_IMAGE_BYTES};
use crate::probe::{self, VideoProbe};
use futures_util::future::join_all;
use image::RgbImage;
use r2v_api::{ErrorDetail, ReferenceSource, ValidInput, loc};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

/// Largest accepted video file, in bytes (100 MiB).
pub const MAX_VIDEO_BYTES: u64 = 100 * 1024 * 1024;
/// Shortest accepted reference video, in seconds.
pub const MIN_VIDEO_SECONDS: u32 = 1;
/// Longest accepted reference video, in seconds.
pub const MAX_VIDEO_SECONDS: u32 = 30;
/// Lowest accepted reference-video frame rate.
pub const MIN_VIDEO_FPS: u32 = 16;

/// Image decodes that may run at once in this process. Each holds at most the decoded image
/// and its RGB copy (`image_check::check_and_decode`); video checks run in ffprobe/ffmpeg
/// subprocesses and are not counted.
pub const MAX_CONCURRENT_IMAGE_DECODES: usize = 1;
static IMAGE_DECODES: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_IMAGE_DECODES);

/// Whether a reference is a video or an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceKind {
    /// From `video_urls`.
    Video,
    /// From `image_urls`.
    Image,
}

/// A reference video that passed the checks, kept as a file for ffmpeg to decode.
#[derive(Debug)]
pub struct CheckedVideo {
    /// Where the file is.
    pub path: PathBuf,
    /// What ffprobe read from it.
    pub probe: VideoProbe,
    _temp: Option<tempfile::NamedTempFile>,
}

/// One checked reference.
#[derive(Debug)]
pub enum LoadedMedia {
    /// A decoded image.
    Image(RgbImage),
    /// A checked video file.
    Video(Box<CheckedVideo>),
}

/// Why references could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The input's references broke SPEC §2 rules: every problem, for a 422.
    Invalid(Vec<ErrorDetail>),
    /// Something failed on our side.
    Internal(MediaError),
}

/// What a [`FileResolver`] returns: `None` when the URL is not one of its own.
pub type Resolved<'a> =
    Pin<Box<dyn Future<Output = Option<Result<Vec<u8>, MediaError>>> + Send + 'a>>;

/// Resolves URLs of files the service itself stores (uploads, earlier outputs) without
/// going through HTTP and the SSRF guard, so that they work with or without
/// `--allow-private-urls`.
pub trait FileResolver: Send + Sync {
    /// The bytes behind `url` (at most `max_bytes`), or `None` for a foreign URL.
    fn resolve<'a>(&'a self, url: &'a str, max_bytes: u64) -> Resolved<'a>;
}

/// Fetches, checks and decodes references.
#[derive(Clone)]
pub struct ReferenceLoader {
    fetcher: Fetcher,
    tools: Tools,
    resolver: Option<Arc<dyn FileResolver>>,
}

impl ReferenceLoader {
    /// A loader that fetches with `fetcher` and probes with `tools`.
    pub fn new(fetcher: Fetcher, tools: Tools) -> Self {
        Self {
            fetcher,
            tools,
            resolver: None,
        }
    }

    /// Resolves the service's own file URLs with `resolver` before fetching anything.
    pub fn with_resolver(mut self, resolver: Arc<dyn FileResolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// The ffmpeg tools this loader uses.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// Loads every reference of `input`, videos first, in Character order.
    pub async fn load_all(&self, input: &ValidInput) -> Result<Vec<LoadedMedia>, LoadError> {
        let jobs = input
            .video_urls
            .iter()
            .enumerate()
            .map(|(i, s)| (ReferenceKind::Video, "video_urls", i, s))
            .chain(
                input
                    .image_urls
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (ReferenceKind::Image, "image_urls", i, s)),
            );
        let results = join_all(jobs.map(|(kind, field, i, source)| async move {
            (field, i, self.load(source, kind).await)
        }))
        .await;
        let mut loaded = Vec::with_capacity(results.len());
        let mut invalid = Vec::new();
        for (field, i, result) in results {
            match result {
                Ok(media) => loaded.push(media),
                Err(error) => match error.detail(loc!["body", field, i]) {
                    Some(detail) => invalid.push(detail),
                    None => return Err(LoadError::Internal(error)),
                },
            }
        }
        if invalid.is_empty() {
            Ok(loaded)
        } else {
            Err(LoadError::Invalid(invalid))
        }
    }

    /// Loads and checks one reference.
    pub async fn load(
        &self,
        source: &ReferenceSource,
        kind: ReferenceKind,
    ) -> Result<LoadedMedia, MediaError> {
        let max_bytes = match kind {
            ReferenceKind::Video => MAX_VIDEO_BYTES,
            ReferenceKind::Image => MAX_IMAGE_BYTES,
        };
        let bytes = match source {
            ReferenceSource::Url(url) => {
                let own = match &self.resolver {
                    Some(resolver) => resolver.resolve(url, max_bytes).await,
                    None => None,
                };
                match own {
                    Some(bytes) => Some(bytes?),
                    None => Some(self.fetcher.get(url, max_bytes).await?),
                }
            }
            ReferenceSource::DataUri(uri) => Some(data_uri::decode(uri, max_bytes)?.bytes),
            ReferenceSource::LocalPath(path) => {
                check_local_size(path, max_bytes)?;
                match kind {
                    ReferenceKind::Image => Some(read_local(path)?),
                    ReferenceKind::Video => None,
                }
            }
        };
        let tools = self.tools.clone();
        let local = match source {
            ReferenceSource::LocalPath(path) => Some(path.clone()),
            ReferenceSource::Url(_) | ReferenceSource::DataUri(_) => None,
        };
        let _decode_slot = match kind {
            ReferenceKind::Image => Some(
                IMAGE_DECODES
                    .acquire()
                    .await
                    .expect("the decode semaphore is never closed"),
            ),
            ReferenceKind::Video => None,
        };
        tokio::task::spawn_blocking(move || match (kind, bytes, local) {
            (ReferenceKind::Image, Some(bytes), _) => {
                image_check::check_and_decode(&bytes).map(LoadedMedia::Image)
            }
            (ReferenceKind::Video, Some(bytes), _) => {
                let temp = write_temp(&bytes)?;
                let path = temp.path().to_path_buf();
                check_video(&tools, path, Some(temp)).map(|v| LoadedMedia::Video(Box::new(v)))
            }
            (ReferenceKind::Video, None, Some(path)) => {
                check_video(&tools, path, None).map(|v| LoadedMedia::Video(Box::new(v)))
            }
            (ReferenceKind::Image, None, _) | (ReferenceKind::Video, None, None) => {
                unreachable!("every image source yields bytes, and only local videos yield none")
            }
        })
        .await
        .map_err(|e| MediaError::io("reference check task", std::io::Error::other(e)))?
    }
}

fn check_video(
    tools: &Tools,
    path: PathBuf,
    temp: Option<tempfile::NamedTempFile>,
) -> Result<CheckedVideo, MediaError> {
    let probe = probe::probe(tools, &path, false)?;
    let is_mp4_family = probe
        .format_name
        .split(',')
        .any(|n| n == "mp4" || n == "mov");
    if !is_mp4_family {
        return Err(MediaError::UnsupportedVideoFormat {
            reason: format!("the container is {}", probe.format_name),
        });
    }
    if probe.duration < f64::from(MIN_VIDEO_SECONDS) {
        return Err(MediaError::VideoTooShort {
            duration: probe.duration,
            min: MIN_VIDEO_SECONDS,
        });
    }
    if probe.duration > f64::from(MAX_VIDEO_SECONDS) {
        return Err(MediaError::VideoTooLong {
            duration: probe.duration,
            max: MAX_VIDEO_SECONDS,
        });
    }
    if probe.video.fps < f64::from(MIN_VIDEO_FPS) {
        return Err(MediaError::VideoFpsTooLow {
            fps: probe.video.fps,
            min: MIN_VIDEO_FPS,
        });
    }
    Ok(CheckedVideo {
        path,
        probe,
        _temp: temp,
    })
}

fn check_local_size(path: &Path, max_bytes: u64) -> Result<(), MediaError> {
    let meta = std::fs::metadata(path).map_err(|e| MediaError::LocalFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(MediaError::LocalFile {
            path: path.display().to_string(),
            reason: "it is not a regular file".to_owned(),
        });
    }
    if meta.len() > max_bytes {
        return Err(MediaError::TooLarge {
            max_size: max_bytes,
        });
    }
    Ok(())
}

fn read_local(path: &Path) -> Result<Vec<u8>, MediaError> {
    std::fs::read(path).map_err(|e| MediaError::LocalFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn write_temp(bytes: &[u8]) -> Result<tempfile::NamedTempFile, MediaError> {
    let mut file = tempfile::Builder::new()
        .prefix("r2v-ref-")
        .tempfile()
        .map_err(|e| MediaError::io("creating a temp file for a reference video", e))?;
    file.write_all(bytes)
        .and_then(|()| file.flush())
        .map_err(|e| MediaError::io("writing a reference video to a temp file", e))?;
    Ok(file)
}
