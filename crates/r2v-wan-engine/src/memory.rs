//! Memory: estimates for a checkpoint and a generation size, per device kind and dtype;
//! the plan that decides what stays resident on the device; the gate that keeps concurrent
//! renders within the budget; and the report of `r2v models inspect`.
//!
//! The model of one generation: weights (DiT and text encoder in the run's precision, the
//! VAE in f32), the larger of the DiT's activations and the VAE decoder's, and the shot's
//! decoded clip (the f32 tiles, read back to the host, then RGB bytes held until they are
//! re-timed). DiT activations are taken as `tokens × (8·dim + 2·ffn) × 4 bytes` (hidden
//! state, q/k/v, attention output, both halves of the feed-forward, with an attention that
//! keeps no `tokens²` matrix). The VAE decoder was measured (BENCHMARKS.md): 26.4 KB per
//! generated pixel at `base_dim` 96 on the CPU, scaled by the decoder width, independent of
//! the frame count thanks to the causal cache; the engine decodes in 256-px tiles, so that
//! term stops growing at 256×256. On the CPU the device is the host; on a GPU the weights,
//! activations and tiles are on the device and the clip read back and its frames on the host.

use r2v_wan::device::DeviceKind;
use r2v_wan::model_dir::{ConditioningKind, ModelDir};
use r2v_wan::vae::Tiling;
use r2v_wan::{Precision, WanError};
use serde::Serialize;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Measured VAE decode memory per output pixel at `base_dim` 96 (f32, CPU).
const VAE_BYTES_PER_PIXEL: f64 = 26.4e3;

/// Bytes per parameter or activation in `precision`.
fn bytes(precision: Precision) -> u64 {
    match precision {
        Precision::F32 => 4,
        Precision::Bf16 => 2,
    }
}

/// Parameter counts of a model directory.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Parameters {
    /// The DiT (VACE blocks included).
    pub transformer: u64,
    /// The VAE.
    pub vae: u64,
    /// umT5, when present.
    pub text_encoder: u64,
    /// Of those, umT5's token table(s) (`shared`, a tied `embed_tokens`): read row by row from
    /// the mapped file, never loaded.
    pub text_token_table: u64,
}

/// Counts the parameters of each part.
pub fn parameters(dir: &ModelDir) -> Result<(Parameters, String), WanError> {
    let (transformer, _, dtype) = dir.summary(&dir.transformer)?;
    let (vae, _, _) = dir.summary(&dir.vae)?;
    let (text_encoder, text_token_table) = match &dir.text {
        Some((part, _)) => {
            let weights = dir.weights(part, Precision::F32)?;
            let table = ["shared.weight", "encoder.embed_tokens.weight"]
                .iter()
                .filter_map(|name| weights.count(name))
                .sum();
            (weights.summary().0, table)
        }
        None => (0, 0),
    };
    Ok((
        Parameters {
            transformer,
            vae,
            text_encoder,
            text_token_table,
        },
        dtype,
    ))
}

/// Bytes of weights on the device, per part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WeightBytes {
    /// The DiT (twice when the flash preset has its own LoRA-merged copy).
    pub transformer: u64,
    /// umT5.
    pub text_encoder: u64,
    /// The VAE (always f32).
    pub vae: u64,
}

impl WeightBytes {
    /// The weights of `parameters` in `precision` (umT5's token table stays mapped);
    /// `transformers` copies of the DiT.
    pub fn of(parameters: &Parameters, precision: Precision, transformers: u64) -> Self {
        Self {
            transformer: parameters.transformer * bytes(precision) * transformers.max(1),
            text_encoder: parameters
                .text_encoder
                .saturating_sub(parameters.text_token_table)
                * bytes(precision),
            vae: parameters.vae * 4,
        }
    }
}

/// What one generation needs beside the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Working {
    /// The larger of the DiT's activations and the VAE decoder's, on the device.
    pub activations: u64,
    /// The decoded clip as f32 (tiles overlapping): on the device while decoding, then on
    /// the host.
    pub clip: u64,
    /// The decoded frames as RGB bytes, on the host.
    pub frames: u64,
}

/// Memory of one generation of `frames` frames of `width × height` with `references`.
pub fn working(
    dir: &ModelDir,
    (width, height, frames, references): (usize, usize, usize, usize),
) -> Working {
    let t = &dir.transformer_config;
    let v = &dir.vae_config;
    let s = v.scale_factor_spatial.max(1) * t.patch_size[1].max(1);
    let latent_frames = (frames.max(1) - 1) / v.scale_factor_temporal.max(1) + 1 + references;
    let tokens = (latent_frames * (height / s) * (width / s)) as u64;
    let dit = tokens * (8 * t.dim() + 2 * t.ffn_dim) as u64 * 4;
    let decoder_width = v.decoder_base_dim.unwrap_or(v.base_dim) as f64 / 96.0;
    let tile = Tiling::default();
    let tiled = width > tile.tile || height > tile.tile;
    let tile_area = (width.min(tile.tile) * height.min(tile.tile)) as f64;
    let vae = (VAE_BYTES_PER_PIXEL * decoder_width * tile_area) as u64;
    let overlap = if tiled {
        (tile.tile as f64 / tile.stride as f64).powi(2)
    } else {
        1.0
    };
    let pixels = (frames * width * height) as f64;
    Working {
        activations: dit.max(vae),
        clip: (pixels * 3.0 * 4.0 * overlap) as u64,
        frames: (pixels * 3.0) as u64,
    }
}

