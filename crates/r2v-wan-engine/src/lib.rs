//! The `wan` engine: a Wan2.1-VACE or Phantom-Wan checkpoint directory behind
//! `r2v-engine`'s [`Engine`](r2v_engine::engine::Engine) trait, on any device r2v-wan runs on.
//!
//! [`open`] picks the backend for a device and boxes a [`engine::WanEngine`], which turns a
//! plan (shots, references, preset, seed) into frames with `r2v-wan`'s pipeline;
//! [`memory`] estimates peak memory per device kind, plans what stays resident, queues
//! renders that would oversubscribe the device, refuses plans over the budget before any
//! work, and makes `r2v models inspect`'s report.
#![warn(missing_docs)]

pub mod engine;
pub mod memory;

pub use engine::{WanEngine, WanOptions, open};
pub use memory::{Report, inspect};
