//! The wan engine end to end on a tiny model directory (`scripts/make-tiny-wan-model.py`:
//! the golden fixtures' random weights in the diffusers layout): `r2v run --engine wan`
//! and a request through `r2v serve --engine wan` give contract-correct mp4s (SPEC §3; the
//! content is noise), the seed decides the frames, and bad model directories or budgets are
//! refused with a clear error before any work.

mod util;

use base64::Engine as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

use util::{Server, ffprobe, http, num, r2v, stream};

fn tiny_model(dir: &Path) -> PathBuf {
    let out = dir.join("tiny-wan");
    let made = std::process::Command::new("python3")
        .arg(util::repo_root().join("scripts/make-tiny-wan-model.py"))
        .arg(&out)
        .output()
        .expect("python3 runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    out
}

/// SPEC §3 for a 5 s 720p 16:9 request with audio.
fn assert_contract(path: &Path) {
    let probe = ffprobe(path);
    let video = stream(&probe, "video").expect("a video stream");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["pix_fmt"], "yuv420p");
    assert_eq!(
        (num(&video["width"]), num(&video["height"])),
        (1280.0, 720.0)
    );
    assert_eq!(video["r_frame_rate"], "30/1");
    assert_eq!(num(&video["nb_frames"]), 150.0);
    let audio = stream(&probe, "audio").expect("an audio stream");
    assert_eq!(audio["codec_name"], "aac");
}

fn run(model: &Path, seed: &str, out: &Path) -> std::process::Output {
    let request = util::repo_root().join("examples/request.json");
    r2v(&[
        "run",
        "--engine",
        "wan",
        "--model-dir",
        model.to_str().unwrap(),
        "--input",
        request.to_str().unwrap(),
        "--seed",
        seed,
        "--x264-preset",
        "ultrafast",
        "-o",
        out.to_str().unwrap(),
    ])
}

#[test]
fn run_with_the_wan_engine_is_contract_correct_and_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let first = dir.path().join("a.mp4");
    let output = run(&model, "7", &first);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("engine: wan (Wan2.1-VACE"), "{stderr}");
    assert!(stderr.contains("a neural model"), "{stderr}");
    assert!(stderr.contains("denoise: shot 1/3, step 1/4"), "{stderr}");
    assert!(stderr.contains("denoise: shot 3/3, step 4/4"), "{stderr}");
    assert!(stderr.contains("no neural audio stage"), "{stderr}");
    assert_contract(&first);

    let again = dir.path().join("b.mp4");
    assert!(run(&model, "7", &again).status.success());
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&again).unwrap(),
        "the same seed gives the same file"
    );
    let other = dir.path().join("c.mp4");
    assert!(run(&model, "8", &other).status.success());
    assert_ne!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&other).unwrap(),
        "another seed gives other frames"
    );
}

#[test]
fn serve_with_the_wan_engine_completes_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--engine",
            "wan",
            "--model-dir",
            model.to_str().unwrap(),
            "--x264-preset",
            "ultrafast",
        ],
    );
    let client = http();
    let png = std::fs::read(util::repo_root().join("examples/character-warm.png")).unwrap();
    let image = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    );
    let body = json!({
        "prompt": "[0-2s] Character1 walks in. [2-5s] Character1 waves.",
        "image_urls": [image],
        "resolution": "720p",
        "duration": "5",
        "seed": 11,
    });
    let (logs, output) = util::generate(&server, "wan/v2.6/reference-to-video", &body);
    assert!(
        logs.iter()
            .any(|l| l.contains("denoise: shot 2/2, step 2/2")),
        "standard preset with the directory's 2 steps: {logs:?}"
    );
    let video = client
        .get(output["video"]["url"].as_str().unwrap())
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let path = dir.path().join("served.mp4");
    std::fs::write(&path, &video).unwrap();
    let probe = ffprobe(&path);
    let stream = stream(&probe, "video").unwrap();
    assert_eq!(
        (num(&stream["width"]), num(&stream["height"])),
        (1280.0, 720.0)
    );
    assert_eq!(num(&stream["nb_frames"]), 150.0);
    assert_eq!(output["seed"], 11);
}

fn expect_failure(args: &[String], message: &str) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = r2v(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} should fail");
    assert!(stderr.contains(message), "{args:?}: {stderr}");
    assert!(
        !stderr.contains("download:"),
        "refused before any work: {stderr}"
    );
}

