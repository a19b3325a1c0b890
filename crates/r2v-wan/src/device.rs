//! Where the wan code runs: the device a user asks for (`auto`, `cpu`, `cuda[:N]`,
//! `wgpu[:N]`), checked to be there, with its memory; the persistent kernel cache of the GPU
//! backends; and [`Device::run`], which runs backend-generic code on the backend that the
//! device needs.
//!
//! The default build has only the CPU (burn's flex). `--features cuda` adds NVIDIA GPUs
//! (burn's CUDA backend: kernels compiled at run time by NVRTC, so the build needs no CUDA
//! toolkit); `--features wgpu` adds Vulkan, Metal and DirectX GPUs through wgpu. A device
//! that is asked for but absent, or absent from the build, is an error that says so; `auto`
//! takes the first CUDA GPU, else the first wgpu GPU (not a software rasteriser), else the
//! CPU.

use crate::{Precision, WanError};
use burn::prelude::Backend;
use std::path::Path;
use std::str::FromStr;

/// The device a user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    /// The best device that this build has and this machine offers.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// An NVIDIA GPU, by CUDA ordinal.
    Cuda(usize),
    /// A wgpu adapter, by its place in wgpu's list.
    Wgpu(usize),
}

impl FromStr for DeviceRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, index) =
            match s.split_once(':') {
                Some((name, index)) => (
                    name,
                    Some(index.parse::<usize>().map_err(|_| {
                        format!("{s:?}: the part after `:` must be a device number")
                    })?),
                ),
                None => (s, None),
            };
        match (name, index) {
            ("auto", None) => Ok(Self::Auto),
            ("cpu", None) => Ok(Self::Cpu),
            ("cuda", i) => Ok(Self::Cuda(i.unwrap_or(0))),
            ("wgpu", i) => Ok(Self::Wgpu(i.unwrap_or(0))),
            _ => Err(format!(
                "{s:?} is not a device: use auto, cpu, cuda, cuda:N, wgpu or wgpu:N"
            )),
        }
    }
}

impl std::fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
            Self::Wgpu(i) => write!(f, "wgpu:{i}"),
        }
    }
}

/// The kinds of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// The CPU (burn's flex backend).
    Cpu,
    /// An NVIDIA GPU (burn's CUDA backend).
    Cuda,
    /// A GPU through wgpu (burn's wgpu backend).
    Wgpu,
}

impl DeviceKind {
    /// The precision the DiT and umT5 run in unless told otherwise: bf16 on CUDA (tensor
    /// cores, half the memory), f32 elsewhere (the CPU computes bf16 through f32; wgpu has
    /// no bf16 arithmetic).
    pub fn default_precision(self) -> Precision {
        match self {
            Self::Cuda => Precision::Bf16,
            Self::Cpu | Self::Wgpu => Precision::F32,
        }
    }

    /// Whether the device computes in `precision`.
    pub fn supports(self, precision: Precision) -> bool {
        !(self == Self::Wgpu && precision == Precision::Bf16)
    }

    /// The attention kernel models use on this kind of device in `precision`: burn's flash
    /// kernel (f16 tiles) for bf16 on a GPU, where f16 loses nothing; burn's own attention in
    /// f32 on a GPU (the exact path: f16 tiles would cost about 6e-4 of the output's range);
    /// on the CPU, heads spread over the threads.
    pub fn attention(self, precision: Precision) -> crate::attention::Kernel {
        match (self, precision) {
            (Self::Cpu, _) => crate::attention::Kernel::Threads,
            (Self::Cuda | Self::Wgpu, Precision::Bf16) => {
                crate::attention::Kernel::Flash { stage: 128 }
            }
            (Self::Cuda | Self::Wgpu, Precision::F32) => crate::attention::Kernel::Backend,
        }
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Wgpu => "wgpu",
        })
    }
}

/// Memory of a device, in bytes, when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    /// All of it.
    pub total: u64,
    /// What was not in use (by this or other processes).
    pub available: u64,
}

/// A device that is there.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Device {
    /// What kind.
    pub kind: DeviceKind,
    /// Its number among devices of its kind (CUDA ordinal, wgpu list index).
    pub index: usize,
    /// The product name (`NVIDIA H200`, `llvmpipe (LLVM 15.0.6, 256 bits)`, the CPU model).
    pub name: String,
    /// Its memory when opened; `None` where the backend does not report it (wgpu).
    pub memory: Option<Memory>,
    /// For the kernel cache: a name that differs between GPU models and architectures.
    #[serde(skip)]
    pub cache_key: String,
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            DeviceKind::Cpu => write!(f, "cpu ({})", self.name),
            kind => write!(f, "{kind}:{} ({})", self.index, self.name),
        }
    }
}

