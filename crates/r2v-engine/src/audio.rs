//! The audio track. [`AudioStage`] is the seam for a neural audio stage (one that hears
//! the finished frames and the prompt, such as `r2v-audio-engine`'s MMAudio), chosen at
//! start-up as engines are; without one, every engine's output gets the procedural bed:
//! a soft drone in a key chosen by the seed, with a bell cue at the start of every shot
//! (AAC-ready PCM: stereo, 48 kHz, exactly the video's length; the same plan gives the
//! same samples).

use crate::engine::{EngineError, RenderCtx};
use crate::plan::Plan;
use image::RgbImage;
use r2v_media::video::AudioPcm;
use std::f64::consts::TAU;

/// How a frame is brought to a set's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Resized to exactly the size, whatever the aspect (CLIP's squash).
    Stretch,
    /// The shorter side resized to the size's, then the centre cut out (torchvision's
    /// `Resize(side)` + `CenterCrop(side)`).
    CenterCrop,
}

/// Frames at one rate and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSet {
    /// Frame indices, ascending (an index may repeat).
    pub indices: Vec<u32>,
    /// Width and height the frames are brought to (bicubic).
    pub size: (u32, u32),
    /// How.
    pub fit: Fit,
}

/// Which rendered frames a stage looks at: one or more sets, each at its own size.
pub type FrameRequest = Vec<FrameSet>;

/// A neural audio stage: the finished frames plus the request's text → the soundtrack.
pub trait AudioStage: Send + Sync {
    /// What runs, for the request's logs (model, device).
    fn describe(&self) -> String;
    /// The frames [`AudioStage::generate`] takes for `plan`.
    fn frames(&self, plan: &Plan) -> FrameRequest;
    /// The track for `plan` (any rate and channel count: the encoder resamples to 48 kHz
    /// stereo), from the frames asked for: one list per set, in order. Checks
    /// [`RenderCtx::cancelled`] between steps and reports them.
    fn generate(
        &self,
        plan: &Plan,
        frames: Vec<Vec<RgbImage>>,
        ctx: &mut dyn RenderCtx,
    ) -> Result<AudioPcm, EngineError>;
}

/// Output sample rate.
pub const SAMPLE_RATE: u32 = 48_000;

/// Root notes (Hz) the drone may use: A1 to G#2.
const ROOTS: [f64; 12] = [
    55.0, 58.27, 61.74, 65.41, 69.3, 73.42, 77.78, 82.41, 87.31, 92.5, 98.0, 103.83,
];

/// Renders the bed for `plan`.
pub fn render_bed(plan: &Plan) -> AudioPcm {
    let total = (plan.duration_seconds() * f64::from(SAMPLE_RATE)).round() as usize;
    let rate = f64::from(SAMPLE_RATE);
    let root = ROOTS[(plan.seed % ROOTS.len() as u64) as usize];
    let cue_times: Vec<(f64, f64)> = plan
        .shots
        .iter()
        .enumerate()
        .map(|(k, shot)| {
            // Each cue climbs the major pentatonic scale from two octaves above the root.
            let steps = [0.0, 2.0, 4.0, 7.0, 9.0];
            let semitones = steps[k % steps.len()] + 12.0 * (k / steps.len()) as f64;
            (
                f64::from(shot.start_frame) / f64::from(plan.fps),
                root * 4.0 * 2f64.powf(semitones / 12.0),
            )
        })
        .collect();
    let fade = 0.05 * rate;
    let mut samples = Vec::with_capacity(total * 2);
    for n in 0..total {
        let t = n as f64 / rate;
        let swell = 0.6 + 0.4 * (TAU * t / 4.0).sin();
        let drone_l = (TAU * root * t).sin()
            + 0.5 * (TAU * root * 1.5 * t).sin()
            + 0.25 * (TAU * root * 2.0 * t).sin();
        let drone_r = (TAU * root * 1.003 * t).sin()
            + 0.5 * (TAU * root * 1.497 * t).sin()
            + 0.25 * (TAU * root * 2.004 * t).sin();
        let mut cue = 0.0;
        for &(start, freq) in &cue_times {
            let dt = t - start;
            if (0.0..2.0).contains(&dt) {
                let attack = (dt / 0.005).min(1.0);
                cue += attack
                    * (-dt * 3.0).exp()
                    * ((TAU * freq * dt).sin() + 0.3 * (TAU * freq * 2.76 * dt).sin());
            }
        }
        let edge = (n as f64 / fade).min((total - n) as f64 / fade).min(1.0);
        let left = edge * (0.18 * swell * drone_l + 0.35 * cue);
        let right = edge * (0.18 * swell * drone_r + 0.35 * cue);
        samples.push(to_i16(left));
        samples.push(to_i16(right));
    }
    AudioPcm {
        sample_rate: SAMPLE_RATE,
        channels: 2,
        samples,
    }
}

fn to_i16(x: f64) -> i16 {
    (x.clamp(-1.0, 1.0) * f64::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan;
    use r2v_api::{Preset, ValidateOptions, validate};
    use serde_json::json;

    #[test]
    fn bed_is_stereo_full_length_and_has_a_cue_per_shot() {
        let input = validate(
            &json!({"prompt": "[0-2s] a [2-5s] b"}),
            &ValidateOptions::default(),
        )
        .unwrap();
        let p = plan(&input, Preset::Flash, 3);
        let pcm = render_bed(&p);
        assert_eq!((pcm.channels, pcm.samples.len()), (2, 5 * 48_000 * 2));
        let energy = |from_s: f64| -> f64 {
            let start = (from_s * 48_000.0) as usize * 2;
            pcm.samples[start..start + 4800]
                .iter()
                .map(|&s| f64::from(s).powi(2))
                .sum::<f64>()
        };
        // The cue at 2 s makes the 100 ms after it louder than the 100 ms before it.
        assert!(
            energy(2.0) > 1.5 * energy(1.85),
            "{} vs {}",
            energy(2.0),
            energy(1.85)
        );
        assert_eq!(render_bed(&p), pcm);
    }
}
