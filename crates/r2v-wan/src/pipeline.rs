//! Reference-to-video sampling on Wan (MODEL.md §2): reference images → latents →
//! conditioning → the sampling loop → latents → decoded frames.
//!
//! Two conditioning methods:
//! - **VACE** (Wan2.1-VACE): each reference is aspect-fit onto a white canvas, VAE-encoded
//!   as one latent frame and put in front of the video frames, in the control
//!   `[inactive | reactive | mask]` (diffusers' `WanVACEPipeline`, pure R2V: the video part is
//!   the latent of a grey clip and the mask is 1 over the video, 0 over the references). The
//!   noise latent has the same extra frames; they are dropped before decoding. diffusers
//!   puts multiple references in reverse order, the official code in the given order
//!   ([`ReferenceOrder`]).
//! - **Phantom** (Phantom-Wan, a plain T2V DiT): the reference latents are appended after the
//!   video frames and written over the noisy latent before every model call; guidance has
//!   three branches, `neg + g_img·(pos_i − neg) + g_txt·(pos_it − pos_i)`.
//!
//! Samplers: UniPC with CFG (the standard preset) or flow Euler over an explicit σ list (the
//! flash preset). All noise comes from the caller, so a seed decides everything.

use crate::dit::{Conditioning, TimestepInput, WanTransformer};
use crate::scheduler::{FlowEuler, Schedule, UniPc, cfg};
use crate::vae::{Tiling, WanVae};
use crate::{Precision, WanError};
use burn::prelude::*;
use std::collections::BTreeMap;

/// LightX2V's `sample_shift` for its 4-step distilled Wan models: the flash σ list is
/// shifted by this, not by the checkpoint scheduler's `flow_shift`.
pub const FLASH_SHIFT: f64 = 5.0;

/// An RGB image, rows of `width × 3` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `height × width × 3` bytes.
    pub data: Vec<u8>,
}

/// Where multiple VACE references go on the frame axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReferenceOrder {
    /// diffusers: last reference first (it prepends inside its loop).
    #[default]
    Diffusers,
    /// The official Wan code: the given order.
    Official,
}

/// How references condition the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// VACE context blocks, every hint scaled by `scale`.
    Vace {
        /// `conditioning_scale`.
        scale: f32,
        /// Frame order of multiple references.
        order: ReferenceOrder,
    },
    /// Phantom's trailing clean reference frames, with the image guidance scale
    /// (`guidance` is the text scale).
    Phantom {
        /// `g_img` (5.0 in Phantom's defaults).
        image_guidance: f32,
    },
}

/// The sampler and its schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// UniPC (order 2, bh2) over `steps` with `shift`.
    UniPc {
        /// Steps.
        steps: usize,
        /// Flow shift.
        shift: f64,
        /// diffusers' or the official σ schedule.
        schedule: Schedule,
    },
    /// Flow Euler over explicit σs (the flash preset).
    Euler {
        /// σ per step, without the final 0.
        sigmas: Vec<f32>,
    },
}

impl Sampler {
    /// The flash preset: LightX2V's step list `1000 − 1000·i/steps` over the 1000-step σ
    /// table shifted by LightX2V's own `sample_shift` ([`FLASH_SHIFT`]), whatever the
    /// checkpoint's scheduler says: the distillation was trained on this list. For 4 steps,
    /// σ = [1, 0.9375, 0.8333…, 0.625].
    pub fn flash(steps: usize) -> Self {
        Self::flash_shifted(steps, FLASH_SHIFT)
    }

    /// The flash step list over a σ table shifted by `shift` instead (an explicit override).
    pub fn flash_shifted(steps: usize, shift: f64) -> Self {
        let steps = steps.max(1);
        let list: Vec<u32> = (0..steps)
            .map(|i| (1000 - 1000 * i / steps) as u32)
            .collect();
        Self::Euler {
            sigmas: FlowEuler::flash(&list, shift).sigmas()[..steps].to_vec(),
        }
    }

    /// The σ of each step.
    pub fn sigmas(&self) -> Vec<f32> {
        match self {
            Self::UniPc {
                steps,
                shift,
                schedule,
            } => {
                let mut sigmas = crate::scheduler::unipc_schedule(*schedule, *steps, *shift).0;
                sigmas.truncate(*steps);
                sigmas
            }
            Self::Euler { sigmas } => sigmas.clone(),
        }
    }

