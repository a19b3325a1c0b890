//! Model directories: what a checkpoint on disk is, and loading its parts.
//!
//! Two layouts:
//! - a diffusers pipeline directory: `model_index.json`, `transformer/`, `vae/` (each a
//!   `config.json` plus safetensors, sharded or not, diffusers or official key names), and for
//!   `r2v run`: `text_encoder/` (umT5) and `tokenizer/tokenizer.json`; optional
//!   `scheduler/scheduler_config.json` (its `flow_shift`) and `r2v.json` (below);
//! - a single `NAME.weights.safetensors` with `transformer.` / `vae.` key prefixes beside a
//!   `NAME.config.json` holding `{"transformer": {"config": …}, "vae": {"config": …}}` (the
//!   pipeline fixture's layout; no text encoder).
//!
//! The kind is read from the configs: a transformer with `vace_layers` is VACE; a plain
//! T2V transformer is Phantom when `model_index.json`'s `_class_name` or `r2v.json`'s
//! `conditioning` says so (Phantom ships plain Wan weights); anything else is refused. The size
//! comes from the transformer's width, the version from the VAE. `r2v.json` may set
//! `conditioning` (`vace` | `phantom`), `max_area` (pixels generated per frame; default 832×480
//! for 1.3B-class models, 1280×720 for 14B), `fps` (16), `flow_shift`, `steps` (standard preset),
//! `guidance`, `flash_lora` (a path relative to the directory), `text_len` (512),
//! `vace_scale` (1.0), `reference_order` (`diffusers` | `official`) and `image_guidance`
//! (Phantom's, 5.0).
//!
//! This is also the one place where a directory becomes models on a device
//! ([`ModelDir::pipeline`], [`ModelDir::text_encoder`]) and where the two sampling presets
//! are defined ([`ModelDir::sampler`]).

use crate::attention::Kernel;
use crate::config::TransformerConfig;
use crate::dit::WanTransformer;
use crate::lora::Lora;
use crate::pipeline::{Method, Pipeline, ReferenceOrder, Sampler};
use crate::scheduler::Schedule;
use crate::text::TextEncoder;
use crate::umt5::Umt5Config;
use crate::vae::{VaeConfig, WanVae};
use crate::{Precision, WanError};
use burn::prelude::Backend;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Steps of the flash preset (LightX2V's 4-step distillation).
pub const FLASH_STEPS: usize = 4;
/// Steps of the standard preset unless `r2v.json` says otherwise.
pub const STANDARD_STEPS: usize = 30;
/// Text guidance of the standard preset unless `r2v.json` says otherwise.
pub const STANDARD_GUIDANCE: f32 = 5.0;
/// Phantom's image guidance unless `r2v.json` says otherwise (Phantom's default).
pub const PHANTOM_IMAGE_GUIDANCE: f32 = 5.0;

/// The two ways of sampling a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplingPreset {
    /// Few-step distilled sampling without guidance ([`Sampler::flash`]).
    Flash,
    /// UniPC with classifier-free guidance.
    Standard,
}

/// How a part is put on a device.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Precision of the DiT and umT5 (the VAE is always f32, as diffusers recommends).
    pub precision: Precision,
    /// The attention kernel.
    pub attention: Kernel,
}

/// How references condition this checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditioningKind {
    /// Wan2.1-VACE.
    Vace,
    /// Phantom-Wan.
    Phantom,
}

/// Operator settings from `r2v.json` (all optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `vace` or `phantom`.
    pub conditioning: Option<String>,
    /// Pixels per generated frame; frames are scaled to the output size afterwards.
    pub max_area: Option<usize>,
    /// The model's frame rate (Wan 2.1: 16).
    pub fps: Option<u32>,
    /// Flow shift for both presets.
    pub flow_shift: Option<f64>,
    /// Steps of the standard preset.
    pub steps: Option<usize>,
    /// Guidance of the standard preset.
    pub guidance: Option<f32>,
    /// A LightX2V LoRA merged for the flash preset, relative to the directory.
    pub flash_lora: Option<PathBuf>,
    /// Text context length.
    pub text_len: Option<usize>,
    /// VACE `conditioning_scale` for every block.
    pub vace_scale: Option<f32>,
    /// Frame order of multiple VACE references: `diffusers` (last first) or `official`.
    pub reference_order: Option<String>,
    /// Phantom's image guidance scale.
    pub image_guidance: Option<f32>,
}