/// Peak memory of a generation where it lives: the device, and the host beside it (the
/// same memory on the CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Footprint {
    /// Bytes on the device.
    pub device: u64,
    /// Bytes on the host (weights are memory-mapped and not counted there on a GPU).
    pub host: u64,
}

impl Footprint {
    /// The peak of one generation with `weights` resident on a device of `kind`.
    pub fn of(weights: &WeightBytes, working: &Working, kind: DeviceKind) -> Self {
        let resident = weights.transformer + weights.text_encoder + weights.vae;
        match kind {
            DeviceKind::Cpu => {
                let all = resident + working.activations + working.clip + working.frames;
                Self {
                    device: all,
                    host: all,
                }
            }
            DeviceKind::Cuda | DeviceKind::Wgpu => Self {
                device: resident + working.activations + working.clip,
                host: working.clip + working.frames,
            },
        }
    }
}

/// What the engine keeps on its device, decided once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Bytes the engine may use on its device.
    pub budget: u64,
    /// Weights loaded at start-up and kept.
    pub resident: u64,
    /// Whether umT5 stays loaded; if not, each request loads it for its text stage and
    /// releases it (model offload).
    pub text_resident: bool,
    /// umT5's bytes, reserved by each request when it is not resident.
    pub text_bytes: u64,
}

impl Plan {
    /// Keeps umT5 resident when the weights and one generation of `reference` fit the
    /// budget; else offloads it. `None` when not even that fits.
    pub fn new(
        weights: &WeightBytes,
        reference: &Working,
        kind: DeviceKind,
        budget: u64,
    ) -> Option<Self> {
        let all = Footprint::of(weights, reference, kind).device;
        let text_bytes = weights.text_encoder;
        if all <= budget {
            return Some(Self {
                budget,
                resident: weights.transformer + weights.vae + text_bytes,
                text_resident: true,
                text_bytes,
            });
        }
        // Offloaded, umT5 is loaded while nothing else of the request is: the peak is the
        // larger of the text stage and the rest.
        let without = WeightBytes {
            text_encoder: 0,
            ..*weights
        };
        let rest = Footprint::of(&without, reference, kind).device;
        let resident = weights.transformer + weights.vae;
        (rest.max(resident + text_bytes) <= budget).then_some(Self {
            budget,
            resident,
            text_resident: false,
            text_bytes,
        })
    }

    /// Bytes a generation reserves on top of the resident weights.
    pub fn reservation(&self, working: &Working, kind: DeviceKind) -> u64 {
        let zero = WeightBytes {
            transformer: 0,
            text_encoder: 0,
            vae: 0,
        };
        let own = Footprint::of(&zero, working, kind).device;
        if self.text_resident {
            own
        } else {
            own.max(self.text_bytes)
        }
    }

    /// What the budget leaves for generations.
    pub fn capacity(&self) -> u64 {
        self.budget.saturating_sub(self.resident)
    }
}

/// Admission of concurrent generations on one device: each reserves its bytes before it
/// starts and waits while others hold too much of the capacity.
#[derive(Debug)]
pub struct MemoryGate {
    capacity: u64,
    state: Mutex<GateState>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    in_use: u64,
    peak: u64,
}

/// Bytes held in a [`MemoryGate`] until dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    gate: &'a MemoryGate,
    bytes: u64,
}

impl MemoryGate {
    /// A gate over `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            state: Mutex::default(),
            freed: Condvar::new(),
        }
    }

    /// Waits until `bytes` fit beside the other reservations (a request larger than the
    /// capacity waits for the gate to be empty), calling `waiting` once with the bytes in
    /// use when it has to wait. `None` when `stop` turns true while waiting.
    pub fn reserve(
        &self,
        bytes: u64,
        mut waiting: impl FnMut(u64),
        stop: impl Fn() -> bool,
    ) -> Option<Reservation<'_>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut told = false;
        while state.in_use > 0 && state.in_use + bytes > self.capacity {
            if stop() {
                return None;
            }
            if !told {
                waiting(state.in_use);
                told = true;
            }
            state = self
                .freed
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        state.in_use += bytes;
        state.peak = state.peak.max(state.in_use);
        Some(Reservation { gate: self, bytes })
    }

    /// The most bytes ever reserved at once.
    pub fn peak(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).peak
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.state.lock().unwrap_or_else(|e| e.into_inner());
        state.in_use -= self.bytes;
        self.gate.freed.notify_all();
    }
}

