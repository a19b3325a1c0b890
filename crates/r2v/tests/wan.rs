//! `r2v wan forward` reproduces every DiT fixture from its files (config, weights, the
//! inputs file as diffusers names them), within MODEL.md §4's tolerance.

mod util;

use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    util::repo_root()
        .join("crates/r2v-wan/tests/fixtures")
        .join(name)
}

/// The `name` tensor of a safetensors file as f32.
fn read(path: &std::path::Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn wan_forward_reproduces_the_dit_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    for (module, name, weights) in [
        ("dit", "wan_t2v_tiny", "wan_t2v_tiny"),
        ("dit", "wan_ti2v_tokens_tiny", "wan_ti2v_tokens_tiny"),
        ("dit", "wan_i2v_tiny", "wan_i2v_tiny"),
        ("vace", "wan_vace_tiny", "wan_vace_tiny"),
    ] {
        let io = fixture(&format!("{name}.io.safetensors"));
        let out = dir.path().join(format!("{name}.out.safetensors"));
        let run = util::r2v(&[
            "wan",
            "forward",
            "--module",
            module,
            "--config",
            fixture(&format!("{name}.config.json")).to_str().unwrap(),
            "--weights",
            fixture(&format!("{weights}.weights.safetensors"))
                .to_str()
                .unwrap(),
            "--inputs",
            io.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert!(
            run.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let got = read(&out, "output");
        let want = read(&io, "output");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0f32, f32::max);
        assert_eq!(got.len(), want.len(), "{name}");
        assert!(worst <= 1e-4 * scale, "{name}: max |Δ| {worst:e}");
    }
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
