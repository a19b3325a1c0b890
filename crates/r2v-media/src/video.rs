//! Video through ffmpeg pipes: decoding reference-video frames to RGB, and encoding
//! raw RGB frames plus PCM audio into the output mp4 (H.264 High, yuv420p, AAC stereo
//! 48 kHz, faststart, bit-exact muxing so that equal input gives equal bytes).

use crate::error::MediaError;
use crate::ffmpeg::{Limits, Subprocess, Tools};
use crate::probe;
use image::RgbImage;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Interleaved signed 16-bit PCM.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioPcm {
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u16,
    /// Interleaved samples.
    pub samples: Vec<i16>,
}

/// How the output mp4 is encoded.
#[derive(Debug, Clone)]
pub struct EncodeSettings {
    /// Frame width in pixels (even).
    pub width: u32,
    /// Frame height in pixels (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// x264 constant rate factor.
    pub crf: u8,
    /// x264 preset.
    pub preset: String,
    /// x264 threads; fixed (not "auto") so that output bytes do not depend on the core count.
    pub threads: u32,
    /// Written into the file's `comment` tag.
    pub comment: String,
    /// How long one frame write (or the final wait) may block before ffmpeg counts as hung
    /// and is killed. Time the engine spends between frames does not count, so a render
    /// may take as long as it takes.
    pub stall_timeout: Duration,
}

impl EncodeSettings {
    /// The defaults for an output of `width`×`height` at `fps`.
    pub fn new(width: u32, height: u32, fps: u32) -> Self {
        Self {
            width,
            height,
            fps,
            crf: 20,
            preset: "veryfast".to_owned(),
            threads: 4,
            comment: String::new(),
            stall_timeout: Duration::from_secs(600),
        }
    }

    fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }
}

/// An ffmpeg process turning piped RGB frames into an mp4 file.
pub struct Mp4Encoder {
    process: Subprocess,
    frame_bytes: usize,
    frames_written: u64,
    _audio: Option<tempfile::NamedTempFile>,
}

impl Mp4Encoder {
    /// Starts encoding to `output`; `audio`, when given, is muxed as AAC.
    pub fn start(
        tools: &Tools,
        output: &Path,
        settings: &EncodeSettings,
        audio: Option<&AudioPcm>,
    ) -> Result<Self, MediaError> {
        let audio_file = audio.map(write_pcm).transpose()?;
        let audio_input = audio.zip(audio_file.as_ref().map(|f| f.path()));
        let args = encode_args(settings, audio_input, output);
        let limits = Limits::encode(settings.stall_timeout);
        let process = Subprocess::spawn(&tools.ffmpeg, &args, limits, true)?;
        Ok(Self {
            process,
            frame_bytes: settings.frame_bytes(),
            frames_written: 0,
            _audio: audio_file,
        })
    }

    /// Writes one RGB24 frame of exactly width×height×3 bytes.
    pub fn write_frame(&mut self, rgb: &[u8]) -> Result<(), MediaError> {
        assert_eq!(rgb.len(), self.frame_bytes, "frame has the wrong size");
        self.process.write(rgb).map_err(|e| {
            MediaError::io(
                format!("writing frame {} to ffmpeg", self.frames_written),
                e,
            )
        })?;
        self.frames_written += 1;
        Ok(())
    }

    /// Closes the pipe and waits for the file to be finished.
    pub fn finish(self) -> Result<(), MediaError> {
        self.process.finish().map(drop)
    }

    /// Ends a failed encode: ffmpeg's own error when it has one, else `write_error`.
    pub fn abort(self, write_error: MediaError) -> MediaError {
        match self.process.finish() {
            Err(ffmpeg_error) => ffmpeg_error,
            Ok(_) => write_error,
        }
    }
}

/// The ffmpeg arguments that encode RGB24 frames from stdin (plus `audio`, raw s16le
/// PCM read from a file) into `output`. Public so that benchmarks can run the ffmpeg
/// CLI alone with exactly the same settings.
pub fn encode_args(
    settings: &EncodeSettings,
    audio: Option<(&AudioPcm, &Path)>,
    output: &Path,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-hide_banner".into(),
        "-loglevel".into(),
        "error".into(),
        "-nostdin".into(),
        "-f".into(),
        "rawvideo".into(),
        "-pix_fmt".into(),
        "rgb24".into(),
        "-video_size".into(),
        format!("{}x{}", settings.width, settings.height),
        "-framerate".into(),
        settings.fps.to_string(),
        "-i".into(),
        "pipe:0".into(),
    ];
    if let Some((pcm, path)) = audio {
        args.extend([
            "-f".into(),
            "s16le".into(),
            "-ar".into(),
            pcm.sample_rate.to_string(),
            "-ac".into(),
            pcm.channels.to_string(),
            "-i".into(),
            path.display().to_string(),
        ]);
    }
    args.extend(["-map".into(), "0:v:0".into()]);
    if audio.is_some() {
        args.extend(aac_args());
    }
    args.extend([
        "-c:v".into(),
        "libx264".into(),
        "-profile:v".into(),
        "high".into(),
        "-preset".into(),
        settings.preset.clone(),
        "-crf".into(),
        settings.crf.to_string(),
        "-pix_fmt".into(),
        "yuv420p".into(),
        "-threads".into(),
        settings.threads.to_string(),
        "-flags:v".into(),
        "+bitexact".into(),
    ]);
    args.extend(container_args(settings, output));
    args
}

