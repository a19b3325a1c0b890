//! The output size table of SPEC §3: aspect ratio × resolution → frame size, and
//! duration → frame count at the fixed output rate of 30 fps.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Frames per second of every output file.
pub const FPS: u32 = 30;

/// The `aspect_ratio` input field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum AspectRatio {
    /// `"16:9"` (the default).
    #[serde(rename = "16:9")]
    Landscape16x9,
    /// `"9:16"`.
    #[serde(rename = "9:16")]
    Portrait9x16,
    /// `"1:1"`.
    #[serde(rename = "1:1")]
    Square,
    /// `"4:3"`.
    #[serde(rename = "4:3")]
    Landscape4x3,
    /// `"3:4"`.
    #[serde(rename = "3:4")]
    Portrait3x4,
}

impl AspectRatio {
    /// Every value, in the order the error messages list them.
    pub const ALL: [Self; 5] = [
        Self::Landscape16x9,
        Self::Portrait9x16,
        Self::Square,
        Self::Landscape4x3,
        Self::Portrait3x4,
    ];

    /// The wire spelling, e.g. `"16:9"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Landscape16x9 => "16:9",
            Self::Portrait9x16 => "9:16",
            Self::Square => "1:1",
            Self::Landscape4x3 => "4:3",
            Self::Portrait3x4 => "3:4",
        }
    }
}

/// The `resolution` input field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Resolution {
    /// `"720p"`.
    #[serde(rename = "720p")]
    P720,
    /// `"1080p"` (the default).
    #[serde(rename = "1080p")]
    P1080,
}

impl Resolution {
    /// Every value, in the order the error messages list them.
    pub const ALL: [Self; 2] = [Self::P720, Self::P1080];

    /// The wire spelling, e.g. `"720p"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::P720 => "720p",
            Self::P1080 => "1080p",
        }
    }
}

/// The `duration` input field: an enum string on the wire (`"5"`, `"10"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Duration {
    /// `"5"` seconds (the default).
    #[serde(rename = "5")]
    Five,
    /// `"10"` seconds.
    #[serde(rename = "10")]
    Ten,
}

impl Duration {
    /// Every value, in the order the error messages list them.
    pub const ALL: [Self; 2] = [Self::Five, Self::Ten];

    /// The wire spelling, e.g. `"5"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Five => "5",
            Self::Ten => "10",
        }
    }

    /// Length in whole seconds.
    pub fn seconds(self) -> u32 {
        match self {
            Self::Five => 5,
            Self::Ten => 10,
        }
    }

    /// Number of output frames at [`FPS`]: 150 or 300.
    pub fn num_frames(self) -> u32 {
        self.seconds() * FPS
    }
}

/// The output frame size `(width, height)` for an aspect ratio and resolution (SPEC §3).
pub fn frame_size(aspect: AspectRatio, resolution: Resolution) -> (u32, u32) {
    use AspectRatio::*;
    use Resolution::*;
    match (aspect, resolution) {
        (Landscape16x9, P720) => (1280, 720),
        (Landscape16x9, P1080) => (1920, 1080),
        (Portrait9x16, P720) => (720, 1280),
        (Portrait9x16, P1080) => (1080, 1920),
        (Square, P720) => (960, 960),
        (Square, P1080) => (1440, 1440),
        (Landscape4x3, P720) => (1088, 832),
        (Landscape4x3, P1080) => (1632, 1248),
        (Portrait3x4, P720) => (832, 1088),
        (Portrait3x4, P1080) => (1248, 1632),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_size_is_even_and_matches_its_orientation() {
        for aspect in AspectRatio::ALL {
            for res in Resolution::ALL {
                let (w, h) = frame_size(aspect, res);
                assert!(w % 16 == 0 || w % 8 == 0, "{w}");
                assert_eq!(w % 2 + h % 2, 0);
                let landscape = matches!(
                    aspect,
                    AspectRatio::Landscape16x9 | AspectRatio::Landscape4x3
                );
                assert_eq!(w > h, landscape, "{aspect:?} {res:?}");
            }
        }
        assert_eq!(Duration::Ten.num_frames(), 300);
    }
}