/// Where one model's config and weights are.
#[derive(Debug, Clone)]
pub struct Part {
    /// Its parsed config.
    pub config: serde_json::Value,
    /// Weights: a file, an index json or a directory.
    pub weights: PathBuf,
    /// Key prefix inside the weights (single-file layout).
    pub prefix: String,
}

/// A checkpoint directory, inspected.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// The directory (or file) given.
    pub root: PathBuf,
    /// VACE or Phantom.
    pub kind: ConditioningKind,
    /// The DiT's config.
    pub transformer_config: TransformerConfig,
    /// The VAE's config.
    pub vae_config: VaeConfig,
    /// The DiT.
    pub transformer: Part,
    /// The VAE.
    pub vae: Part,
    /// umT5 and its tokenizer, when the directory has them.
    pub text: Option<(Part, PathBuf)>,
    /// `r2v.json`.
    pub settings: Settings,
    /// `scheduler/scheduler_config.json`'s `flow_shift`, if any.
    pub scheduler_shift: Option<f64>,
}

fn read_json(path: &Path) -> Result<serde_json::Value, WanError> {
    let text = std::fs::read_to_string(path).map_err(|e| WanError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| WanError::Config(format!("{}: {e}", path.display())))
}

fn params<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    what: &str,
) -> Result<T, WanError> {
    serde_json::from_value(value.clone()).map_err(|e| WanError::Config(format!("{what}: {e}")))
}

/// The weights of a diffusers component folder: an index json, or its safetensors.
fn component(dir: &Path, name: &str) -> Result<Part, WanError> {
    let folder = dir.join(name);
    let config = folder.join("config.json");
    if !config.is_file() {
        return Err(WanError::Config(format!(
            "{} has no {name}/config.json",
            dir.display()
        )));
    }
    let has_weights = std::fs::read_dir(&folder)
        .map_err(|e| WanError::io(&folder, e))?
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"));
    if !has_weights {
        return Err(WanError::Weights(format!(
            "{} has no .safetensors weights",
            folder.display()
        )));
    }
    Ok(Part {
        config: read_json(&config)?,
        weights: folder,
        prefix: String::new(),
    })
}

