//! The built-in prompt rewriter: deterministic and offline (SPEC §2, "Prompt expansion").
//!
//! It resolves `CharacterN` tags to the reference they stand for, lays the prompt out
//! shot by shot with times, and adds camera and lighting detail. The detail is chosen
//! by a hash of the shot's text, so the same prompt always reads the same way whatever
//! the seed.

use crate::plan::Plan;
use r2v_api::prompt::character_tags;

const CAMERA: [&str; 8] = [
    "slow push-in at eye level",
    "steady medium shot, slight handheld drift",
    "wide establishing shot, slow lateral pan",
    "low-angle tracking shot",
    "close-up with shallow depth of field",
    "over-the-shoulder framing, gentle dolly",
    "high-angle shot easing downward",
    "smooth orbit around the subject",
];

const LIGHTING: [&str; 8] = [
    "soft golden-hour key light",
    "cool overcast daylight",
    "warm practical lamps with soft shadows",
    "high-contrast side light",
    "diffuse studio softbox lighting",
    "blue-hour ambience with rim light",
    "bright natural sunlight",
    "moody low-key lighting",
];

/// The `actual_prompt` for a plan.
pub fn rewrite(plan: &Plan) -> String {
    let fps = f64::from(plan.fps);
    let mut lines = Vec::with_capacity(plan.shots.len() + 2);
    if !plan.preamble.is_empty() && plan.shots.iter().all(|s| s.text != plan.preamble) {
        lines.push(resolve_tags(&plan.preamble, plan));
    }
    for (k, shot) in plan.shots.iter().enumerate() {
        let hash = fnv1a(shot.text.as_bytes()) ^ k as u64;
        lines.push(format!(
            "[{}-{}s] Shot {}: {} Camera: {}. Lighting: {}.",
            trim_seconds(f64::from(shot.start_frame) / fps),
            trim_seconds(f64::from(shot.end_frame) / fps),
            k + 1,
            ensure_period(&resolve_tags(&shot.text, plan)),
            CAMERA[(hash % CAMERA.len() as u64) as usize],
            LIGHTING[((hash >> 8) % LIGHTING.len() as u64) as usize],
        ));
    }
    if !plan.negative_prompt.trim().is_empty() {
        lines.push(format!("Avoid: {}", plan.negative_prompt.trim()));
    }
    lines.join(" ")
}

/// `Character2` → `Character2 (the subject of reference image 1)`.
fn resolve_tags(text: &str, plan: &Plan) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut last = 0;
    for tag in character_tags(text) {
        out.push_str(&text[last..tag.span.end]);
        if let Some(reference) = plan.references.iter().find(|r| r.number == tag.number) {
            out.push_str(&format!(" (the subject of {})", reference.describe()));
        }
        last = tag.span.end;
    }
    out.push_str(&text[last..]);
    out
}

fn ensure_period(text: &str) -> String {
    let t = text.trim();
    if t.ends_with(['.', '!', '?']) {
        t.to_owned()
    } else {
        format!("{t}.")
    }
}

fn trim_seconds(s: f64) -> String {
    let text = format!("{s:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// FNV-1a, a stable hash (std's `DefaultHasher` may change between releases).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use crate::plan::plan;
    use r2v_api::{Preset, ValidateOptions, validate};
    use serde_json::json;

    #[test]
    fn tags_are_resolved_and_shots_timed() {
        let body = json!({"prompt": "[0-2.5s] Character1 waves. [2.5-5s] Character2 smiles",
            "video_urls": ["v.mp4"], "image_urls": ["i.png"], "negative_prompt": "blur"});
        let input = validate(
            &body,
            &ValidateOptions {
                allow_local_paths: true,
            },
        )
        .unwrap();
        let a = plan(&input, Preset::Flash, 1).actual_prompt.unwrap();
        assert!(
            a.starts_with(
                "[0-2.5s] Shot 1: Character1 (the subject of reference video 1) waves. Camera: "
            ),
            "{a}"
        );
        assert!(
            a.contains("[2.5-5s] Shot 2: Character2 (the subject of reference image 1) smiles."),
            "{a}"
        );
        assert!(a.ends_with("Avoid: blur"), "{a}");
        assert_eq!(
            plan(&input, Preset::Flash, 99).actual_prompt.unwrap(),
            a,
            "independent of the seed"
        );
    }
}
