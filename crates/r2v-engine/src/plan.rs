//! Planning: a [`ValidInput`] becomes a [`Plan`] that any engine can render.
//!
//! The plan fixes everything that is decided before pixels: the references in
//! Character order (videos first), the shots with their frame ranges and the
//! characters each one shows, the output size, rate and frame count, the seed, and the
//! rewritten prompt. Planning is pure and deterministic; it does no I/O.

use crate::rewrite;
use r2v_api::prompt::{Timeline, character_tags};
use r2v_api::sizes::frame_size;
use r2v_api::{FPS, Preset, ValidInput};

/// A reference in Character order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedReference {
    /// `N` of `CharacterN` (1-based).
    pub number: u32,
    /// Whether it came from `video_urls`.
    pub is_video: bool,
    /// 1-based position within its own list (`video_urls` or `image_urls`).
    pub position: usize,
}

impl PlannedReference {
    /// `reference video 2`, `reference image 1`.
    pub fn describe(&self) -> String {
        let kind = if self.is_video { "video" } else { "image" };
        format!("reference {kind} {}", self.position)
    }
}

/// One shot: a frame range with its own text and subjects.
#[derive(Debug, Clone, PartialEq)]
pub struct Shot {
    /// First frame (inclusive).
    pub start_frame: u32,
    /// Last frame (exclusive).
    pub end_frame: u32,
    /// The shot's text as the user wrote it (or as the splitter cut it).
    pub text: String,
    /// Character numbers the shot shows: those its text (or the preamble) names, else all.
    pub characters: Vec<u32>,
}

impl Shot {
    /// Number of frames in the shot.
    pub fn frames(&self) -> u32 {
        self.end_frame - self.start_frame
    }
}

/// Everything an engine needs to render one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Sampling preset, from the endpoint.
    pub preset: Preset,
    /// References in Character order.
    pub references: Vec<PlannedReference>,
    /// Shots in order; they cover every frame exactly once.
    pub shots: Vec<Shot>,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Output frame rate.
    pub fps: u32,
    /// Output frame count.
    pub num_frames: u32,
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Text before the first shot marker (style, setting), shared by all shots.
    pub preamble: String,
    /// The rewritten prompt, when expansion is on.
    pub actual_prompt: Option<String>,
    /// The negative prompt.
    pub negative_prompt: String,
    /// Whether the output gets an audio track.
    pub enable_audio: bool,
}

impl Plan {
    /// Output length in seconds.
    pub fn duration_seconds(&self) -> f64 {
        f64::from(self.num_frames) / f64::from(self.fps)
    }
}

/// Most shots the automatic splitter makes for a 5 s video; 10 s gets one more.
const AUTO_SHOTS_PER_5S: usize = 2;

/// Plans `input` for `preset`. `seed` is the input's seed, or the caller's random one.
pub fn plan(input: &ValidInput, preset: Preset, seed: u64) -> Plan {
    let (width, height) = frame_size(input.aspect_ratio, input.resolution);
    let num_frames = input.duration.num_frames();
    let references: Vec<PlannedReference> = (0..input.video_urls.len())
        .map(|i| (true, i))
        .chain((0..input.image_urls.len()).map(|i| (false, i)))
        .enumerate()
        .map(|(n, (is_video, i))| PlannedReference {
            number: n as u32 + 1,
            is_video,
            position: i + 1,
        })
        .collect();

    let timed = timed_texts(&input.timeline, input, f64::from(input.duration.seconds()));
    let preamble_tags = tag_numbers(&input.timeline.preamble);
    let all: Vec<u32> = references.iter().map(|r| r.number).collect();
    let shots: Vec<Shot> = timed
        .iter()
        .enumerate()
        .map(|(k, (start_s, text))| {
            let end_s = timed
                .get(k + 1)
                .map_or(f64::from(input.duration.seconds()), |next| next.0);
            let mut characters = tag_numbers(text);
            if characters.is_empty() {
                characters = if preamble_tags.is_empty() {
                    all.clone()
                } else {
                    preamble_tags.clone()
                };
            }
            Shot {
                start_frame: seconds_to_frame(*start_s, num_frames),
                end_frame: seconds_to_frame(end_s, num_frames),
                text: text.clone(),
                characters,
            }
        })
        .filter(|shot| shot.end_frame > shot.start_frame)
        .collect();

    let mut plan = Plan {
        preset,
        references,
        shots,
        width,
        height,
        fps: FPS,
        num_frames,
        seed,
        preamble: input.timeline.preamble.clone(),
        actual_prompt: None,
        negative_prompt: input.negative_prompt.clone(),
        enable_audio: input.enable_audio,
    };
    if input.enable_prompt_expansion {
        plan.actual_prompt = Some(rewrite::rewrite(&plan));
    }
    plan
}