impl ModelDir {
    /// Inspects `path`: a diffusers pipeline directory or a prefixed single file.
    pub fn open(path: &Path) -> Result<Self, WanError> {
        let root = path.to_path_buf();
        let (transformer, vae, text, index, settings, scheduler_shift) = if path.is_dir() {
            let index = path.join("model_index.json");
            let index = if index.is_file() {
                Some(read_json(&index)?)
            } else {
                None
            };
            let settings_path = path.join("r2v.json");
            let settings: Settings = if settings_path.is_file() {
                params(
                    &read_json(&settings_path)?,
                    &settings_path.display().to_string(),
                )?
            } else {
                Settings::default()
            };
            let text = if path.join("text_encoder").is_dir() {
                let tokenizer = path.join("tokenizer/tokenizer.json");
                if !tokenizer.is_file() {
                    return Err(WanError::Config(format!(
                        "{} has a text_encoder but no tokenizer/tokenizer.json",
                        path.display()
                    )));
                }
                Some((component(path, "text_encoder")?, tokenizer))
            } else {
                None
            };
            let scheduler = path.join("scheduler/scheduler_config.json");
            let shift = if scheduler.is_file() {
                read_json(&scheduler)?["flow_shift"].as_f64()
            } else {
                None
            };
            (
                component(path, "transformer")?,
                component(path, "vae")?,
                text,
                index,
                settings,
                shift,
            )
        } else if path.is_file() {
            let name = path.to_string_lossy();
            let stem = name
                .strip_suffix(".weights.safetensors")
                .or_else(|| name.strip_suffix(".safetensors"))
                .unwrap_or(&name);
            let config_path = PathBuf::from(format!("{stem}.config.json"));
            if !config_path.is_file() {
                return Err(WanError::Config(format!(
                    "a single-file model needs {} beside it",
                    config_path.display()
                )));
            }
            let config = read_json(&config_path)?;
            let part = |key: &str| Part {
                config: config[key]["config"].clone(),
                weights: path.to_path_buf(),
                prefix: format!("{key}."),
            };
            (
                part("transformer"),
                part("vae"),
                None,
                None,
                Settings::default(),
                None,
            )
        } else {
            return Err(WanError::Config(format!(
                "{} is neither a model directory nor a weights file",
                path.display()
            )));
        };

        let transformer_config: TransformerConfig =
            params(&transformer.config, "transformer config")?;
        let vae_config: VaeConfig = params(&vae.config, "vae config")?;
        let class = index
            .as_ref()
            .and_then(|i| i["_class_name"].as_str())
            .unwrap_or_default()
            .to_owned();
        let declared = settings
            .conditioning
            .clone()
            .unwrap_or_default()
            .to_lowercase();
        let kind = if transformer_config.vace_layers.is_some() {
            ConditioningKind::Vace
        } else if declared == "phantom" || class.to_lowercase().contains("phantom") {
            ConditioningKind::Phantom
        } else {
            return Err(WanError::Config(format!(
                "{} is a Wan checkpoint without reference conditioning ({}); r2v needs Wan2.1-VACE \
                 (vace_layers in transformer/config.json) or Phantom-Wan (say \"conditioning\": \"phantom\" in r2v.json)",
                path.display(),
                if class.is_empty() {
                    "a plain transformer".to_owned()
                } else {
                    class
                }
            )));
        };
        if let Some(order) = &settings.reference_order
            && !matches!(order.as_str(), "diffusers" | "official")
        {
            return Err(WanError::Config(format!(
                "r2v.json: reference_order {order:?} must be \"diffusers\" or \"official\""
            )));
        }
        if transformer_config.in_channels != vae_config.z_dim {
            return Err(WanError::Config(format!(
                "the transformer takes {} latent channels but the VAE makes {}: an I2V or mismatched checkpoint",
                transformer_config.in_channels, vae_config.z_dim
            )));
        }
        Ok(Self {
            root,
            kind,
            transformer_config,
            vae_config,
            transformer,
            vae,
            text,
            settings,
            scheduler_shift,
        })
    }

    /// `1.3B`, `14B`, … from the transformer's width.
    pub fn size_name(&self) -> String {
        match self.transformer_config.dim() {
            1536 => "1.3B".to_owned(),
            3072 => "5B".to_owned(),
            5120 => "14B".to_owned(),
            d => format!("custom (dim {d})"),
        }
    }

