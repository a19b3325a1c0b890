//! The open Wan 2.1/2.2 model family on burn (`flex` on CPU, `cuda` as a feature).
//!
//! This crate is model math only: it reads weights (its one I/O) and computes. It knows
//! nothing of mp4, HTTP or requests. [`dit::WanTransformer`] is the DiT (T2V, I2V,
//! per-token timesteps, VACE); [`weights::Weights`] loads diffusers or official
//! checkpoints; [`config::TransformerConfig`] reads diffusers configs. Every module is
//! checked against diffusers on tiny random weights (`tests/fixtures.rs`).
#![warn(missing_docs)]

pub mod config;
pub mod dit;
pub mod forward;
pub mod layers;
pub mod scheduler;
pub mod tensor_io;
pub mod weights;

/// The CPU backend.
pub type Cpu = burn::backend::Flex;

/// The NVIDIA backend (`--features cuda`).
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;

/// A GPU of the NVIDIA backend (`--features cuda`).
#[cfg(feature = "cuda")]
pub type GpuDevice = burn::backend::cuda::CudaDevice;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum WanError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A config file is malformed or incomplete.
    #[error("config: {0}")]
    Config(String),
    /// Weights are missing, misshapen, unexpected or unreadable; every key is named.
    #[error("weights: {0}")]
    Weights(String),
    /// An input has the wrong shape for the model.
    #[error("shape: {0}")]
    Shape(String),
}

impl WanError {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