    /// Model calls' timesteps, one per step.
    pub fn timesteps(&self) -> Vec<f32> {
        match self {
            Self::UniPc {
                steps,
                shift,
                schedule,
            } => crate::scheduler::unipc_schedule(*schedule, *steps, *shift)
                .1
                .iter()
                .map(|&t| t as f32)
                .collect(),
            Self::Euler { sigmas } => FlowEuler::from_sigmas(sigmas.clone()).timesteps(),
        }
    }
}

/// One generation.
pub struct Generation<B: Backend> {
    /// Prompt embeddings `[1, L, text_dim]`, zero-padded as the DiT expects.
    pub prompt: Tensor<B, 3>,
    /// Negative prompt embeddings; used when `guidance > 1` (and by Phantom).
    pub negative: Option<Tensor<B, 3>>,
    /// Reference images, in the request's order.
    pub references: Vec<RgbImage>,
    /// Output height in pixels (a multiple of the VAE's spatial factor × 2).
    pub height: usize,
    /// Output width in pixels.
    pub width: usize,
    /// Output frames, `1 + 4k`.
    pub num_frames: usize,
    /// The sampler.
    pub sampler: Sampler,
    /// Text guidance scale (`≤ 1` is one model call per step).
    pub guidance: f32,
    /// The initial noise, `[1, z, latent frames + references, h, w]` ([`Pipeline::latent_shape`]).
    pub noise: Tensor<B, 5>,
}

/// What the shots of one request share ([`Pipeline::encode`]).
pub struct Encoded<B: Backend> {
    /// Normalised reference latents `[1, z, 1, h, w]`, in the request's order.
    pub references: Vec<Tensor<B, 5>>,
    /// VACE: the normalised latent of the grey control clip, by frame count.
    grey: BTreeMap<usize, Tensor<B, 5>>,
    /// `(height, width)` they were encoded at.
    size: (usize, usize),
}

/// The DiT and the VAE of one checkpoint, with its conditioning method.
pub struct Pipeline<B: Backend> {
    transformer: WanTransformer<B>,
    vae: WanVae<B>,
    method: Method,
    tiling: Option<Tiling>,
}

impl<B: Backend> Pipeline<B> {
    /// A pipeline; the transformer must fit the method (VACE blocks for VACE, none for Phantom).
    pub fn new(
        transformer: WanTransformer<B>,
        vae: WanVae<B>,
        method: Method,
    ) -> Result<Self, WanError> {
        let vace = transformer.config().vace_layers.is_some();
        match method {
            Method::Vace { .. } if !vace => {
                return Err(WanError::Config(
                    "VACE conditioning needs a VACE transformer".into(),
                ));
            }
            Method::Phantom { .. } if vace => {
                return Err(WanError::Config(
                    "Phantom conditioning needs a plain T2V transformer".into(),
                ));
            }
            _ => {}
        }
        let z = vae.config().z_dim;
        if transformer.config().in_channels != z {
            return Err(WanError::Config(format!(
                "the transformer takes {} latent channels; the VAE makes {z}",
                transformer.config().in_channels
            )));
        }
        Ok(Self {
            transformer,
            vae,
            method,
            tiling: None,
        })
    }

    /// Decodes in spatial tiles ([`WanVae::decode_tiled`]): memory bounded by one tile,
    /// slightly different pixels near the seams. Off by default, as in diffusers.
    pub fn with_vae_tiling(mut self, tiling: Option<Tiling>) -> Self {
        self.tiling = tiling;
        self
    }

    /// The conditioning method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The noise shape for a generation: `[1, z, video latent frames + references, h, w]`.
    pub fn latent_shape(
        &self,
        height: usize,
        width: usize,
        num_frames: usize,
        references: usize,
    ) -> [usize; 5] {
        let c = self.vae.config();
        let s = c.scale_factor_spatial;
        let frames = (num_frames.max(1) - 1) / c.scale_factor_temporal + 1;
        [1, c.z_dim, frames + references, height / s, width / s]
    }

    fn check(&self, g: &Generation<B>) -> Result<(), WanError> {
        let c = self.vae.config();
        let multiple = c.scale_factor_spatial * self.transformer.config().patch_size[1];
        if !g.height.is_multiple_of(multiple)
            || !g.width.is_multiple_of(multiple)
            || g.height == 0
            || g.width == 0
        {
            return Err(WanError::Shape(format!(
                "height and width must be positive multiples of {multiple}; got {}×{}",
                g.width, g.height
            )));
        }
        if g.num_frames == 0 || !(g.num_frames - 1).is_multiple_of(c.scale_factor_temporal) {
            return Err(WanError::Shape(format!(
                "num_frames must be 1 + {}·k; got {}",
                c.scale_factor_temporal, g.num_frames
            )));
        }
        let want = self.latent_shape(g.height, g.width, g.num_frames, g.references.len());
        if g.noise.dims() != want {
            return Err(WanError::Shape(format!(
                "the noise is {:?}; this generation needs {want:?}",
                g.noise.dims()
            )));
        }
        if let Method::Phantom { .. } = self.method
            && g.negative.is_none()
        {
            return Err(WanError::Shape(
                "Phantom guidance needs negative prompt embeddings".into(),
            ));
        }
        Ok(())
    }

