//! `r2v wan forward` reproduces every fixture (DiT, VACE, both VAEs, umT5) from its files
//! (config, weights, the inputs file as diffusers names them), within MODEL.md §4's
//! tolerances, and runs in bf16.

mod util;

use r2v_wan::compare::difference;
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

/// max |got − want| / max |want|; a NaN or an infinity fails.
fn relative_worst(got: &[f32], want: &[f32]) -> f32 {
    difference(got, want)
        .unwrap_or_else(|e| panic!("{e}"))
        .relative()
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

/// Runs `r2v wan pipeline` on the pipeline fixture's inputs (32×32, 9 frames, 4 steps) with
/// `model` and the extra flags, and returns its stdout.
fn wan_pipeline(model: &Path, out: &Path, extra: &[&str]) -> String {
    let io = fixture("pipeline/wan_vace_r2v_pipeline_tiny.io.safetensors");
    let mut args = vec![
        "wan",
        "pipeline",
        "--model-dir",
        model.to_str().unwrap(),
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
        "--device",
        "cpu",
    ];
    args.extend(extra);
    let run = util::r2v(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8_lossy(&run.stdout).into_owned()
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
        wan_pipeline(&weights, &out, &["--schedule", schedule, "--shift", shift]);
        let check = |got: &str, want: &str, atol: f32| {
            let (g, w) = (read(&out, got), read(&io, &format!("{variant}.{want}")));
            let worst = difference(&g, &w)
                .unwrap_or_else(|e| panic!("{variant} {got}: {e}"))
                .max_abs;
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

/// The flash preset's σ list is LightX2V's fixed one: a model directory whose scheduler says
/// `flow_shift` 3.0 (the tiny model, as the 480p checkpoints) still samples over
/// [1, 0.9375, 0.8333, 0.625] and reproduces the fixture made with that list; only an
/// explicit `--shift` changes it.
#[test]
fn wan_pipeline_flash_ignores_the_scheduler_shift() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    let made = std::process::Command::new("python3")
        .arg(util::repo_root().join("scripts/make-tiny-wan-model.py"))
        .arg(&model)
        .output()
        .unwrap();
    assert!(made.status.success());
    let scheduler = std::fs::read_to_string(model.join("scheduler/scheduler_config.json")).unwrap();
    assert!(scheduler.contains("\"flow_shift\": 3.0"), "{scheduler}");
    let io = fixture("pipeline/wan_vace_r2v_pipeline_tiny.io.safetensors");
    let run = |out: &Path, extra: &[&str]| {
        wan_pipeline(&model, out, &[&["--schedule", "flash"], extra].concat())
    };
    let fixed = dir.path().join("fixed.safetensors");
    let stdout = run(&fixed, &[]);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let sigmas: Vec<f64> = report["sigmas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    for (got, want) in sigmas.iter().zip([1.0, 0.9375, 0.833_333_3, 0.625]) {
        assert!((got - want).abs() < 1e-6, "{sigmas:?}");
    }
    let want = read(&io, "euler_nocfg.final_latents");
    let worst = difference(&read(&fixed, "final_latents"), &want)
        .unwrap()
        .max_abs;
    assert!(worst <= 1e-4, "fixed list: {worst:e}");
    // The directory's shift, asked for explicitly, is another list and misses the fixture.
    let shifted = dir.path().join("shifted.safetensors");
    run(&shifted, &["--shift", "3"]);
    let worst = difference(&read(&shifted, "final_latents"), &want)
        .unwrap()
        .max_abs;
    assert!(worst > 1e-2, "shift 3 must differ: {worst:e}");
}