#[test]
fn bad_model_directories_and_budgets_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out = dir.path().join("never.mp4");
    let request = util::repo_root().join("examples/request.json");
    let base = |model: &str| {
        vec![
            "run".to_owned(),
            "--engine".to_owned(),
            "wan".to_owned(),
            "--model-dir".to_owned(),
            model.to_owned(),
            "--input".to_owned(),
            request.to_str().unwrap().to_owned(),
            "-o".to_owned(),
            out.to_str().unwrap().to_owned(),
        ]
    };
    let call = |args: Vec<String>, message: &str| expect_failure(&args, message);

    call(
        base("/nonexistent/model"),
        "is neither a model directory nor a weights file",
    );
    let mut no_dir = base("x");
    no_dir.drain(3..5);
    call(no_dir, "the wan engine needs --model-dir");

    let mut budget = base(model.to_str().unwrap());
    budget.extend(["--memory-budget-gb".to_owned(), "0.0001".to_owned()]);
    call(budget, "over the memory budget");

    // A device that is asked for but missing is a start-up error, never a silent CPU run.
    for (device, message, applies) in [
        ("cuda", "built without CUDA", !cfg!(feature = "cuda")),
        ("wgpu:1", "built without wgpu", !cfg!(feature = "wgpu")),
        ("cuda:99", "is not available", cfg!(feature = "cuda")),
        ("wgpu:99", "is not available", cfg!(feature = "wgpu")),
        ("gpu", "is not a device", true),
    ] {
        if !applies {
            continue;
        }
        let mut on = base(model.to_str().unwrap());
        on.extend(["--device".to_owned(), device.to_owned()]);
        call(on, message);
    }

    let plain = dir.path().join("plain");
    copy_dir(&model, &plain);
    let config_path = plain.join("transformer/config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("vace_layers");
    std::fs::write(&config_path, config.to_string()).unwrap();
    call(
        base(plain.to_str().unwrap()),
        "without reference conditioning",
    );

    let empty = dir.path().join("empty");
    copy_dir(&model, &empty);
    std::fs::remove_file(empty.join("transformer/diffusion_pytorch_model.safetensors")).unwrap();
    call(base(empty.to_str().unwrap()), "has no .safetensors weights");

    let wrong = dir.path().join("wrong");
    copy_dir(&model, &wrong);
    let config_path = wrong.join("transformer/config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["num_layers"] = json!(5);
    std::fs::write(&config_path, config.to_string()).unwrap();
    call(
        base(wrong.to_str().unwrap()),
        "missing key blocks.4.attn1.to_q.weight",
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::create_dir_all(to).unwrap();
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn models_inspect_reports_the_kind_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let output = r2v(&["models", "inspect", "--json", model.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["kind"], "Wan2.1-VACE custom (dim 64)");
    assert_eq!(report["parameters"]["transformer"], 374_480);
    assert_eq!(report["parameters"]["vae"], 203_295);
    assert_eq!(report["dtype"], "f32");
    assert_eq!(report["text_encoder"], true);
    let rows = report["memory"].as_array().unwrap();
    let row = |device: &str, dtype: &str, case: &str| {
        rows.iter()
            .find(|r| {
                r["device"] == device
                    && r["dtype"] == dtype
                    && r["case"].as_str().unwrap().contains(case)
            })
            .unwrap_or_else(|| panic!("{device} {dtype} {case}: {rows:?}"))
    };
    for (device, dtype) in [
        ("cpu", "f32"),
        ("cpu", "bf16"),
        ("cuda", "bf16"),
        ("cuda", "f32"),
        ("wgpu", "f32"),
    ] {
        let native_720 = row(device, dtype, "1280×720");
        let native_1080 = row(device, dtype, "1920×1088");
        assert!(
            num(&native_1080["device_gib"]) > num(&native_720["device_gib"]),
            "1080p needs more than 720p on {device} {dtype}"
        );
    }
    // On the CPU device and host are one memory; a GPU keeps the weights off the host.
    let cpu = row("cpu", "f32", "1280×720");
    assert_eq!(cpu["device_gib"], cpu["host_gib"]);
    let gpu = row("cuda", "f32", "1280×720");
    assert!(num(&gpu["host_gib"]) < num(&gpu["device_gib"]));
    assert!(
        num(&row("cuda", "bf16", "request")["device_gib"])
            < num(&row("cuda", "f32", "request")["device_gib"])
    );
    // The device it would run on (auto: the CPU in a build without GPU features).
    assert_eq!(report["engine"]["device"]["kind"], "cpu");
    assert_eq!(report["engine"]["dtype"], "f32");
    assert_eq!(report["engine"]["text_encoder"], "resident");
    let text = r2v(&[
        "models",
        "inspect",
        model.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("on cpu ("), "{text}");
}

/// The whole engine on a GPU-class backend: `r2v run --engine wan --device wgpu:0` (lavapipe in
/// CI) gives a contract-correct mp4, and says which device ran it. Built only with
/// `--features wgpu`.
#[cfg(feature = "wgpu")]
#[test]
fn run_on_wgpu_is_contract_correct() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out = dir.path().join("wgpu.mp4");
    let request = dir.path().join("request.json");
    let reference = util::repo_root().join("examples/character-warm.png");
    std::fs::write(
        &request,
        json!({"prompt": "Character1 walks on the grass", "image_urls": [reference],
               "resolution": "720p", "seed": 3})
        .to_string(),
    )
    .unwrap();
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernels");
    let output = r2v(&[
        "run",
        "--engine",
        "wan",
        "--device",
        "wgpu:0",
        "--kernel-cache",
        cache.to_str().unwrap(),
        "--model-dir",
        model.to_str().unwrap(),
        "--input",
        request.to_str().unwrap(),
        "--x264-preset",
        "ultrafast",
        "-o",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("f32 on wgpu:0 ("), "{stderr}");
    assert!(stderr.contains("denoise: shot 1/1, step 4/4"), "{stderr}");
    assert_contract(&out);
}
