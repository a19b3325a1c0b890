//! The neural audio stage end to end on a tiny MMAudio directory
//! (`scripts/make-tiny-audio-model.py`: the golden fixtures' random weights in the layout
//! `--audio-model-dir` reads): with it, `enable_audio` gives a SPEC-correct mp4 whose
//! track is the model's (not the procedural bed, another for another seed, the same bytes
//! for the same seed), through `r2v run` and `r2v serve` alike; bad directories are
//! refused at start-up; `r2v audio forward|pipeline` reproduce the fixtures from files;
//! `r2v models inspect` recognises the directory.

mod util;

use base64::Engine as _;
use r2v_wan::compare::difference;
use r2v_wan::tensor_io;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use util::{Server, ffprobe, http, num, r2v, stream};

fn tiny_audio_model(dir: &Path) -> PathBuf {
    let out = dir.join("tiny-audio");
    let made = Command::new("python3")
        .arg(util::repo_root().join("scripts/make-tiny-audio-model.py"))
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

/// The decoded audio track as s16le stereo samples.
fn track(path: &Path) -> Vec<i16> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-map", "0:a:0", "-f", "s16le", "-ac", "2", "-ar", "48000", "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    (sum / samples.len().max(1) as f64).sqrt() / f64::from(i16::MAX)
}

/// SPEC §3's audio: AAC, 48 kHz, stereo, as long as the 5 s video.
fn assert_audio_contract(path: &Path) {
    let probe = ffprobe(path);
    let video = stream(&probe, "video").expect("a video stream");
    assert_eq!(num(&video["nb_frames"]), 150.0);
    let audio = stream(&probe, "audio").expect("an audio stream");
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(num(&audio["sample_rate"]), 48_000.0);
    assert_eq!(num(&audio["channels"]), 2.0);
    let duration = num(&audio["duration"]);
    assert!((duration - 5.0).abs() < 0.05, "audio lasts {duration} s");
    let samples = track(path).len() / 2;
    assert!(
        (samples as f64 / 48_000.0 - 5.0).abs() < 0.05,
        "{samples} samples"
    );
}

fn run(request: &Path, model: Option<&Path>, seed: &str, out: &Path) -> std::process::Output {
    let mut args = vec![
        "run",
        "--input",
        request.to_str().unwrap(),
        "--seed",
        seed,
        "--x264-preset",
        "ultrafast",
        "-o",
        out.to_str().unwrap(),
    ];
    if let Some(model) = model {
        args.extend(["--audio-model-dir", model.to_str().unwrap()]);
    }
    r2v(&args)
}

#[test]
fn run_makes_the_track_with_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_audio_model(dir.path());
    let request = util::repo_root().join("examples/request.json");
    let paths: Vec<PathBuf> = ["a", "b", "c", "bed"]
        .iter()
        .map(|n| dir.path().join(format!("{n}.mp4")))
        .collect();
    let first = run(&request, Some(&model), "42", &paths[0]);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(
        stderr.contains("audio: MMAudio tiny_16k (16000 Hz)"),
        "{stderr}"
    );
    assert!(stderr.contains("audio: step 1/25"), "{stderr}");
    assert!(stderr.contains("audio: step 25/25"), "{stderr}");
    assert!(!stderr.contains("procedural bed"), "{stderr}");
    assert_audio_contract(&paths[0]);
    assert!(
        !dir.path().join("a.video.mp4").exists(),
        "the video-only intermediate is removed"
    );

    assert!(
        run(&request, Some(&model), "42", &paths[1])
            .status
            .success()
    );
    assert!(
        run(&request, Some(&model), "43", &paths[2])
            .status
            .success()
    );
    let bed = run(&request, None, "42", &paths[3]);
    assert!(String::from_utf8_lossy(&bed.stderr).contains("procedural bed"));

    let [a, _, c, bed] = [0, 1, 2, 3].map(|i| track(&paths[i]));
    assert!(
        rms(&a) > 0.01,
        "the model's track is not silence: rms {}",
        rms(&a)
    );
    assert_eq!(
        std::fs::read(&paths[0]).unwrap(),
        std::fs::read(&paths[1]).unwrap(),
        "the same request and seed give the same bytes"
    );
    assert_ne!(a, c, "another seed gives another track");
    assert_ne!(a, bed, "the track is the model's, not the procedural bed");
    // The video is the same with or without the stage: only the track differs.
    let frames = |p: &Path| {
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(p)
            .args(["-map", "0:v:0", "-c", "copy", "-f", "h264", "-"])
            .output()
            .unwrap()
            .stdout
    };
    assert_eq!(frames(&paths[0]), frames(&paths[3]));
}