    /// A reference aspect-fit (bilinear, no antialias, as `F.interpolate`) and centred on a
    /// white canvas, in `[-1, 1]`: `[1, 3, 1, height, width]`.
    pub fn reference_canvas(
        image: &RgbImage,
        height: usize,
        width: usize,
        device: &B::Device,
    ) -> Tensor<B, 5> {
        let canvas = canvas(image, height, width);
        Tensor::from_data(TensorData::new(canvas, [1, 3, 1, height, width]), device)
    }

    /// Normalised reference latents `[1, z, 1, h, w]`, in the given order.
    pub fn encode_references(
        &self,
        images: &[RgbImage],
        height: usize,
        width: usize,
        device: &B::Device,
    ) -> Result<Vec<Tensor<B, 5>>, WanError> {
        images
            .iter()
            .map(|image| {
                let canvas = Self::reference_canvas(image, height, width, device);
                Ok(self.vae.normalize(self.vae.encode_mean(canvas)?))
            })
            .collect()
    }

    /// What the shots of one request share, encoded once: the reference latents and, for
    /// VACE, the latent of the grey control clip for each shot length in `frame_counts`.
    pub fn encode(
        &self,
        images: &[RgbImage],
        height: usize,
        width: usize,
        frame_counts: &[usize],
        device: &B::Device,
    ) -> Result<Encoded<B>, WanError> {
        let references = self.encode_references(images, height, width, device)?;
        let mut grey = BTreeMap::new();
        if let Method::Vace { .. } = self.method {
            for &frames in frame_counts {
                if let std::collections::btree_map::Entry::Vacant(slot) = grey.entry(frames) {
                    let clip = Tensor::<B, 5>::zeros([1, 3, frames, height, width], device);
                    slot.insert(self.vae.normalize(self.vae.encode_mean(clip)?));
                }
            }
        }
        Ok(Encoded {
            references,
            grey,
            size: (height, width),
        })
    }

    /// The VACE control `[1, 2z + s², references + latent frames, h, w]` for pure R2V.
    pub fn vace_control(
        &self,
        encoded: &Encoded<B>,
        g: &Generation<B>,
        order: ReferenceOrder,
    ) -> Result<Tensor<B, 5>, WanError> {
        let c = self.vae.config();
        let device = g.noise.device();
        let video = encoded.grey.get(&g.num_frames).cloned().ok_or_else(|| {
            WanError::Shape(format!(
                "no grey control latent was encoded for {} frames",
                g.num_frames
            ))
        })?;
        let [_, z, frames, h, w] = video.dims();
        let mut ordered: Vec<Tensor<B, 5>> = encoded.references.clone();
        if order == ReferenceOrder::Diffusers {
            ordered.reverse();
        }
        let zeros = Tensor::<B, 5>::zeros([1, z, 1, h, w], &device);
        let mut parts: Vec<Tensor<B, 5>> = ordered
            .into_iter()
            .map(|r| Tensor::cat(vec![r, zeros.clone()], 1))
            .collect();
        parts.push(Tensor::cat(vec![video.clone(), video], 1));
        let latents = Tensor::cat(parts, 2);
        let mask_channels = c.scale_factor_spatial * c.scale_factor_spatial;
        let n = encoded.references.len();
        let mut mask_parts = Vec::with_capacity(2);
        if n > 0 {
            mask_parts.push(Tensor::<B, 5>::zeros([1, mask_channels, n, h, w], &device));
        }
        mask_parts.push(Tensor::<B, 5>::ones(
            [1, mask_channels, frames, h, w],
            &device,
        ));
        Ok(Tensor::cat(vec![latents, Tensor::cat(mask_parts, 2)], 1))
    }

