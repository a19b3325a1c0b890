//! MMAudio (Cheng et al., CVPR 2025; `hkchengrex/MMAudio`) on burn, generic over the backend
//! as `r2v-wan` is, so a CUDA or wgpu device runs it unchanged:
//!
//! - [`net`]: the flow-matching network (joint multimodal blocks over audio latents, CLIP
//!   frame features and text tokens; fused audio-only blocks; Synchformer features added to
//!   the audio's conditioning, frame by frame);
//! - [`sampler`]: upstream's Euler flow-matching loop with classifier-free guidance;
//! - [`vae`]: the 1-D mel VAE's decoder (latents → log-mel);
//! - [`vocoder`]: BigVGAN (16 kHz) and BigVGAN-v2 (44.1 kHz), mel → waveform;
//! - [`model_dir`]: a model directory, checked whole before any request;
//! - [`forward`]: module and pipeline runs on tensor files (`r2v audio …`).
//!
//! Weights keep upstream's state-dict names; loading goes through `r2v_wan::weights`, so a
//! missing, misshapen or unexpected key is named in one error.

pub mod clip;
pub mod config;
pub mod forward;
pub mod layers;
pub mod model_dir;
pub mod net;
pub mod pipeline;
pub mod sampler;
pub mod synchformer;
pub mod vae;
pub mod vocoder;

pub use r2v_wan::WanError as ModelError;
