//! The output object of SPEC §3: `{"video": {...}, "seed": ..., "actual_prompt": ...}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The generated file and what ffprobe reads from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VideoFile {
    /// Where the file can be downloaded (`file://` from the CLI).
    pub url: String,
    /// Always `video/mp4`.
    pub content_type: String,
    /// The file's name.
    pub file_name: String,
    /// Size in bytes.
    pub file_size: u64,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second (30).
    pub fps: f64,
    /// Length of the video stream in seconds.
    pub duration: f64,
    /// Number of video frames (150 or 300).
    pub num_frames: u32,
}

/// What a completed request returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Output {
    /// The generated video.
    pub video: VideoFile,
    /// The seed that was used; random when the input had none.
    pub seed: u64,
    /// The rewritten prompt, present when prompt expansion ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_prompt: Option<String>,
}