impl DeviceRequest {
    /// The device this asks for, checked to be present, or why it is not.
    pub fn resolve(self) -> Result<Device, WanError> {
        match self {
            Self::Cpu => Ok(cpu()),
            Self::Cuda(index) => cuda(index),
            Self::Wgpu(index) => wgpu(index, true),
            Self::Auto => {
                if cfg!(feature = "cuda")
                    && let Ok(device) = cuda(0)
                {
                    return Ok(device);
                }
                if cfg!(feature = "wgpu")
                    && let Ok(device) = wgpu(0, false)
                {
                    return Ok(device);
                }
                Ok(cpu())
            }
        }
    }
}

fn cpu() -> Device {
    let name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    Device {
        kind: DeviceKind::Cpu,
        index: 0,
        name: format!("{name}, {threads} threads"),
        memory: host_memory(),
        cache_key: "cpu".to_owned(),
    }
}

/// This machine's RAM: `MemTotal` and `MemAvailable` of `/proc/meminfo`.
pub fn host_memory() -> Option<Memory> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |key: &str| -> Option<u64> {
        let line = info.lines().find(|l| l.starts_with(key))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    let total = field("MemTotal:")?;
    Some(Memory {
        total,
        available: field("MemAvailable:").unwrap_or(total),
    })
}

