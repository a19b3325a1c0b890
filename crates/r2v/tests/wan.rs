//! `r2v wan forward` reproduces every fixture (DiT, VACE, both VAEs, umT5) from its files
//! (config, weights, the inputs file as diffusers names them), within MODEL.md §4's
//! tolerances, and runs in bf16.

mod util;

use r2v_wan::tensor_io::{self, TensorMap};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    util::repo_root()
        .join("crates/r2v-wan/tests/fixtures")
        .join(name)
}

/// The `name` tensor of a safetensors file as f32.
fn read(path: &Path, name: &str) -> Vec<f32> {
    let mut tensors = tensor_io::read(path).unwrap();
    tensors.remove(name).unwrap_or_else(|| panic!("{name}")).1
}

/// Runs `r2v wan forward` and returns its output file.
fn forward(
    dir: &Path,
    module: &str,
    config: &str,
    weights: &str,
    inputs: &Path,
    extra: &[&str],
) -> PathBuf {
    let out = dir.join(format!("{config}.{module}.out.safetensors"));
    let config = fixture(&format!("{config}.config.json"));
    let weights = fixture(&format!("{weights}.weights.safetensors"));
    let mut args = vec![
        "wan",
        "forward",
        "--module",
        module,
        "--config",
        config.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--inputs",
        inputs.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    let run = util::r2v(&args);
    assert!(
        run.status.success(),
        "{module} {}: {}",
        config.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

/// max |got − want| / max |want|.
fn relative_worst(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    worst / scale
}

#[test]
fn wan_forward_reproduces_every_fixture() {
    let dir = tempfile::tempdir().unwrap();
    // The 2.2 fixture decodes its μ; the command reads `z`.
    let mu22 = dir.path().join("mu22.safetensors");
    let mut io22 = tensor_io::read(&fixture("wan22_vae_tiny.io.safetensors")).unwrap();
    let z = io22.remove("mu").unwrap();
    tensor_io::write(&mu22, &TensorMap::from([("z".to_owned(), z)])).unwrap();
    let io = |name: &str| fixture(&format!("{name}.io.safetensors"));
    // (module, config and weights, inputs, output name, reference, tolerance × max|ref|)
    let cases: [(&str, &str, PathBuf, &str, &str, f32); 11] = [
        (
            "dit",
            "wan_t2v_tiny",
            io("wan_t2v_tiny"),
            "output",
            "output",
            1e-4,
        ),
        (
            "dit",
            "wan_ti2v_tokens_tiny",
            io("wan_ti2v_tokens_tiny"),
            "output",
            "output",
            1e-4,
        ),
        (
            "dit",
            "wan_i2v_tiny",
            io("wan_i2v_tiny"),
            "output",
            "output",
            1e-4,
        ),
        (
            "vace",
            "wan_vace_tiny",
            io("wan_vace_tiny"),
            "output",
            "output",
            1e-4,
        ),
        (
            "vae-encode",
            "wan21_vae_tiny",
            io("wan21_vae_tiny"),
            "moments",
            "moments",
            1e-5,
        ),
        (
            "vae-encode",
            "wan21_vae_tiny",
            io("wan21_vae_tiny"),
            "mu",
            "mu",
            1e-5,
        ),
        (
            "vae-decode",
            "wan21_vae_tiny",
            io("wan21_vae_tiny"),
            "decoded",
            "decoded_z",
            2e-5,
        ),
        (
            "vae-encode",
            "wan22_vae_tiny",
            io("wan22_vae_tiny"),
            "moments",
            "moments",
            1e-5,
        ),
        (
            "vae-encode",
            "wan22_vae_tiny",
            io("wan22_vae_tiny"),
            "mu",
            "mu",
            1e-5,
        ),
        (
            "vae-decode",
            "wan22_vae_tiny",
            mu22.clone(),
            "decoded",
            "recon",
            2e-5,
        ),
        (
            "umt5",
            "umt5_tiny",
            io("umt5_tiny"),
            "last_hidden_state",
            "last_hidden_state",
            1e-5,
        ),
    ];
    for (module, name, inputs, output, reference, tolerance) in cases {
        let out = forward(dir.path(), module, name, name, &inputs, &[]);
        let reference_file = if module == "vae-decode" {
            io(name)
        } else {
            inputs.clone()
        };
        let worst = relative_worst(&read(&out, output), &read(&reference_file, reference));
        assert!(worst <= tolerance, "{module} {name} {output}: {worst:e}");
    }
}

#[test]
fn wan_forward_loads_official_key_names() {
    // The official-keys fixture names its inputs as the official model does (`x`, `t`,
    // unpadded `context`); restate them as diffusers arguments, zero-padding the text to 12.
    let dir = tempfile::tempdir().unwrap();
    let io = fixture("wan_t2v_tiny_ORIGINAL_KEYS.io.safetensors");
    let mut context = read(&io, "context");
    context.resize(12 * 32, 0.0);
    let inputs = dir.path().join("inputs.safetensors");
    let tensors = TensorMap::from([
        (
            "hidden_states".to_owned(),
            (vec![1, 4, 3, 8, 8], read(&io, "x")),
        ),
        ("timestep".to_owned(), (vec![1], read(&io, "t"))),
        (
            "encoder_hidden_states".to_owned(),
            (vec![1, 12, 32], context),
        ),
    ]);
    tensor_io::write(&inputs, &tensors).unwrap();
    let out = forward(
        dir.path(),
        "dit",
        "wan_t2v_tiny",
        "wan_t2v_tiny_ORIGINAL_KEYS",
        &inputs,
        &[],
    );
    let worst = relative_worst(&read(&out, "output"), &read(&io, "output"));
    assert!(worst <= 1e-4, "official keys: {worst:e}");
}

#[test]
fn wan_forward_runs_in_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = fixture("wan_t2v_tiny.io.safetensors");
    let out = forward(
        dir.path(),
        "dit",
        "wan_t2v_tiny",
        "wan_t2v_tiny",
        &inputs,
        &["--dtype", "bf16"],
    );
    let worst = relative_worst(&read(&out, "output"), &read(&inputs, "output"));
    // bf16 is not f32: measurably off, within the DiT's stated bf16 tolerance.
    assert!(worst > 1e-4 && worst < 0.05, "bf16 worst {worst:e}");
}

#[test]
fn wan_forward_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let run = util::r2v(&[
        "wan",
        "forward",
        "--module",
        "vace",
        "--config",
        fixture("wan_t2v_tiny.config.json").to_str().unwrap(),
        "--weights",
        fixture("wan_t2v_tiny.weights.safetensors")
            .to_str()
            .unwrap(),
        "--inputs",
        fixture("wan_t2v_tiny.io.safetensors").to_str().unwrap(),
        "--output",
        dir.path().join("o.safetensors").to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("--module vace does not fit this config")
    );
    let run = util::r2v(&[
        "wan",
        "forward",
        "--module",
        "dit",
        "--config",
        fixture("wan_vace_tiny.config.json")
            .to_str()
            .unwrap()
            .replace("vace", "i2v")
            .as_str(),
        "--weights",
        fixture("wan_t2v_tiny.weights.safetensors")
            .to_str()
            .unwrap(),
        "--inputs",
        fixture("wan_t2v_tiny.io.safetensors").to_str().unwrap(),
        "--output",
        dir.path().join("o.safetensors").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("missing key condition_embedder.image_embedder.norm1.weight"),
        "{stderr}"
    );
}

#[test]
fn wan_pipeline_reproduces_the_pipeline_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = fixture("pipeline");
    let weights = fixtures.join("wan_vace_r2v_pipeline_tiny.weights.safetensors");
    let io = fixtures.join("wan_vace_r2v_pipeline_tiny.io.safetensors");
    // The unipc variant uses both prompts; the flash variant only the positive one.
    for (variant, schedule, shift) in [("unipc_cfg", "unipc", "3"), ("euler_nocfg", "flash", "5")] {
        let out = dir.path().join(format!("{variant}.safetensors"));
        let run = util::r2v(&[
            "wan",
            "pipeline",
            "--model-dir",
            weights.to_str().unwrap(),
            "--inputs",
            io.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--height",
            "32",
            "--width",
            "32",
            "--num-frames",
            "9",
            "--steps",
            "4",
            "--schedule",
            schedule,
            "--shift",
            shift,
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let check = |got: &str, want: &str, atol: f32| {
            let (g, w) = (read(&out, got), read(&io, &format!("{variant}.{want}")));
            assert_eq!(g.len(), w.len(), "{variant} {got}");
            let worst = g
                .iter()
                .zip(&w)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= atol, "{variant} {got}: {worst:e}");
        };
        for k in 0..4 {
            let name = format!("latents_after_step{k}");
            check(&name, &name, 1e-4);
        }
        check("final_latents", "final_latents", 1e-4);
        check("decoded_video", "decoded_video", 3e-4);
    }
}