/// The start time and text of each shot. Marked prompts keep their markers (gaps are
/// closed by letting a shot run until the next one starts); unmarked prompts are one
/// shot, or are split at sentence ends when expansion and `multi_shots` are both on.
fn timed_texts(timeline: &Timeline, input: &ValidInput, duration_s: f64) -> Vec<(f64, String)> {
    if !timeline.segments.is_empty() {
        return timeline
            .segments
            .iter()
            .enumerate()
            .map(|(k, seg)| (if k == 0 { 0.0 } else { seg.start }, seg.text.clone()))
            .collect();
    }
    let prompt = timeline.preamble.clone();
    if !(input.enable_prompt_expansion && input.multi_shots) {
        return vec![(0.0, prompt)];
    }
    let sentences = split_sentences(&prompt);
    let max_shots = AUTO_SHOTS_PER_5S + (duration_s as usize / 5).saturating_sub(1);
    let shots = sentences.len().clamp(1, max_shots);
    let per_shot = duration_s / shots as f64;
    (0..shots)
        .map(|k| {
            let from = k * sentences.len() / shots;
            let to = (k + 1) * sentences.len() / shots;
            let text = sentences[from..to].join(" ");
            (
                k as f64 * per_shot,
                if text.is_empty() {
                    prompt.clone()
                } else {
                    text
                },
            )
        })
        .collect()
}

/// Splits at `.`, `!` or `?` followed by white space or the end.
fn split_sentences(text: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        let at_end = chars.peek().is_none_or(|n| n.is_whitespace());
        if matches!(c, '.' | '!' | '?') && at_end {
            let s = current.trim();
            if !s.is_empty() {
                sentences.push(s.to_owned());
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        sentences.push(rest.to_owned());
    }
    sentences
}

fn tag_numbers(text: &str) -> Vec<u32> {
    let mut numbers: Vec<u32> = Vec::new();
    for tag in character_tags(text) {
        if !numbers.contains(&tag.number) {
            numbers.push(tag.number);
        }
    }
    numbers
}

fn seconds_to_frame(seconds: f64, num_frames: u32) -> u32 {
    ((seconds * f64::from(FPS)).round() as u32).min(num_frames)
}

/// A random seed in `0..2^63`, for inputs that did not choose one.
pub fn random_seed() -> u64 {
    let seed = getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    seed & (r2v_api::input::SEED_LIMIT - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use r2v_api::{ValidateOptions, validate};
    use serde_json::json;

    fn planned(body: serde_json::Value) -> Plan {
        let input = validate(
            &body,
            &ValidateOptions {
                allow_local_paths: true,
            },
        )
        .unwrap();
        plan(&input, Preset::Flash, 7)
    }

    #[test]
    fn references_are_numbered_videos_first() {
        let p = planned(
            json!({"prompt": "x", "image_urls": ["a.png"], "video_urls": ["v1.mp4", "v2.mp4"]}),
        );
        let described: Vec<String> = p
            .references
            .iter()
            .map(|r| format!("{} {}", r.number, r.describe()))
            .collect();
        assert_eq!(
            described,
            [
                "1 reference video 1",
                "2 reference video 2",
                "3 reference image 1"
            ]
        );
    }

    #[test]
    fn marked_shots_cover_every_frame() {
        let p = planned(
            json!({"prompt": "Noir. [0-2s] Character1 waits. [3-5s] Character2 arrives.",
            "image_urls": ["a.png", "b.png"], "enable_prompt_expansion": false}),
        );
        let ranges: Vec<(u32, u32, Vec<u32>)> = p
            .shots
            .iter()
            .map(|s| (s.start_frame, s.end_frame, s.characters.clone()))
            .collect();
        assert_eq!(ranges, vec![(0, 90, vec![1]), (90, 150, vec![2])]);
        assert_eq!(p.actual_prompt, None);
    }

    #[test]
    fn unmarked_prompts_are_split_only_with_expansion_and_multi_shots() {
        let body = json!({"prompt": "One. Two! Three? Four.", "duration": "10"});
        assert_eq!(planned(body.clone()).shots.len(), 3);
        let mut single = body.clone();
        single["multi_shots"] = json!(false);
        assert_eq!(planned(single).shots.len(), 1);
        let five = planned(json!({"prompt": "One. Two. Three."}));
        let frames: Vec<u32> = five.shots.iter().map(Shot::frames).collect();
        assert_eq!(frames, vec![75, 75]);
        assert_eq!(five.shots[0].text, "One.");
        assert_eq!(five.shots[1].text, "Two. Three.");
    }
}