/// The audio stream every output has: AAC, 160 kb/s, stereo, 48 kHz, bit-exact.
fn aac_args() -> Vec<String> {
    [
        "-map",
        "1:a:0",
        "-c:a",
        "aac",
        "-b:a",
        "160k",
        "-ar",
        "48000",
        "-ac",
        "2",
        "-flags:a",
        "+bitexact",
    ]
    .map(String::from)
    .to_vec()
}

/// The mp4 container: bit-exact, no inherited metadata but the comment, faststart.
fn container_args(settings: &EncodeSettings, output: &Path) -> Vec<String> {
    vec![
        "-fflags".into(),
        "+bitexact".into(),
        "-map_metadata".into(),
        "-1".into(),
        "-metadata".into(),
        format!("comment={}", settings.comment),
        "-movflags".into(),
        "+faststart".into(),
        "-f".into(),
        "mp4".into(),
        "-y".into(),
        output.display().to_string(),
    ]
}

/// Adds `audio` to the video-only mp4 `video` as `output`: the video stream is copied
/// as it is, the audio encoded (and resampled, and up-mixed) exactly as [`Mp4Encoder`]
/// does. For tracks made from the finished frames (a neural audio stage).
pub fn mux_audio(
    tools: &Tools,
    video: &Path,
    audio: &AudioPcm,
    output: &Path,
    settings: &EncodeSettings,
) -> Result<(), MediaError> {
    let pcm = write_pcm(audio)?;
    let mut args: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin", "-i"]
        .map(String::from)
        .to_vec();
    args.push(video.display().to_string());
    args.extend([
        "-f".into(),
        "s16le".into(),
        "-ar".into(),
        audio.sample_rate.to_string(),
        "-ac".into(),
        audio.channels.to_string(),
        "-i".into(),
        pcm.path().display().to_string(),
        "-map".into(),
        "0:v:0".into(),
        "-c:v".into(),
        "copy".into(),
    ]);
    args.extend(aac_args());
    args.extend(container_args(settings, output));
    let limits = Limits::encode(settings.stall_timeout);
    Subprocess::spawn(&tools.ffmpeg, &args, limits, false)?
        .finish()
        .map(drop)
}

/// Writes `pcm` as raw little-endian samples to a temp file for ffmpeg to read.
pub fn write_pcm(pcm: &AudioPcm) -> Result<tempfile::NamedTempFile, MediaError> {
    let mut file = tempfile::Builder::new()
        .prefix("r2v-audio-")
        .suffix(".pcm")
        .tempfile()
        .map_err(|e| MediaError::io("creating the audio temp file", e))?;
    let bytes: Vec<u8> = pcm.samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    file.write_all(&bytes)
        .and_then(|()| file.flush())
        .map_err(|e| MediaError::io("writing the audio temp file", e))?;
    Ok(file)
}

/// Decodes up to `max_frames` frames of `path` at `fps`, scaled to fit a
/// `max_side`×`max_side` box. A stream that will not decode is the file's fault:
/// [`MediaError::UnsupportedVideoFormat`].
pub fn decode_frames(
    tools: &Tools,
    path: &Path,
    max_side: u32,
    fps: u32,
    max_frames: u32,
) -> Result<Vec<RgbImage>, MediaError> {
    let probe = probe::probe(tools, path, false)?;
    let (w, h) = (probe.video.width.max(1), probe.video.height.max(1));
    let scale = (max_side as f64 / w.max(h) as f64).min(1.0);
    let even = |v: f64| ((v.round() as u32) / 2 * 2).max(2);
    let (out_w, out_h) = (even(w as f64 * scale), even(h as f64 * scale));
    let args: Vec<String> = vec![
        "-hide_banner".into(),
        "-loglevel".into(),
        "error".into(),
        "-nostdin".into(),
        "-protocol_whitelist".into(),
        "file".into(),
        "-threads".into(),
        "1".into(),
        "-i".into(),
        path.display().to_string(),
        "-map".into(),
        "0:v:0".into(),
        "-vf".into(),
        format!("fps={fps},scale={out_w}:{out_h}:flags=bilinear"),
        "-frames:v".into(),
        max_frames.to_string(),
        "-f".into(),
        "rawvideo".into(),
        "-pix_fmt".into(),
        "rgb24".into(),
        "pipe:1".into(),
    ];
    let frame_bytes = out_w as usize * out_h as usize * 3;
    let limits = Limits {
        max_stdout: frame_bytes * max_frames as usize,
        ..Limits::transcode()
    };
    let raw = match Subprocess::spawn(&tools.ffmpeg, &args, limits, false)?.finish() {
        Ok(raw) => raw,
        Err(MediaError::Ffmpeg {
            status,
            stderr_tail,
            ..
        }) if status.starts_with("exit code") => {
            return Err(MediaError::UnsupportedVideoFormat {
                reason: format!(
                    "its video stream could not be decoded ({})",
                    stderr_tail.lines().last().unwrap_or("")
                ),
            });
        }
        Err(other) => return Err(other),
    };
    let frames: Vec<RgbImage> = raw
        .chunks_exact(frame_bytes)
        .filter_map(|chunk| RgbImage::from_raw(out_w, out_h, chunk.to_vec()))
        .collect();
    if frames.is_empty() {
        return Err(MediaError::UnsupportedVideoFormat {
            reason: "its video stream decoded to no frames".to_owned(),
        });
    }
    Ok(frames)
}
