//! The audio stage on the tiny MMAudio directory (`scripts/make-tiny-audio-model.py`), with
//! frames made here: it asks for the frames upstream's `load_video` takes, its track is
//! exactly the plan's length and follows the seed, and a cancel between steps stops it.

use image::RgbImage;
use r2v_api::{Preset, ValidateOptions};
use r2v_engine::audio::{AudioStage, Fit};
use r2v_engine::engine::LogLevel;
use r2v_engine::{EngineError, Plan, RenderCtx};
use r2v_wan::device::DeviceRequest;
use std::path::Path;
use std::sync::Arc;

fn stage(dir: &Path) -> Arc<dyn AudioStage> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = dir.join("tiny-audio");
    let made = std::process::Command::new("python3")
        .arg(root.join("scripts/make-tiny-audio-model.py"))
        .arg(&model)
        .output()
        .expect("python3 runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    r2v_audio_engine::open(&model, &DeviceRequest::Cpu.resolve().unwrap()).unwrap()
}

fn plan(seconds: &str, seed: u64) -> Plan {
    let body = format!(
        r#"{{"prompt": "Rain on a tin roof. Character1 rings a bell.", "duration": "{seconds}",
            "enable_audio": true, "image_urls": ["https://example.com/a.png"]}}"#
    );
    let input = r2v_api::validate_json_bytes(body.as_bytes(), &ValidateOptions::default()).unwrap();
    r2v_engine::plan(&input, Preset::Flash, seed)
}

/// Frames of the requested sizes: a gradient that moves with the frame index.
fn frames(stage: &dyn AudioStage, plan: &Plan) -> Vec<Vec<RgbImage>> {
    stage
        .frames(plan)
        .iter()
        .map(|set| {
            set.indices
                .iter()
                .map(|&i| {
                    RgbImage::from_fn(set.size.0, set.size.1, |x, y| {
                        image::Rgb([(x * 5 + i) as u8, (y * 3) as u8, (i * 7) as u8])
                    })
                })
                .collect()
        })
        .collect()
}

#[derive(Default)]
struct Ctx {
    steps: Vec<String>,
    cancel_after: Option<usize>,
}

impl RenderCtx for Ctx {
    fn log(&mut self, _: LogLevel, message: &str) {
        if message.starts_with("audio: step ") {
            self.steps.push(message.to_owned());
        }
    }
    fn progress(&mut self, _: &str, _: u64, _: u64) {}
    fn cancelled(&self) -> bool {
        self.cancel_after.is_some_and(|n| self.steps.len() >= n)
    }
}

#[test]
fn the_stage_asks_for_upstreams_frames_and_follows_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let stage = stage(dir.path());
    for (seconds, clip, sync) in [("5", 40, 125), ("10", 80, 250)] {
        let plan = plan(seconds, 1);
        let request = stage.frames(&plan);
        assert_eq!(request.len(), 2);
        assert_eq!(
            (request[0].indices.len(), request[0].size, request[0].fit),
            (clip, (28, 28), Fit::Stretch)
        );
        assert_eq!(
            (request[1].indices.len(), request[1].size, request[1].fit),
            (sync, (48, 48), Fit::CenterCrop)
        );
        // 8 fps and 25 fps out of 30 fps frames, in order, within the video.
        assert_eq!(&request[0].indices[..4], &[0, 3, 7, 11]);
        assert_eq!(&request[1].indices[..6], &[0, 1, 2, 3, 4, 6]);
        assert!(
            request
                .iter()
                .all(|set| set.indices.windows(2).all(|w| w[0] <= w[1]))
        );
        assert!(
            request
                .iter()
                .all(|set| set.indices.iter().all(|&i| i < plan.num_frames))
        );
    }
    let plan5 = plan("5", 1);
    let mut ctx = Ctx::default();
    let a = stage
        .generate(&plan5, frames(stage.as_ref(), &plan5), &mut ctx)
        .unwrap();
    assert_eq!(ctx.steps.len(), 25);
    assert_eq!(
        (a.sample_rate, a.channels, a.samples.len()),
        (16_000, 1, 80_000)
    );
    let again = stage
        .generate(&plan5, frames(stage.as_ref(), &plan5), &mut Ctx::default())
        .unwrap();
    assert_eq!(a, again);
    let other = plan("5", 2);
    let b = stage
        .generate(&other, frames(stage.as_ref(), &other), &mut Ctx::default())
        .unwrap();
    assert_ne!(a.samples, b.samples);
    let ten = plan("10", 1);
    let long = stage
        .generate(&ten, frames(stage.as_ref(), &ten), &mut Ctx::default())
        .unwrap();
    assert_eq!(long.samples.len(), 160_000);
}

#[test]
fn a_cancel_stops_the_stage_between_steps() {
    let dir = tempfile::tempdir().unwrap();
    let stage = stage(dir.path());
    let plan = plan("5", 3);
    let mut ctx = Ctx {
        cancel_after: Some(3),
        ..Ctx::default()
    };
    let result = stage.generate(&plan, frames(stage.as_ref(), &plan), &mut ctx);
    assert!(matches!(result, Err(EngineError::Cancelled)), "{result:?}");
    assert_eq!(
        ctx.steps,
        ["audio: step 1/25", "audio: step 2/25", "audio: step 3/25"]
    );
}