    /// `Wan2.1` or `Wan2.2` from the VAE.
    pub fn version(&self) -> &'static str {
        if self.vae_config.is_residual {
            "Wan2.2"
        } else {
            "Wan2.1"
        }
    }

    /// The umT5 config, when there is a text encoder.
    pub fn text_config(&self) -> Result<Option<Umt5Config>, WanError> {
        self.text
            .as_ref()
            .map(|(part, _)| params(&part.config, "text_encoder config"))
            .transpose()
    }

    /// Pixels per generated frame.
    pub fn max_area(&self) -> usize {
        self.settings
            .max_area
            .unwrap_or(if self.transformer_config.dim() >= 5120 {
                1280 * 720
            } else {
                832 * 480
            })
    }

    /// The model's frame rate.
    pub fn fps(&self) -> u32 {
        self.settings.fps.unwrap_or(16)
    }

    /// Flow shift: `r2v.json`, then the scheduler config, then 5.
    pub fn flow_shift(&self) -> f64 {
        self.settings
            .flow_shift
            .or(self.scheduler_shift)
            .unwrap_or(5.0)
    }

    /// The flash LoRA's path, if configured.
    pub fn flash_lora(&self) -> Option<PathBuf> {
        self.settings.flash_lora.as_ref().map(|p| self.root.join(p))
    }

    /// How references condition this checkpoint, with `r2v.json`'s settings.
    pub fn method(&self) -> Method {
        match self.kind {
            ConditioningKind::Vace => Method::Vace {
                scale: self.settings.vace_scale.unwrap_or(1.0),
                order: match self.settings.reference_order.as_deref() {
                    Some("official") => ReferenceOrder::Official,
                    _ => ReferenceOrder::Diffusers,
                },
            },
            ConditioningKind::Phantom => Method::Phantom {
                image_guidance: self
                    .settings
                    .image_guidance
                    .unwrap_or(PHANTOM_IMAGE_GUIDANCE),
            },
        }
    }

    /// The sampler and text guidance of a preset. Flash: [`Sampler::flash`]'s fixed σ list
    /// (not shifted by this directory's `flow_shift`), no guidance. Standard: UniPC over
    /// `steps` with `flow_shift`, guidance `guidance`.
    pub fn sampler(&self, preset: SamplingPreset) -> (Sampler, f32) {
        match preset {
            SamplingPreset::Flash => (Sampler::flash(FLASH_STEPS), 1.0),
            SamplingPreset::Standard => (
                Sampler::UniPc {
                    steps: self.settings.steps.unwrap_or(STANDARD_STEPS),
                    shift: self.flow_shift(),
                    schedule: Schedule::Diffusers,
                },
                self.settings.guidance.unwrap_or(STANDARD_GUIDANCE),
            ),
        }
    }

    /// The DiT (with `lora` merged, if given) and the f32 VAE on `device`, as a pipeline
    /// with `method`.
    pub fn pipeline<B: Backend>(
        &self,
        options: LoadOptions,
        method: Method,
        lora: Option<Lora>,
        device: &B::Device,
    ) -> Result<Pipeline<B>, WanError> {
        let mut weights = self.weights(&self.transformer, options.precision)?;
        if let Some(lora) = lora {
            weights = weights.with_lora(lora);
        }
        let transformer = WanTransformer::load(self.transformer_config.clone(), weights, device)?
            .with_attention(options.attention);
        let vae = WanVae::load(
            self.vae_config.clone(),
            self.weights(&self.vae, Precision::F32)?,
            device,
        )?;
        Pipeline::new(transformer, vae, method)
    }

    /// The flash preset's LoRA, opened, when `r2v.json` names one.
    pub fn flash_lora_weights(&self) -> Result<Option<Lora>, WanError> {
        self.flash_lora()
            .map(|path| Lora::open(&path, 1.0))
            .transpose()
    }

    /// umT5 with its tokenizer on `device`, or an error when the directory has none.
    pub fn text_encoder<B: Backend>(
        &self,
        options: LoadOptions,
        device: &B::Device,
    ) -> Result<TextEncoder<B>, WanError> {
        let (Some((part, tokenizer)), Some(config)) = (&self.text, self.text_config()?) else {
            return Err(WanError::Config(format!(
                "{} has no text_encoder/ and tokenizer/: prompts cannot be read",
                self.root.display()
            )));
        };
        TextEncoder::load(
            tokenizer,
            config,
            self.weights(part, options.precision)?,
            self.settings.text_len.unwrap_or(512),
            options.attention,
            device,
        )
    }

    /// Opens a part's weights in `precision`.
    pub fn weights(
        &self,
        part: &Part,
        precision: Precision,
    ) -> Result<crate::weights::Weights, WanError> {
        Ok(crate::weights::Weights::open(&part.weights)?
            .with_prefix(&part.prefix)
            .with_precision(precision))
    }

    /// Parameters, bytes on disk and storage dtype of a part.
    pub fn summary(&self, part: &Part) -> Result<(u64, u64, String), WanError> {
        let weights = crate::weights::Weights::open(&part.weights)?.with_prefix(&part.prefix);
        Ok(weights.summary())
    }
}
