//! The neural audio stage: an MMAudio model directory (`r2v_audio::model_dir`) behind
//! `r2v_engine`'s [`AudioStage`], loaded once at start-up on the engine's device.
//!
//! For a plan of `d` seconds it asks for two frame sets, as upstream's `load_video` makes
//! them from a video: `8·d` frames squashed to the CLIP tower's size (384 px), and `25·d`
//! frames resized and centre-cropped to Synchformer's (224 px). It encodes the first with
//! CLIP, the second in 16-frame segments every 8 frames with Synchformer, and the prompt
//! (the rewritten one when expansion ran, else the preamble and every shot's text) and
//! the negative prompt with CLIP's text tower; draws the starting noise from the plan's
//! seed (so the same request gives the same track); runs the guided flow-matching
//! sampler with `audio: step k/N` logs and a cancel check between steps; decodes and
//! vocodes; and answers mono PCM of exactly `d` seconds at the model's rate (the encoder
//! resamples it to 48 kHz stereo AAC).

mod stage;

pub use stage::{AudioInspect, DEFAULT_STEPS, inspect, open};