/// Peak bytes on the CPU to generate `frames` frames of `width × height` with
/// `references`, everything resident.
pub fn peak_bytes(
    dir: &ModelDir,
    parameters: &Parameters,
    precision: Precision,
    size: (usize, usize, usize, usize),
) -> u64 {
    let weights = WeightBytes::of(parameters, precision, 1);
    Footprint::of(&weights, &working(dir, size), DeviceKind::Cpu).device
}

/// One line of `r2v models inspect`'s memory table.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryRow {
    /// `cpu`, `cuda` or `wgpu`.
    pub device: DeviceKind,
    /// `f32` or `bf16`.
    pub dtype: String,
    /// What is generated: `720p request (generated at 832×480)` and the like.
    pub case: String,
    /// Peak GiB on the device.
    pub device_gib: f64,
    /// Peak GiB on the host.
    pub host_gib: f64,
}

/// What `r2v models inspect` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The directory.
    pub dir: String,
    /// `Wan2.1-VACE 1.3B` and the like.
    pub kind: String,
    /// Parameters per part.
    pub parameters: Parameters,
    /// Storage dtype of the DiT's weights.
    pub dtype: String,
    /// Whether the directory can serve prompts (has umT5 and its tokenizer).
    pub text_encoder: bool,
    /// The generation size the engine uses (`max_area`, 16:9) and the model's frame rate.
    pub generation: (usize, usize, u32),
    /// Expected peaks for 5 s (81 frames at 16 fps, one reference), everything resident.
    pub memory: Vec<MemoryRow>,
    /// How the engine would run on the chosen device.
    pub engine: EngineSummary,
}

/// How the engine would run a directory on a device, with its defaults.
#[derive(Debug, Clone, Serialize)]
pub struct EngineSummary {
    /// The device `--device` chose.
    pub device: r2v_wan::device::Device,
    /// The default precision there.
    pub dtype: String,
    /// The default budget: what the device has free now, in GiB.
    pub budget_gib: Option<f64>,
    /// `resident`, `loaded per request`, or why it cannot run.
    pub text_encoder: String,
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

impl Report {
    /// Human-readable lines.
    pub fn to_text(&self) -> String {
        let p = &self.parameters;
        let mut out = format!(
            "{}\n  kind: {}\n  parameters: {} (transformer {}, VAE {}, text encoder {})\n  dtype on disk: {}\n  text encoder: {}\n  generates {}×{} at {} fps, then scales to the output size\n  expected peak memory for 5 s (81 frames), one reference, GiB on the device / on the host:\n",
            self.dir,
            self.kind,
            count(p.transformer + p.vae + p.text_encoder),
            count(p.transformer),
            count(p.vae),
            count(p.text_encoder),
            self.dtype,
            if self.text_encoder {
                "yes"
            } else {
                "no (only `r2v wan pipeline` with embeddings)"
            },
            self.generation.0,
            self.generation.1,
            self.generation.2,
        );
        for row in &self.memory {
            out.push_str(&format!(
                "    {:<4} {:<4}  {:<40} {:>7.1} / {:.1}\n",
                row.device.to_string(),
                row.dtype,
                row.case,
                row.device_gib,
                row.host_gib
            ));
        }
        let e = &self.engine;
        out.push_str(&format!(
            "  on {} (--device): {} by default, budget {}, umT5 {}\n",
            e.device,
            e.dtype,
            e.budget_gib.map_or_else(
                || "unknown (set --memory-budget-gb)".to_owned(),
                |g| format!("{g:.1} GiB free")
            ),
            e.text_encoder
        ));
        out
    }
}

/// `374.5 K`, `1.42 B`.
fn count(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.2} B", n / 1e9),
        n if n >= 1e6 => format!("{:.1} M", n / 1e6),
        n => format!("{:.1} K", n / 1e3),
    }
}

/// The generation size for an output aspect: about `max_area` pixels, sides multiples of `multiple`.
pub fn generation_size(max_area: usize, aspect: f64, multiple: usize) -> (usize, usize) {
    let m = multiple.max(1) as f64;
    let width = ((max_area as f64 * aspect).sqrt() / m).round().max(1.0) * m;
    let height = ((max_area as f64 / aspect).sqrt() / m).round().max(1.0) * m;
    (width as usize, height as usize)
}

/// `Wan2.1-VACE 1.3B` and the like, from the configs alone.
pub fn kind(dir: &ModelDir) -> String {
    let method = match dir.kind {
        ConditioningKind::Vace => "VACE",
        ConditioningKind::Phantom => "Phantom",
    };
    format!("{}-{method} {}", dir.version(), dir.size_name())
}

