//! What ffprobe reads from a video file: container, streams, duration, frame rate and,
//! on request, the exact frame count. Runs out of process under [`Limits::probe`].

use crate::error::MediaError;
use crate::ffmpeg::{self, Limits, Tools};
use serde::Deserialize;
use std::path::Path;

/// The facts about a video file that r2v checks or reports.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoProbe {
    /// The demuxer's name list, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub format_name: String,
    /// Container duration in seconds (the video stream's when the container has none).
    pub duration: f64,
    /// The first video stream's facts.
    pub video: VideoStream,
    /// The first audio stream's facts, if any.
    pub audio: Option<AudioStream>,
}

/// Facts about a video stream.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoStream {
    /// Codec name, e.g. `h264`.
    pub codec: String,
    /// Profile, e.g. `High`.
    pub profile: String,
    /// Pixel format, e.g. `yuv420p`.
    pub pix_fmt: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Average frame rate.
    pub fps: f64,
    /// Stream duration in seconds, when known.
    pub duration: Option<f64>,
    /// Decoded frame count, when counting was asked for.
    pub num_frames: Option<u32>,
}

/// Facts about an audio stream.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioStream {
    /// Codec name, e.g. `aac`.
    pub codec: String,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u32,
    /// Stream duration in seconds, when known.
    pub duration: Option<f64>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    streams: Vec<RawStream>,
    format: Option<RawFormat>,
}

#[derive(Deserialize)]
struct RawFormat {
    format_name: String,
    duration: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStream {
    codec_type: String,
    codec_name: Option<String>,
    profile: Option<String>,
    pix_fmt: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
    nb_read_frames: Option<String>,
    sample_rate: Option<String>,
    channels: Option<u32>,
    disposition: Option<std::collections::HashMap<String, i64>>,
}

/// Probes `path`. A file ffprobe cannot read, or one without a video stream, is
/// [`MediaError::UnsupportedVideoFormat`]; a crash or timeout stays internal.
pub fn probe(tools: &Tools, path: &Path, count_frames: bool) -> Result<VideoProbe, MediaError> {
    let mut args: Vec<String> = [
        "-v",
        "error",
        "-protocol_whitelist",
        "file",
        "-threads",
        "1",
        "-of",
        "json",
        "-show_format",
        "-show_streams",
    ]
    .map(String::from)
    .to_vec();
    if count_frames {
        args.push("-count_frames".into());
    }
    args.push(path.display().to_string());
    let stdout = match ffmpeg::run(&tools.ffprobe, &args, Limits::probe()) {
        Ok(out) => out,
        Err(MediaError::Ffmpeg {
            status,
            stderr_tail,
            ..
        }) if status.starts_with("exit code") => {
            let reason = stderr_tail
                .lines()
                .last()
                .unwrap_or("ffprobe could not read it")
                .to_owned();
            return Err(MediaError::UnsupportedVideoFormat { reason });
        }
        Err(other) => return Err(other),
    };
    let raw: Raw = serde_json::from_slice(&stdout).map_err(|e| MediaError::Ffmpeg {
        program: "ffprobe".into(),
        status: format!("unreadable JSON ({e})"),
        stderr_tail: String::new(),
    })?;
    let unsupported = |reason: &str| MediaError::UnsupportedVideoFormat {
        reason: reason.to_owned(),
    };
    let format = raw
        .format
        .ok_or_else(|| unsupported("no container was recognised"))?;
    let is_picture = |s: &RawStream| {
        s.disposition
            .as_ref()
            .and_then(|d| d.get("attached_pic"))
            .copied()
            .unwrap_or(0)
            != 0
    };
    let video = raw
        .streams
        .iter()
        .find(|s| s.codec_type == "video" && !is_picture(s) && s.codec_name.is_some())
        .ok_or_else(|| unsupported("the file has no decodable video stream"))?;
    let fps = [&video.avg_frame_rate, &video.r_frame_rate]
        .into_iter()
        .filter_map(|r| r.as_deref().and_then(parse_rate))
        .next()
        .unwrap_or(0.0);
    let video_duration = video.duration.as_deref().and_then(|d| d.parse().ok());
    let duration = format
        .duration
        .as_deref()
        .and_then(|d| d.parse().ok())
        .or(video_duration)
        .unwrap_or(0.0);
    let audio = raw
        .streams
        .iter()
        .find(|s| s.codec_type == "audio")
        .map(|a| AudioStream {
            codec: a.codec_name.clone().unwrap_or_default(),
            sample_rate: a
                .sample_rate
                .as_deref()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
            channels: a.channels.unwrap_or(0),
            duration: a.duration.as_deref().and_then(|d| d.parse().ok()),
        });
    Ok(VideoProbe {
        format_name: format.format_name,
        duration,
        video: VideoStream {
            codec: video.codec_name.clone().unwrap_or_default(),
            profile: video.profile.clone().unwrap_or_default(),
            pix_fmt: video.pix_fmt.clone().unwrap_or_default(),
            width: video.width.unwrap_or(0),
            height: video.height.unwrap_or(0),
            fps,
            duration: video_duration,
            num_frames: video.nb_read_frames.as_deref().and_then(|n| n.parse().ok()),
        },
        audio,
    })
}

/// Parses `30000/1001` or `30`; `0/0` is `None`.
fn parse_rate(rate: &str) -> Option<f64> {
    let (num, den) = rate.split_once('/').unwrap_or((rate, "1"));
    let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
    (den > 0.0 && num > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates() {
        assert_eq!(super::parse_rate("30/1"), Some(30.0));
        assert!((super::parse_rate("30000/1001").unwrap() - 29.97).abs() < 0.01);
        assert_eq!(super::parse_rate("0/0"), None);
    }
}