/// `a-b-c` from any product name, for a directory name.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<Device, WanError> {
    use cudarc::driver::{CudaContext, sys};
    let missing = |why: String| WanError::Device(format!("cuda:{index} is not available: {why}"));
    // SAFETY: only tries to open the driver library.
    if !unsafe { sys::is_culib_present() } {
        return Err(missing(
            "no NVIDIA driver (libcuda.so) on this machine".to_owned(),
        ));
    }
    let count = CudaContext::device_count().map_err(|e| missing(e.to_string()))?;
    if index >= count.max(0) as usize {
        return Err(missing(format!("this machine has {count} CUDA device(s)")));
    }
    let context = CudaContext::new(index).map_err(|e| missing(e.to_string()))?;
    let name = context.name().map_err(|e| missing(e.to_string()))?;
    let (major, minor) = context
        .compute_capability()
        .map_err(|e| missing(e.to_string()))?;
    let (free, total) = context.mem_get_info().map_err(|e| missing(e.to_string()))?;
    Ok(Device {
        kind: DeviceKind::Cuda,
        index,
        cache_key: format!("cuda-{}-sm{major}{minor}", slug(&name)),
        name,
        memory: Some(Memory {
            total: total as u64,
            available: free as u64,
        }),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(index: usize) -> Result<Device, WanError> {
    Err(WanError::Device(format!(
        "cuda:{index}: this r2v was built without CUDA; build it with `cargo build --release --features cuda`"
    )))
}

/// The wgpu adapters as cubecl counts them (graphics API of this platform; `Other` types
/// last), each with the `WgpuDevice` that selects it.
#[cfg(feature = "wgpu")]
fn wgpu_adapters() -> Vec<(wgpu::AdapterInfo, burn::backend::wgpu::WgpuDevice)> {
    use burn::backend::wgpu::WgpuDevice;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapters =
        burn::cubecl::future::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    let mut counts = [0usize; 4];
    let mut listed = Vec::new();
    let mut other = Vec::new();
    for adapter in adapters {
        let info = adapter.get_info();
        let slot = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Cpu => 3,
            wgpu::DeviceType::Other => {
                other.push(info);
                continue;
            }
        };
        let n = counts[slot];
        counts[slot] += 1;
        let device = match slot {
            0 => WgpuDevice::DiscreteGpu(n),
            1 => WgpuDevice::IntegratedGpu(n),
            2 => WgpuDevice::VirtualGpu(n),
            _ => WgpuDevice::Cpu,
        };
        // cubecl selects only the first CPU adapter.
        if slot != 3 || n == 0 {
            listed.push((info, device));
        }
    }
    listed.extend(
        other
            .into_iter()
            .enumerate()
            .map(|(n, info)| (info, WgpuDevice::DiscreteGpu(counts[0] + n))),
    );
    listed
}

/// `wgpu:index` (any adapter), or with `auto` the first that is not a software rasteriser.
#[cfg(feature = "wgpu")]
fn wgpu(index: usize, software_ok: bool) -> Result<Device, WanError> {
    let adapters = wgpu_adapters();
    let found = if software_ok {
        adapters.get(index).map(|a| (index, a))
    } else {
        adapters
            .iter()
            .enumerate()
            .find(|(_, (info, _))| info.device_type != wgpu::DeviceType::Cpu)
    };
    let Some((index, (info, _))) = found else {
        let names: Vec<String> = adapters
            .iter()
            .map(|(i, _)| format!("{} ({:?})", i.name, i.device_type))
            .collect();
        return Err(WanError::Device(format!(
            "wgpu:{index} is not available: wgpu lists {} adapter(s){}{}",
            adapters.len(),
            if names.is_empty() { "" } else { ": " },
            names.join(", ")
        )));
    };
    Ok(Device {
        kind: DeviceKind::Wgpu,
        index,
        name: format!("{} ({:?})", info.name, info.backend),
        memory: None,
        cache_key: format!(
            "wgpu-{}-{}",
            slug(&format!("{:?}", info.backend)),
            slug(&info.name)
        ),
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(index: usize, _software_ok: bool) -> Result<Device, WanError> {
    Err(WanError::Device(format!(
        "wgpu:{index}: this r2v was built without wgpu; build it with `cargo build --release --features wgpu`"
    )))
}

/// Backend-generic work that [`Device::run`] monomorphises for the device's backend.
pub trait OnDevice {
    /// What the work gives back.
    type Output;
    /// Runs on `device` of backend `B`.
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

impl Device {
    /// Runs `work` on this device's backend.
    pub fn run<W: OnDevice>(&self, work: W) -> W::Output {
        match self.kind {
            DeviceKind::Cpu => work.run::<crate::Cpu>(Default::default()),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => {
                work.run::<crate::Cuda>(burn::backend::cuda::CudaDevice::new(self.index))
            }
            #[cfg(feature = "wgpu")]
            DeviceKind::Wgpu => {
                let device = wgpu_adapters()
                    .into_iter()
                    .nth(self.index)
                    .map(|(_, device)| device)
                    .unwrap_or_default();
                work.run::<crate::Wgpu>(device)
            }
            #[cfg(not(all(feature = "cuda", feature = "wgpu")))]
            other => unreachable!("{other} devices are only resolved in builds that have them"),
        }
    }

    /// Keeps the GPU backends' compiled kernels and autotune results under
    /// `dir/<device model>`, so that the next process on this machine neither recompiles
    /// nor re-benchmarks them. Effective once per process, before the first GPU tensor; a
    /// no-op on the CPU. (wgpu caches autotune results only: its WGSL kernels have no
    /// compilation cache in cubecl 0.10.)
    pub fn use_kernel_cache(&self, dir: &Path) -> Result<(), WanError> {
        if self.kind == DeviceKind::Cpu {
            return Ok(());
        }
        let dir = dir.join(&self.cache_key);
        std::fs::create_dir_all(&dir).map_err(|e| WanError::io(&dir, e))?;
        set_kernel_cache(&dir);
        Ok(())
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn set_kernel_cache(dir: &Path) {
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig, cache::CacheConfig};
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        // cubecl's own variables (CUBECL_AUTOTUNE_LEVEL, CUBECL_DEBUG_LOG) still apply.
        let mut config = CubeClRuntimeConfig::default().override_from_env();
        config.compilation.cache = Some(CacheConfig::File(dir.to_path_buf()));
        config.autotune.cache = CacheConfig::File(dir.to_path_buf());
        CubeClRuntimeConfig::set(config);
        tracing::info!(dir = %dir.display(), "kernel and autotune cache");
    });
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
fn set_kernel_cache(_dir: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_print() {
        for (text, request) in [
            ("auto", DeviceRequest::Auto),
            ("cpu", DeviceRequest::Cpu),
            ("cuda", DeviceRequest::Cuda(0)),
            ("cuda:1", DeviceRequest::Cuda(1)),
            ("wgpu:2", DeviceRequest::Wgpu(2)),
        ] {
            assert_eq!(text.parse::<DeviceRequest>().unwrap(), request);
        }
        assert_eq!(DeviceRequest::Cuda(0).to_string(), "cuda:0");
        for bad in ["gpu", "cuda:x", "cpu:1", "", "auto:0"] {
            assert!(bad.parse::<DeviceRequest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cpu_is_always_there_and_auto_finds_a_device() {
        let cpu = DeviceRequest::Cpu.resolve().unwrap();
        assert_eq!(cpu.kind, DeviceKind::Cpu);
        assert!(
            cpu.memory
                .is_some_and(|m| m.total >= m.available && m.total > 0)
        );
        let auto = DeviceRequest::Auto.resolve().unwrap();
        if !cfg!(any(feature = "cuda", feature = "wgpu")) {
            assert_eq!(auto.kind, DeviceKind::Cpu);
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_device_missing_from_the_build_is_a_clear_error() {
        let err = DeviceRequest::Cuda(0).resolve().unwrap_err().to_string();
        assert!(err.contains("built without CUDA"), "{err}");
    }
}
