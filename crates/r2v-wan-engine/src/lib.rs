//! The `wan` engine: a Wan2.1-VACE or Phantom-Wan checkpoint directory behind
//! `r2v-engine`'s [`Engine`](r2v_engine::engine::Engine) trait.
//!
//! [`engine::WanEngine`] turns a plan (shots, references, preset, seed) into frames with
//! `r2v-wan`'s pipeline; [`memory`] estimates peak memory, refuses plans over the budget
//! before any work, and makes `r2v models inspect`'s report.
#![warn(missing_docs)]

pub mod engine;
pub mod memory;

pub use engine::{WanEngine, WanOptions};
pub use memory::{Report, inspect};
