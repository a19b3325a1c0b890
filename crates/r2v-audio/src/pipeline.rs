//! A whole generation from the conditions after the feature extractors (upstream's
//! `eval_utils.generate` from `clip_features` on): project the conditions and the empty
//! (or negative-prompt) ones, integrate the noise with guidance, unnormalise, decode to
//! log-mel, vocode.

use crate::ModelError;
use crate::config::Mode;
use crate::net::Net;
use crate::sampler::Sampling;
use crate::vae::Decoder;
use crate::vocoder::Vocoder;
use burn::prelude::*;

/// A loaded model: network, VAE decoder, vocoder.
#[derive(Debug, Clone)]
pub struct AudioModel<B: Backend> {
    /// 16 kHz or 44.1 kHz.
    pub mode: Mode,
    /// The flow-matching network.
    pub net: Net<B>,
    /// The mel VAE's decoder.
    pub vae: Decoder<B>,
    /// BigVGAN.
    pub vocoder: Vocoder<B>,
}

/// The features a generation is conditioned on.
#[derive(Debug, Clone)]
pub struct Features<B: Backend> {
    /// CLIP image features `[b, clip, clip_dim]`, or `None` for "no video".
    pub clip: Option<Tensor<B, 3>>,
    /// Synchformer features `[b, sync, sync_dim]`, or `None` for "no video".
    pub sync: Option<Tensor<B, 3>>,
    /// CLIP text features `[b, 77, text_dim]`, or `None` for the empty prompt.
    pub text: Option<Tensor<B, 3>>,
    /// The negative prompt's text features, or `None` for the empty prompt.
    pub negative_text: Option<Tensor<B, 3>>,
}

/// What a generation makes.
#[derive(Debug, Clone)]
pub struct Generated<B: Backend> {
    /// The final latent in the VAE's units `[b, n, latent_dim]`.
    pub latent: Tensor<B, 3>,
    /// Log-mel `[b, mels, 2n]`.
    pub mel: Tensor<B, 3>,
    /// The waveform `[b, samples]` at the mode's rate.
    pub audio: Tensor<B, 2>,
}

impl<B: Backend> AudioModel<B> {
    /// Generates from `x0` `[b, n, latent_dim]` with `clip_len`/`sync_len` condition tokens
    /// (used where a feature is absent); `on_step(k, n)` after each step may stop it.
    pub fn generate(
        &self,
        features: Features<B>,
        x0: Tensor<B, 3>,
        (clip_len, sync_len): (usize, usize),
        (steps, cfg): (usize, f64),
        on_step: impl FnMut(usize, usize) -> Result<(), ModelError>,
    ) -> Result<Generated<B>, ModelError> {
        let device = x0.device();
        let [batch, n, _] = x0.dims();
        let (empty_clip, empty_sync, empty_text) =
            self.net.empty_features(batch, (clip_len, sync_len));
        let clip = features.clip.unwrap_or(empty_clip);
        let sync = features.sync.unwrap_or(empty_sync);
        let text = features.text.unwrap_or(empty_text);
        if clip.dims()[1] != clip_len || sync.dims()[1] != sync_len || sync_len % 8 != 0 {
            return Err(ModelError::Shape(format!(
                "conditions of {} CLIP frames and {} sync tokens, expected {clip_len} and {sync_len} (a multiple of 8)",
                clip.dims()[1],
                sync.dims()[1]
            )));
        }
        let conditions = self.net.conditions(clip, sync, text, n);
        let empty =
            self.net
                .empty_conditions(batch, features.negative_text, (n, clip_len, sync_len));
        let rotations = self.net.rotations(n, clip_len, &device);
        let x1 = Sampling {
            net: &self.net,
            conditions: &conditions,
            empty: &empty,
            rotations: &rotations,
            steps,
            cfg,
        }
        .run(x0, on_step)?;
        let latent = self.net.unnormalize(x1);
        let mel = self.vae.decode(latent.clone());
        let audio = self.vocoder.forward(mel.clone());
        Ok(Generated { latent, mel, audio })
    }
}