    /// Runs the sampling loop; `on_step(k, total, latents)` is called after every step and
    /// may stop the run with an error (cancel). Returns the final latents with the
    /// reference frames still in place.
    pub fn sample(
        &self,
        g: &Generation<B>,
        on_step: impl FnMut(usize, usize, &Tensor<B, 5>) -> Result<(), WanError>,
    ) -> Result<Tensor<B, 5>, WanError> {
        self.check(g)?;
        let encoded = self.encode(
            &g.references,
            g.height,
            g.width,
            &[g.num_frames],
            &g.noise.device(),
        )?;
        self.sample_checked(g, &encoded, on_step)
    }

    /// [`Pipeline::sample`] with what `g` shares with other shots already encoded by
    /// [`Pipeline::encode`] (at `g`'s size and frame count).
    pub fn sample_encoded(
        &self,
        g: &Generation<B>,
        encoded: &Encoded<B>,
        on_step: impl FnMut(usize, usize, &Tensor<B, 5>) -> Result<(), WanError>,
    ) -> Result<Tensor<B, 5>, WanError> {
        self.check(g)?;
        if encoded.references.len() != g.references.len() || encoded.size != (g.height, g.width) {
            return Err(WanError::Shape(format!(
                "{} references encoded at {:?} for {} images at {:?}",
                encoded.references.len(),
                encoded.size,
                g.references.len(),
                (g.height, g.width)
            )));
        }
        self.sample_checked(g, encoded, on_step)
    }

    fn sample_checked(
        &self,
        g: &Generation<B>,
        encoded: &Encoded<B>,
        mut on_step: impl FnMut(usize, usize, &Tensor<B, 5>) -> Result<(), WanError>,
    ) -> Result<Tensor<B, 5>, WanError> {
        let references = &encoded.references;
        let n_refs = references.len();
        let control = match self.method {
            Method::Vace { scale, order } => {
                let layers = self
                    .transformer
                    .config()
                    .vace_layers
                    .as_ref()
                    .map_or(0, Vec::len);
                Some((self.vace_control(encoded, g, order)?, vec![scale; layers]))
            }
            Method::Phantom { .. } => None,
        };
        let timesteps = g.sampler.timesteps();
        let total = timesteps.len();
        let mut unipc = match &g.sampler {
            Sampler::UniPc {
                steps,
                shift,
                schedule,
            } => Some(UniPc::<B>::new(*schedule, *steps, *shift)),
            Sampler::Euler { .. } => None,
        };
        let mut euler = match &g.sampler {
            Sampler::Euler { sigmas } => Some(FlowEuler::from_sigmas(sigmas.clone())),
            Sampler::UniPc { .. } => None,
        };
        let device = g.noise.device();
        let mut latents = g.noise.clone();
        for (k, &t) in timesteps.iter().enumerate() {
            let timestep = Tensor::<B, 1>::from_data(TensorData::new(vec![t], [1]), &device);
            let call = |x: Tensor<B, 5>, text: &Tensor<B, 3>| {
                self.transformer.forward(
                    x,
                    Conditioning {
                        timestep: TimestepInput::PerSample(timestep.clone()),
                        text: text.clone(),
                        image: None,
                        control: control.clone(),
                    },
                )
            };
            let velocity = match self.method {
                Method::Vace { .. } => {
                    let cond = call(latents.clone(), &g.prompt)?;
                    match (&g.negative, g.guidance > 1.0) {
                        (Some(negative), true) => {
                            cfg(cond, call(latents.clone(), negative)?, g.guidance)
                        }
                        _ => cond,
                    }
                }
                Method::Phantom { image_guidance } => {
                    let negative = g.negative.as_ref().expect("checked");
                    let frames = latents.dims()[2] - n_refs;
                    let video = latents.clone().narrow(2, 0, frames);
                    let with_refs = Tensor::cat(
                        std::iter::once(video.clone())
                            .chain(references.iter().cloned())
                            .collect(),
                        2,
                    );
                    let without_refs = Tensor::cat(
                        std::iter::once(video)
                            .chain(references.iter().map(|r| r.zeros_like()))
                            .collect(),
                        2,
                    );
                    let pos_it = call(with_refs.clone(), &g.prompt)?;
                    let pos_i = call(with_refs, negative)?;
                    let neg = call(without_refs, negative)?;
                    neg.clone()
                        + (pos_i.clone() - neg) * image_guidance
                        + (pos_it - pos_i) * g.guidance
                }
            };
            latents = match (&mut unipc, &mut euler) {
                (Some(unipc), _) => unipc.step(velocity, latents),
                (_, Some(euler)) => euler.step(velocity, latents),
                _ => unreachable!("one sampler is set"),
            };
            on_step(k + 1, total, &latents)?;
        }
        Ok(latents)
    }