fn dtype_name(precision: Precision) -> String {
    match precision {
        Precision::F32 => "f32",
        Precision::Bf16 => "bf16",
    }
    .to_owned()
}

/// Inspects a model directory, and how the engine would run it on `device`.
pub fn inspect(dir: &ModelDir, device: &r2v_wan::device::Device) -> Result<Report, WanError> {
    let (parameters, dtype) = parameters(dir)?;
    let multiple = dir.vae_config.scale_factor_spatial * dir.transformer_config.patch_size[1];
    let (gw, gh) = generation_size(dir.max_area(), 16.0 / 9.0, multiple);
    let copies = if dir.flash_lora().is_some() { 2 } else { 1 };
    let cases = [
        (format!("720p or 1080p request (at {gw}×{gh})"), (gw, gh)),
        ("native 1280×720".to_owned(), (1280, 720)),
        ("native 1920×1088".to_owned(), (1920, 1088)),
    ];
    let mut memory = Vec::new();
    for (device, precision) in [
        (DeviceKind::Cpu, Precision::F32),
        (DeviceKind::Cpu, Precision::Bf16),
        (DeviceKind::Cuda, Precision::Bf16),
        (DeviceKind::Cuda, Precision::F32),
        (DeviceKind::Wgpu, Precision::F32),
    ] {
        let weights = WeightBytes::of(&parameters, precision, copies);
        for (case, (w, h)) in &cases {
            let footprint = Footprint::of(&weights, &working(dir, (*w, *h, 81, 1)), device);
            memory.push(MemoryRow {
                device,
                dtype: dtype_name(precision),
                case: case.clone(),
                device_gib: gib(footprint.device),
                host_gib: gib(footprint.host),
            });
        }
    }
    let precision = device.kind.default_precision();
    let budget = device
        .memory
        .or_else(r2v_wan::device::host_memory)
        .map(|m| m.available);
    let weights = WeightBytes::of(&parameters, precision, copies);
    let text_encoder =
        match budget.map(|b| Plan::new(&weights, &working(dir, (gw, gh, 81, 1)), device.kind, b)) {
            _ if dir.text.is_none() => "absent".to_owned(),
            Some(Some(plan)) if plan.text_resident => "resident".to_owned(),
            Some(Some(_)) => "loaded per request (it does not fit beside the DiT)".to_owned(),
            Some(None) => "—: a 5 s generation does not fit the free memory".to_owned(),
            None => "resident unless the budget says otherwise".to_owned(),
        };
    Ok(Report {
        dir: dir.root.display().to_string(),
        kind: kind(dir),
        parameters,
        dtype,
        text_encoder: dir.text.is_some(),
        generation: (gw, gh, dir.fps()),
        memory,
        engine: EngineSummary {
            device: device.clone(),
            dtype: dtype_name(precision),
            budget_gib: budget.map(gib),
            text_encoder,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn the_gate_never_holds_more_than_its_capacity() {
        let gate = Arc::new(MemoryGate::new(100));
        let in_use = Arc::new(AtomicU64::new(0));
        let over = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (gate, in_use, over) = (gate.clone(), in_use.clone(), over.clone());
                std::thread::spawn(move || {
                    let bytes = 30 + 10 * (i % 3);
                    let _held = gate.reserve(bytes, |_| {}, || false).unwrap();
                    let now = in_use.fetch_add(bytes, Ordering::SeqCst) + bytes;
                    if now > 100 {
                        over.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    in_use.fetch_sub(bytes, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(over.load(Ordering::SeqCst), 0);
        assert!(gate.peak() <= 100 && gate.peak() >= 60, "{}", gate.peak());
        // Oversized work runs alone rather than never; a stop while waiting gives up.
        let alone = gate.reserve(150, |_| {}, || false).unwrap();
        assert!(gate.reserve(1, |_| {}, || true).is_none());
        drop(alone);
    }

    #[test]
    fn umt5_is_offloaded_only_when_it_does_not_fit() {
        let weights = WeightBytes {
            transformer: 100,
            text_encoder: 50,
            vae: 10,
        };
        let working = Working {
            activations: 30,
            clip: 10,
            frames: 5,
        };
        let kind = DeviceKind::Cuda;
        let fits = Plan::new(&weights, &working, kind, 200).unwrap();
        assert!(fits.text_resident && fits.resident == 160 && fits.capacity() == 40);
        assert_eq!(fits.reservation(&working, kind), 40);
        let offloaded = Plan::new(&weights, &working, kind, 170).unwrap();
        assert!(!offloaded.text_resident && offloaded.resident == 110);
        assert_eq!(offloaded.reservation(&working, kind), 50);
        assert!(Plan::new(&weights, &working, kind, 140).is_none());
    }
}
