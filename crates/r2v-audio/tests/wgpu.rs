//! The golden fixtures on a GPU-class backend: burn's wgpu backend (the cubecl kernels CUDA
//! runs too, compiled from WGSL) on the first wgpu adapter; in CI, Mesa's lavapipe (Vulkan
//! on the CPU). A whole 44 kHz generation (the v2 network, the VAE decoder, BigVGAN-v2) runs
//! as it runs on a GPU, in f32, within 1e-4 of upstream's outputs. Every module alone (CLIP's
//! towers and Synchformer too) is the ignored test: with the generation it took 247 s of
//! lavapipe's kernel compilation on 2 cores, too long for CI (`cargo test -p r2v-audio
//! --features wgpu -- --include-ignored`). Built only with `--features wgpu`.
#![cfg(feature = "wgpu")]

use r2v_audio::forward::{Files, Module, PipelineRun, pipeline_on, run_on};
use r2v_wan::attention::Kernel;
use r2v_wan::compare::difference;
use r2v_wan::device::{Device, DeviceKind, DeviceRequest};
use r2v_wan::tensor_io::{self, TensorMap};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn close(got: &TensorMap, key: &str, want: &TensorMap, reference: &str, rel: f32) {
    let (_, g) = &got[key];
    let (_, w) = &want[reference];
    let d = difference(g, w).unwrap_or_else(|e| panic!("{reference}: {e}"));
    eprintln!("{reference}: relative {:e}", d.relative());
    d.within(rel).unwrap_or_else(|e| panic!("{reference}: {e}"));
}

fn wgpu() -> Device {
    let device = DeviceRequest::Wgpu(0)
        .resolve()
        .expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe, Vulkan on the CPU)");
    assert_eq!(device.kind, DeviceKind::Wgpu);
    device
        .use_kernel_cache(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernels"))
        .unwrap();
    device
}

#[test]
fn a_generation_matches_on_wgpu() {
    let device = wgpu();
    let dir = tempfile::tempdir().unwrap();
    let io = fixture("pipeline_44k.io.safetensors");
    let output = dir.path().join("pipeline.safetensors");
    let run = PipelineRun {
        model_dir: &fixture("pipeline_44k"),
        inputs: &io,
        output: &output,
        steps: 3,
        cfg: 4.5,
        attention: Kernel::Backend,
    };
    pipeline_on(&device, run).unwrap();
    let (got, want) = (
        tensor_io::read(&output).unwrap(),
        tensor_io::read(&io).unwrap(),
    );
    for key in ["latent", "mel", "audio"] {
        close(&got, key, &want, key, 1e-4);
    }
}

#[test]
#[ignore = "minutes of lavapipe kernel compilation; run with --include-ignored"]
fn every_module_matches_on_wgpu() {
    let device = wgpu();
    let dir = tempfile::tempdir().unwrap();
    // (module, fixture, weights, output key)
    let cases = [
        (Module::Net, "net_v2", "net_v2.weights.safetensors", "flow"),
        (
            Module::VaeDecode,
            "vae44k",
            "vae44k.weights.safetensors",
            "mel",
        ),
        (
            Module::Vocoder,
            "bigvgan_v2",
            "bigvgan_v2.weights.safetensors",
            "audio",
        ),
        (
            Module::ClipImage,
            "clip_tiny",
            "clip_tiny.weights.safetensors",
            "image_features",
        ),
        (
            Module::ClipText,
            "clip_tiny",
            "clip_tiny.weights.safetensors",
            "text_features",
        ),
        (
            Module::Synchformer,
            "synchformer_tiny",
            "synchformer_tiny.weights.safetensors",
            "features",
        ),
    ];
    for (module, name, weights, key) in cases {
        let io = fixture(&format!("{name}.io.safetensors"));
        let output = dir.path().join(format!("{name}-{key}.safetensors"));
        let files = Files {
            config: &fixture(&format!("{name}.config.json")),
            weights: &fixture(weights),
            inputs: &io,
            output: &output,
            attention: Kernel::Backend,
        };
        run_on(&device, module, files, 1).unwrap_or_else(|e| panic!("{name}: {e}"));
        close(
            &tensor_io::read(&output).unwrap(),
            key,
            &tensor_io::read(&io).unwrap(),
            key,
            1e-4,
        );
    }
}
