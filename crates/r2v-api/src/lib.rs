//! The r2v contract: the vocabulary every other crate shares.
//!
//! It holds the endpoint ids ([`endpoint`]), the input as it arrives and as it is once
//! validated ([`input`]), the prompt grammar of `CharacterN` tags and `[a-bs]` shot
//! markers ([`prompt`]), the output object and its size table ([`output`], [`sizes`]),
//! the typed errors with their HTTP mapping ([`error`]) and usage prices ([`pricing`]).
//!
//! This crate does no I/O and knows nothing about HTTP frameworks, files or
//! subprocesses: checks that need the bytes of a reference file live in `r2v-media`.
//! Start reading at [`input::validate`].
#![deny(missing_docs)]

pub mod body;
pub mod endpoint;
pub mod error;
pub mod input;
pub mod output;
pub mod pricing;
pub mod prompt;
pub mod sizes;
pub mod wire_forms;

pub use endpoint::Preset;
pub use error::{ErrorDetail, LocItem, Outcome, RequestError, ValidationErrorBody};
pub use input::{
    InputSchema, ReferenceSource, ValidInput, ValidateOptions, validate, validate_json_bytes,
};
pub use output::{Output, VideoFile};
pub use pricing::{Charge, Prices};
pub use sizes::{AspectRatio, Duration, FPS, Resolution};