    /// The video latents of a sample, reference frames dropped.
    pub fn video_latents(&self, latents: Tensor<B, 5>, references: usize) -> Tensor<B, 5> {
        let frames = latents.dims()[2] - references;
        match self.method {
            Method::Vace { .. } => latents.narrow(2, references, frames),
            Method::Phantom { .. } => latents.narrow(2, 0, frames),
        }
    }

    /// Decodes normalised video latents, streaming `[1, 3, 1 or 4, H, W]` chunks in `[-1, 1]`
    /// (with tiling: the whole clip as one chunk).
    pub fn decode(
        &self,
        video_latents: Tensor<B, 5>,
        mut sink: impl FnMut(Tensor<B, 5>) -> Result<(), WanError>,
    ) -> Result<(), WanError> {
        let z = Precision::F32.apply(self.vae.denormalize(video_latents));
        match self.tiling {
            Some(tiling) => sink(self.vae.decode_tiled(z, tiling)?),
            None => self.vae.decode_chunks(z, sink),
        }
    }

    /// Decodes normalised video latents to the whole clip `[1, 3, F, H, W]` in `[-1, 1]`.
    pub fn decode_all(&self, video_latents: Tensor<B, 5>) -> Result<Tensor<B, 5>, WanError> {
        let mut chunks = Vec::new();
        self.decode(video_latents, |chunk| {
            chunks.push(chunk);
            Ok(())
        })?;
        Ok(Tensor::cat(chunks, 2))
    }
}

/// diffusers' `vae_scale_factor_spatial` for the reference preprocessing: `2^len(temperal_downsample)`,
/// 8 for both Wan VAEs.
const REFERENCE_MULTIPLE: usize = 8;

/// The white canvas of a reference, CHW in `[-1, 1]`, as diffusers' R2V preprocessing makes
/// it: first `VideoProcessor.preprocess`, which resizes an image whose sides are not multiples
/// of 8 to the sides floored to multiples of 8 with Pillow's Lanczos ([`crate::resample`]; a
/// side under 8 is kept, where diffusers would fail), then [`aspect_fit`].
pub fn canvas(image: &RgbImage, height: usize, width: usize) -> Vec<f32> {
    match crate::resample::floor_to_multiple(
        &image.data,
        (image.width, image.height),
        REFERENCE_MULTIPLE,
    ) {
        Some((data, (width_8, height_8))) => aspect_fit(
            &RgbImage {
                width: width_8,
                height: height_8,
                data,
            },
            height,
            width,
        ),
        None => aspect_fit(image, height, width),
    }
}

/// `image` aspect-fit onto a white canvas, CHW in `[-1, 1]`: `2·(u8/255) − 1`,
/// `scale = min(H/h, W/w)`, size `int(h·scale) × int(w·scale)`, bilinear with
/// `align_corners=False`, pasted at the centre, rounding down.
pub fn aspect_fit(image: &RgbImage, height: usize, width: usize) -> Vec<f32> {
    let (ih, iw) = (image.height, image.width);
    let scale = (height as f64 / ih as f64).min(width as f64 / iw as f64);
    let nh = ((ih as f64 * scale) as usize).clamp(1, height);
    let nw = ((iw as f64 * scale) as usize).clamp(1, width);
    let top = (height - nh) / 2;
    let left = (width - nw) / 2;
    let mut out = vec![1.0f32; 3 * height * width];
    let source = |y: usize, x: usize, c: usize| {
        f32::from(image.data[(y * iw + x) * 3 + c]) / 255.0 * 2.0 - 1.0
    };
    let axis = |dst: usize, input: usize, output: usize| {
        let ratio = input as f32 / output as f32;
        let src = ((dst as f32 + 0.5) * ratio - 0.5).max(0.0);
        let i0 = (src as usize).min(input - 1);
        let i1 = (i0 + 1).min(input - 1);
        let l1 = src - i0 as f32;
        (i0, i1, 1.0 - l1, l1)
    };
    for y in 0..nh {
        let (y0, y1, wy0, wy1) = axis(y, ih, nh);
        for x in 0..nw {
            let (x0, x1, wx0, wx1) = axis(x, iw, nw);
            for c in 0..3 {
                let value = wy0 * (wx0 * source(y0, x0, c) + wx1 * source(y0, x1, c))
                    + wy1 * (wx0 * source(y1, x0, c) + wx1 * source(y1, x1, c));
                out[c * height * width + (top + y) * width + left + x] = value;
            }
        }
    }
    out
}
