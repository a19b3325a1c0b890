//! Request planning and the engines that render a plan.
//!
//! The chain is `ValidInput` → [`plan::plan`] → [`plan::Plan`] → [`Engine::render`] →
//! frames into an [`engine::FrameSink`] → mp4 (through `r2v-media`). [`pipeline`] runs
//! that chain for one request, which is all `r2v run` and a server worker need.
//!
//! - [`plan`]: references numbered, `CharacterN` resolved, shots timed, sizes, seed.
//! - [`rewrite`]: the built-in deterministic prompt rewriter (`actual_prompt`).
//! - [`safety`]: the prompt policy check.
//! - [`audio`]: the [`audio::AudioStage`] seam for neural audio, and the procedural bed
//!   used without one.
//! - [`preview`]: the deterministic storyboard engine (not a neural model).
//!
//! Start reading at [`pipeline::Generator::generate`].
#![warn(missing_docs)]

pub mod audio;
pub mod engine;
pub mod pipeline;
pub mod plan;
pub mod preview;
pub mod rewrite;
pub mod safety;

pub use engine::{Engine, EngineError, FrameSink, ReferenceMedia, RenderCtx};
pub use plan::{Plan, Shot, plan};