#[test]
fn serve_makes_the_track_with_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_audio_model(dir.path());
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--audio-model-dir",
            model.to_str().unwrap(),
            "--x264-preset",
            "ultrafast",
        ],
    );
    let client = http();
    let png_path = util::repo_root().join("examples/character-warm.png");
    let image = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&png_path).unwrap())
    );
    let body = json!({
        "prompt": "[0-2s] Character1 walks in the rain. [2-5s] Character1 rings a bell.",
        "negative_prompt": "music",
        "resolution": "720p",
        "duration": "5",
        "enable_audio": true,
        "seed": 5,
    });
    let mut served = body.clone();
    served["image_urls"] = json!([image]);
    let (logs, output) = util::generate(&server, "wan/v2.6/reference-to-video/flash", &served);
    assert!(
        logs.iter()
            .any(|l| l.starts_with("audio: MMAudio tiny_16k")),
        "{logs:?}"
    );
    assert!(logs.iter().any(|l| l == "audio: step 25/25"), "{logs:?}");
    let video = client
        .get(output["video"]["url"].as_str().unwrap())
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let path = dir.path().join("served.mp4");
    std::fs::write(&path, &video).unwrap();
    assert_audio_contract(&path);

    // The same request through `r2v run` (the reference as a file) gives the same track.
    let mut local = body;
    local["image_urls"] = json!([png_path]);
    let request = dir.path().join("request.json");
    std::fs::write(&request, local.to_string()).unwrap();
    let ran = dir.path().join("ran.mp4");
    let output = r2v(&[
        "run",
        "--endpoint",
        "flash",
        "--input",
        request.to_str().unwrap(),
        "--audio-model-dir",
        model.to_str().unwrap(),
        "--x264-preset",
        "ultrafast",
        "-o",
        ran.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(track(&path), track(&ran));
}

/// `r2v ARGS…` must exit with an error naming `message` within a minute (a server that
/// took the directory would listen instead, and be killed here).
fn refused(args: &[&str], message: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_r2v"))
        .args(args)
        .current_dir(util::repo_root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} did not exit: the directory was accepted");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} should fail");
    assert!(stderr.contains(message), "{args:?}: {stderr}");
    assert!(
        !stderr.contains("download:"),
        "refused before any work: {stderr}"
    );
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, value.to_string()).unwrap();
}

