//! An MMAudio model directory, checked whole when it is opened:
//!
//! ```text
//! DIR/mmaudio.json        {"variant": "large_44k_v2"}  (a published variant: small_16k,
//!                         small_44k, medium_44k, large_44k, large_44k_v2), or any name with
//!                         "mode" ("16k" | "44k"), "network" (MMAudio's keyword arguments)
//!                         and "vae" ({data_dim, embed_dim, hidden_dim})
//! DIR/net.safetensors     the network (upstream's weights/mmaudio_*.pth, converted)
//! DIR/vae.safetensors     the mel VAE (ext_weights/v1-16.pth or v1-44.pth, converted)
//! DIR/vocoder.json        BigVGAN's hyper-parameters (its config.json / yml)
//! DIR/vocoder.safetensors BigVGAN's generator (best_netG.pt or bigvgan_generator.pt)
//! DIR/synchformer.safetensors  Synchformer (synchformer_state_dict.pth; `vfeat_extractor.*`
//!                         is read), for the product's audio stage
//! DIR/clip/               open_clip_config.json, open_clip_model.safetensors, tokenizer.json
//!                         (DFN5B-CLIP-ViT-H-14-384), for the product's audio stage
//! ```
//!
//! A custom directory may give "synchformer" ({img_size, embed_dim, depth, num_heads}) in
//! mmaudio.json; the default is upstream's (224 px, 768 wide, 12 blocks, 12 heads).
//! Generation from conditions (`r2v audio pipeline`) needs only the first five files.
//!
//! `scripts/convert-mmaudio.py` writes it from upstream's files.

