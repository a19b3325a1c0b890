//! The golden fixtures on a GPU-class backend: burn's wgpu backend (the same cubecl kernels as
//! CUDA, compiled from WGSL) on the first wgpu adapter. In CI that is Mesa's lavapipe, a Vulkan
//! driver on the CPU (`mesa-vulkan-drivers`, installed by `scripts/ensure-deps.sh --clients`),
//! so every kernel of the DiT, VACE, umT5 and both VAEs runs the way it runs on a GPU, in f32,
//! within the CPU build's tolerances. Built only with `--features wgpu`.
#![cfg(feature = "wgpu")]

use r2v_wan::Precision;
use r2v_wan::attention::Kernel;
use r2v_wan::compare::difference;
use r2v_wan::device::{DeviceKind, DeviceRequest};
use r2v_wan::forward::{Files, Module, run_on};
use r2v_wan::tensor_io::{self, TensorMap};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn every_fixture_matches_on_wgpu() {
    let device = DeviceRequest::Wgpu(0)
        .resolve()
        .expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe, Vulkan on the CPU)");
    assert_eq!(device.kind, DeviceKind::Wgpu);
    eprintln!("device: {device}");
    device
        .use_kernel_cache(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernels"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The 2.2 VAE fixture decodes its μ; the decoder reads `z`.
    let mu22 = dir.path().join("mu22.safetensors");
    let mut io22 = tensor_io::read(&fixture("wan22_vae_tiny.io.safetensors")).unwrap();
    let mu = io22.remove("mu").unwrap();
    tensor_io::write(&mu22, &TensorMap::from([("z".to_owned(), mu)])).unwrap();
    let io = |name: &str| fixture(&format!("{name}.io.safetensors"));
    // (module, config and weights, inputs, reference file, output key, reference key, rel. tolerance)
    let cases = [
        (
            Module::Dit,
            "wan_t2v_tiny",
            io("wan_t2v_tiny"),
            "output",
            "output",
            1e-4,
        ),
        (
            Module::Dit,
            "wan_ti2v_tokens_tiny",
            io("wan_ti2v_tokens_tiny"),
            "output",
            "output",
            1e-4,
        ),
        (
            Module::Dit,
            "wan_i2v_tiny",
            io("wan_i2v_tiny"),
            "output",
            "output",
            1e-4,
        ),
        (
            Module::Vace,
            "wan_vace_tiny",
            io("wan_vace_tiny"),
            "output",
            "output",
            1e-4,
        ),
        (
            Module::Umt5,
            "umt5_tiny",
            io("umt5_tiny"),
            "last_hidden_state",
            "last_hidden_state",
            1e-5,
        ),
        (
            Module::VaeEncode,
            "wan21_vae_tiny",
            io("wan21_vae_tiny"),
            "moments",
            "moments",
            1e-5,
        ),
        (
            Module::VaeDecode,
            "wan21_vae_tiny",
            io("wan21_vae_tiny"),
            "decoded",
            "decoded_z",
            2e-5,
        ),
        (
            Module::VaeDecode,
            "wan22_vae_tiny",
            mu22.clone(),
            "decoded",
            "recon",
            2e-5,
        ),
    ];
    for (module, name, inputs, got_key, want_key, rel) in cases {
        let output = dir.path().join(format!("{name}.{module:?}.safetensors"));
        let (config, weights) = (
            fixture(&format!("{name}.config.json")),
            fixture(&format!("{name}.weights.safetensors")),
        );
        let files = Files {
            config: &config,
            weights: &weights,
            inputs: &inputs,
            output: &output,
            precision: Precision::F32,
            lora: None,
            vae_tiling: None,
            attention: Kernel::Backend,
        };
        let timings = run_on(&device, module, files, 1).unwrap();
        let got = tensor_io::read(&output).unwrap().remove(got_key).unwrap().1;
        let reference = tensor_io::read(&io(name)).unwrap();
        let want = &reference[want_key].1;
        let d = difference(&got, want).unwrap_or_else(|e| panic!("{name} {module:?}: {e}"));
        eprintln!(
            "{name} {module:?}: max |Δ| {:e} of max|ref| {} ({:.1} s)",
            d.max_abs, d.scale, timings.forwards[0]
        );
        d.within(rel)
            .unwrap_or_else(|e| panic!("{name} {module:?} on {device}: {e}"));
    }
}