#[test]
fn bad_audio_model_directories_are_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let good = tiny_audio_model(dir.path());
    let request = util::repo_root().join("examples/request.json");
    let out = dir.path().join("never.mp4");
    type Breakage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Breakage, &str)> = vec![
        (
            "unknown-variant",
            Box::new(|d: &Path| {
                edit_json(&d.join("mmaudio.json"), |v| {
                    *v = json!({"variant": "huge_99k"});
                })
            }),
            "unknown variant \"huge_99k\"",
        ),
        (
            "no-vocoder",
            Box::new(|d: &Path| std::fs::remove_file(d.join("vocoder.json")).unwrap()),
            "no vocoder",
        ),
        (
            "vocoder-44k",
            Box::new(|d: &Path| {
                edit_json(&d.join("vocoder.json"), |v| {
                    v["sampling_rate"] = json!(44100)
                })
            }),
            "the vocoder makes 44100 Hz audio; a 16k model needs 16000 Hz",
        ),
        (
            "mode-44k",
            Box::new(|d: &Path| edit_json(&d.join("mmaudio.json"), |v| v["mode"] = json!("44k"))),
            "the VAE has 80 mel bands; 44k mode has 128",
        ),
        (
            "deeper-network",
            Box::new(|d: &Path| {
                edit_json(&d.join("mmaudio.json"), |v| {
                    v["network"]["depth"] = json!(3)
                })
            }),
            "missing key joint_blocks.1.latent_block.attn.qkv.weight",
        ),
        (
            "no-synchformer",
            Box::new(|d: &Path| std::fs::remove_file(d.join("synchformer.safetensors")).unwrap()),
            "no synchformer.safetensors",
        ),
        (
            "no-clip",
            Box::new(|d: &Path| std::fs::remove_dir_all(d.join("clip")).unwrap()),
            "no clip/",
        ),
    ];
    for (name, break_it, message) in cases {
        let bad = dir.path().join(name);
        copy_dir(&good, &bad);
        break_it(&bad);
        let bad = bad.to_str().unwrap();
        refused(
            &[
                "run",
                "--input",
                request.to_str().unwrap(),
                "--audio-model-dir",
                bad,
                "-o",
                out.to_str().unwrap(),
            ],
            message,
        );
        let data = dir.path().join(format!("data-{name}"));
        refused(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
                "--audio-model-dir",
                bad,
            ],
            message,
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn fixtures() -> PathBuf {
    util::repo_root().join("crates/r2v-audio/tests/fixtures")
}

fn close(got: &Path, name: &str, reference: &str, rel: f32) {
    let got = tensor_io::read(got).unwrap();
    let want = tensor_io::read(&fixtures().join(reference)).unwrap();
    let (gs, gv) = &got[name];
    let (ws, wv) = &want[name];
    assert_eq!(
        gs.iter().product::<usize>(),
        ws.iter().product::<usize>(),
        "{name}"
    );
    difference(gv, wv)
        .unwrap()
        .within(rel)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// `r2v audio ARGS… --output OUT --device cpu`, which must succeed.
fn audio_cli(args: &[&str], out: &Path) {
    let mut all = vec!["audio"];
    all.extend(args);
    all.extend(["--output", out.to_str().unwrap(), "--device", "cpu"]);
    let output = r2v(&all);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `r2v audio forward --module MODULE` on a fixture's own files: its output `key` matches.
fn forward_matches(dir: &Path, module: &str, fixture: &str, weights: &str, key: &str) {
    let f = |name: String| fixtures().join(name).to_str().unwrap().to_owned();
    let (config, weights, io) = (
        f(format!("{fixture}.config.json")),
        f(weights.to_owned()),
        f(format!("{fixture}.io.safetensors")),
    );
    let out = dir.join(format!("{fixture}.out.safetensors"));
    let args = [
        "forward",
        "--module",
        module,
        "--config",
        &config,
        "--weights",
        &weights,
        "--inputs",
        &io,
    ];
    audio_cli(&args, &out);
    close(&out, key, &format!("{fixture}.io.safetensors"), 1e-5);
}

#[test]
fn the_audio_cli_reproduces_the_fixtures_from_files() {
    let dir = tempfile::tempdir().unwrap();
    forward_matches(
        dir.path(),
        "net",
        "net_v2",
        "net_v2.weights.safetensors",
        "flow",
    );
    forward_matches(
        dir.path(),
        "vocoder",
        "bigvgan_v1",
        "bigvgan_v1.legacy.weights.safetensors",
        "audio",
    );
    forward_matches(
        dir.path(),
        "synchformer",
        "synchformer_tiny",
        "synchformer_tiny.weights.safetensors",
        "features",
    );
    let out = dir.path().join("generation.safetensors");
    let model = fixtures().join("pipeline_44k");
    let io = fixtures().join("pipeline_44k.io.safetensors");
    let args = [
        "pipeline",
        "--model-dir",
        model.to_str().unwrap(),
        "--inputs",
        io.to_str().unwrap(),
        "--steps",
        "3",
    ];
    audio_cli(&args, &out);
    for name in ["latent", "mel", "audio"] {
        close(&out, name, "pipeline_44k.io.safetensors", 2e-5);
    }
}

#[test]
fn models_inspect_recognises_an_mmaudio_directory() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_audio_model(dir.path());
    let output = r2v(&["models", "inspect", "--json", model.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["variant"], "tiny_16k");
    assert_eq!(report["sample_rate"], 16000);
    let parameters = report["parameters"].as_u64().unwrap();
    assert!(parameters > 1_000_000, "{report}");
    assert!(
        report["peak_bytes"].as_u64().unwrap() > parameters * 4,
        "{report}"
    );
    let text = r2v(&["models", "inspect", model.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("kind: MMAudio tiny_16k (16000 Hz audio)"),
        "{text}"
    );
}