use crate::ModelError;
use crate::config::{Mode, NetConfig, VaeConfig, VocoderConfig};
use crate::pipeline::AudioModel;
use crate::synchformer::SynchformerConfig;
use r2v_wan::attention::Kernel;
use r2v_wan::weights::Weights;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `mmaudio.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    variant: String,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    network: Option<NetConfig>,
    #[serde(default)]
    vae: Option<VaeConfig>,
    #[serde(default)]
    synchformer: Option<SynchformerConfig>,
}

/// A checked model directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// The directory.
    pub root: PathBuf,
    /// The variant's name.
    pub variant: String,
    /// 16 kHz or 44.1 kHz.
    pub mode: Mode,
    /// The network's shape.
    pub net: NetConfig,
    /// The VAE's shape.
    pub vae: VaeConfig,
    /// The vocoder's hyper-parameters.
    pub vocoder: VocoderConfig,
    /// Synchformer's shape.
    pub synchformer: SynchformerConfig,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))
}

impl ModelDir {
    /// Opens and checks `root`: the manifest, that every file is there, and that the
    /// network, VAE and vocoder agree (latent channels, mel bands, sample rate, hop).
    pub fn open(root: &Path) -> Result<Self, ModelError> {
        let manifest: Manifest = read_json(&root.join("mmaudio.json"))?;
        let known = NetConfig::variant(&manifest.variant);
        let net = match (manifest.network, known) {
            (Some(net), _) => net,
            (None, Some(net)) => net,
            (None, None) => {
                return Err(ModelError::Config(format!(
                    "mmaudio.json: unknown variant {:?} (known: {}); a custom one needs \"network\", \"mode\" and \"vae\"",
                    manifest.variant,
                    NetConfig::VARIANTS.join(", ")
                )));
            }
        };
        net.validate()?;
        let mode = manifest
            .mode
            .or_else(|| Mode::of_variant(&manifest.variant))
            .ok_or_else(|| {
                ModelError::Config("mmaudio.json: \"mode\" (16k or 44k) is missing".into())
            })?;
        let vae = manifest.vae.unwrap_or_else(|| VaeConfig::of(mode));
        let mut problems = Vec::new();
        if vae.data_dim != mode.mel_bands() {
            problems.push(format!(
                "the VAE has {} mel bands; {} mode has {}",
                vae.data_dim,
                label(mode),
                mode.mel_bands()
            ));
        }
        if vae.embed_dim != net.latent_dim {
            problems.push(format!(
                "the network's latent_dim {} is not the VAE's embed_dim {}",
                net.latent_dim, vae.embed_dim
            ));
        }
        let vocoder_json = root.join("vocoder.json");
        if !vocoder_json.is_file() {
            return Err(ModelError::Config(format!(
                "{}: no vocoder (vocoder.json and vocoder.safetensors: BigVGAN for 16k, BigVGAN-v2 for 44k)",
                root.display()
            )));
        }
        let vocoder: VocoderConfig = read_json(&vocoder_json)?;
        vocoder.validate()?;
        let rate = vocoder.sampling_rate.unwrap_or(mode.sample_rate());
        if rate != mode.sample_rate() {
            problems.push(format!(
                "the vocoder makes {} Hz audio; a {} model needs {} Hz",
                rate,
                label(mode),
                mode.sample_rate()
            ));
        }
        if vocoder.num_mels != vae.data_dim {
            problems.push(format!(
                "the vocoder takes {} mel bands; the VAE makes {}",
                vocoder.num_mels, vae.data_dim
            ));
        }
        if vocoder.hop() != mode.hop() {
            problems.push(format!(
                "the vocoder upsamples by {}; {} mode's hop is {}",
                vocoder.hop(),
                label(mode),
                mode.hop()
            ));
        }
        for file in ["net.safetensors", "vae.safetensors", "vocoder.safetensors"] {
            if !root.join(file).is_file() {
                problems.push(format!("{file} is missing"));
            }
        }
        if !problems.is_empty() {
            return Err(ModelError::Config(format!(
                "{} ({}): {}",
                root.display(),
                manifest.variant,
                problems.join("; ")
            )));
        }
        Ok(Self {
            root: root.to_path_buf(),
            variant: manifest.variant,
            mode,
            net,
            vae,
            vocoder,
            synchformer: manifest.synchformer.unwrap_or_else(SynchformerConfig::real),
        })
    }

    /// The three weight files, opened.
    pub fn weights(&self) -> Result<[Weights; 3], ModelError> {
        Ok([
            Weights::open(&self.root.join("net.safetensors"))?,
            Weights::open(&self.root.join("vae.safetensors"))?,
            Weights::open(&self.root.join("vocoder.safetensors"))?,
        ])
    }

    /// Parameters per part (network, VAE decoder and encoder, vocoder) and their bytes.
    pub fn parameters(&self) -> Result<Vec<(&'static str, u64, u64)>, ModelError> {
        let [net, vae, vocoder] = self.weights()?;
        let (n, nb, _) = net.summary();
        let (v, vb, _) = vae.summary();
        let (g, gb, _) = vocoder.summary();
        Ok(vec![("network", n, nb), ("vae", v, vb), ("vocoder", g, gb)])
    }

    /// Loads every part on `device`; every missing, misshapen or unexpected key is named.
    pub fn load<B: burn::prelude::Backend>(
        &self,
        kernel: Kernel,
        device: &B::Device,
    ) -> Result<AudioModel<B>, ModelError> {
        let [net_w, vae_w, vocoder_w] = self.weights()?;
        let net = crate::net::Net::load(&net_w, &self.net, kernel, device);
        let vae = crate::vae::Decoder::load(&vae_w, self.vae, kernel, device);
        let vocoder = crate::vocoder::Vocoder::load(&vocoder_w, &self.vocoder, device);
        let problems: Vec<String> = [("net", net_w), ("vae", vae_w), ("vocoder", vocoder_w)]
            .into_iter()
            .filter_map(|(part, w)| {
                w.finish().err().map(|e| match e {
                    ModelError::Weights(problems) => format!("{part}.safetensors: {problems}"),
                    other => format!("{part}.safetensors: {other}"),
                })
            })
            .collect();
        if !problems.is_empty() {
            return Err(ModelError::Weights(problems.join("; ")));
        }
        Ok(AudioModel {
            mode: self.mode,
            net,
            vae,
            vocoder,
        })
    }
}

fn label(mode: Mode) -> &'static str {
    match mode {
        Mode::K16 => "16k",
        Mode::K44 => "44k",
    }
}
