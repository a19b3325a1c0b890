//! The open Wan 2.1/2.2 model family on burn (`flex` on the CPU; `cuda` and `wgpu` as
//! features, chosen at run time through [`device`]).
//!
//! This crate is model math only: it reads weights (its one I/O) and computes. It knows
//! nothing of mp4, HTTP or requests. [`dit::WanTransformer`] is the DiT (T2V, I2V,
//! per-token timesteps, VACE); [`weights::Weights`] loads diffusers or official
//! checkpoints; [`config::TransformerConfig`] reads diffusers configs. Every module is
//! checked against diffusers on tiny random weights (`tests/fixtures.rs`).
#![warn(missing_docs)]

pub mod attention;
pub mod compare;
pub mod config;
pub mod device;
pub mod dit;
pub mod forward;
pub mod layers;
pub mod lora;
pub mod model_dir;
pub mod pipeline;
pub mod resample;
pub mod scheduler;
pub mod tensor_io;
pub mod text;
pub mod umt5;
pub mod vae;
pub mod weights;

/// The CPU backend.
pub type Cpu = burn::backend::Flex;

/// The NVIDIA backend (`--features cuda`).
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;

/// The wgpu backend: Vulkan, Metal, DirectX (`--features wgpu`).
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu;

/// The precision weights are held and computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// 32-bit floats: what the fixtures are checked in.
    #[default]
    F32,
    /// bfloat16 weights and activations (half the memory); norms are computed in f32,
    /// and the CPU backend accumulates matmuls and softmax in f32.
    Bf16,
}

impl Precision {
    /// The burn dtype.
    pub fn dtype(self) -> burn::tensor::FloatDType {
        match self {
            Self::F32 => burn::tensor::FloatDType::F32,
            Self::Bf16 => burn::tensor::FloatDType::BF16,
        }
    }

    /// `t` in this precision (a no-op when it already is).
    pub fn apply<B: burn::prelude::Backend, const D: usize>(
        self,
        t: burn::prelude::Tensor<B, D>,
    ) -> burn::prelude::Tensor<B, D> {
        if t.dtype() == self.dtype().into() {
            t
        } else {
            t.cast(self.dtype())
        }
    }

    /// The precision a tensor is held in.
    pub fn of<B: burn::prelude::Backend, const D: usize>(t: &burn::prelude::Tensor<B, D>) -> Self {
        if t.dtype() == burn::tensor::DType::BF16 {
            Self::Bf16
        } else {
            Self::F32
        }
    }
}

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
    /// The device asked for is not in this build or not on this machine.
    #[error("device: {0}")]
    Device(String),
    /// A step callback asked the run to stop.
    #[error("cancelled")]
    Cancelled,
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
