//! `r2v run` end to end: the README command on the bundled examples, every output size
//! and duration, determinism, and errors printed exactly as the server's 422 body.

mod util;

use serde_json::{Value, json};
use util::{ffprobe, num, r2v, stdout_json, stream, top_level_boxes};

#[test]
fn readme_command_writes_a_contract_correct_mp4() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mp4");
    let run = r2v(&[
        "run",
        "--input",
        "examples/request.json",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("NOT a neural model"), "{stderr}");
    let printed = stdout_json(&run);
    let video = &printed["video"];
    assert_eq!(video["url"], format!("file://{}", out.display()));
    assert_eq!(video["content_type"], "video/mp4");
    assert_eq!(video["file_size"], std::fs::metadata(&out).unwrap().len());
    assert_eq!(printed["seed"], 42);
    assert!(
        printed["actual_prompt"]
            .as_str()
            .unwrap()
            .contains("Character1 (the subject of reference video 1)")
    );

    let probe = ffprobe(&out);
    let v = stream(&probe, "video").unwrap();
    assert_eq!(
        (
            v["codec_name"].as_str(),
            v["profile"].as_str(),
            v["pix_fmt"].as_str()
        ),
        (Some("h264"), Some("High"), Some("yuv420p"))
    );
    assert_eq!(
        (v["width"].clone(), v["height"].clone()),
        (video["width"].clone(), video["height"].clone())
    );
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert_eq!(v["avg_frame_rate"], "30/1");
    assert_eq!(video["fps"], 30.0);
    assert_eq!(
        num(&v["nb_read_frames"]),
        video["num_frames"].as_f64().unwrap()
    );
    assert_eq!(video["num_frames"], 150);
    assert!((num(&v["duration"]) - video["duration"].as_f64().unwrap()).abs() < 1e-6);
    assert_eq!(video["duration"], 5.0);
    let a = stream(&probe, "audio").expect("enable_audio is on in the example");
    assert_eq!(
        (
            a["codec_name"].as_str(),
            a["sample_rate"].as_str(),
            a["channels"].as_u64()
        ),
        (Some("aac"), Some("48000"), Some(2))
    );
    assert!(
        (num(&a["duration"]) - 5.0).abs() < 0.05,
        "audio lasts {}",
        a["duration"]
    );
    let boxes = top_level_boxes(&out);
    let moov = boxes.iter().position(|b| b == "moov").unwrap();
    let mdat = boxes.iter().position(|b| b == "mdat").unwrap();
    assert!(moov < mdat, "faststart puts moov first: {boxes:?}");
}

#[test]
fn every_aspect_resolution_and_duration() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [
        ("16:9", "720p", 1280, 720),
        ("16:9", "1080p", 1920, 1080),
        ("9:16", "720p", 720, 1280),
        ("9:16", "1080p", 1080, 1920),
        ("1:1", "720p", 960, 960),
        ("1:1", "1080p", 1440, 1440),
        ("4:3", "720p", 1088, 832),
        ("4:3", "1080p", 1632, 1248),
        ("3:4", "720p", 832, 1088),
        ("3:4", "1080p", 1248, 1632),
    ];
    for (i, (aspect, resolution, width, height)) in sizes.into_iter().enumerate() {
        for duration in ["5", "10"] {
            // Alternate the audio track so both cases are seen at every size.
            let audio = (i % 2 == 0) == (duration == "5");
            let out = dir.path().join(format!("{i}-{duration}.mp4"));
            let run = r2v(&[
                "run",
                "--prompt",
                "A lighthouse at dusk. Waves roll in.",
                "--aspect-ratio",
                aspect,
                "--resolution",
                resolution,
                "--duration",
                duration,
                "--enable-audio",
                &audio.to_string(),
                "--seed",
                "1",
                "--x264-preset",
                "ultrafast",
                "-o",
                out.to_str().unwrap(),
                "--json",
            ]);
            assert!(
                run.status.success(),
                "{aspect} {resolution} {duration}: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            let printed = stdout_json(&run);
            let probe = ffprobe(&out);
            let v = stream(&probe, "video").unwrap();
            let frames: u64 = if duration == "5" { 150 } else { 300 };
            let case = format!("{aspect} {resolution} {duration}s");
            assert_eq!(
                (v["width"].as_u64(), v["height"].as_u64()),
                (Some(width), Some(height)),
                "{case}"
            );
            assert_eq!(num(&v["nb_read_frames"]) as u64, frames, "{case}");
            assert_eq!(printed["video"]["num_frames"], frames, "{case}");
            assert_eq!(
                (
                    printed["video"]["width"].as_u64(),
                    printed["video"]["height"].as_u64()
                ),
                (Some(width), Some(height))
            );
            assert_eq!(
                stream(&probe, "audio").is_some(),
                audio,
                "{case}: audio stream present = {audio}"
            );
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let render = |seed: &str, name: &str| {
        let out = dir.path().join(name);
        let run = r2v(&[
            "run",
            "--input",
            "examples/request.json",
            "--seed",
            seed,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        std::fs::read(out).unwrap()
    };
    let first = render("7", "a.mp4");
    let again = render("7", "b.mp4");
    let other = render("8", "c.mp4");
    assert!(
        first == again,
        "same seed and input must give byte-identical files"
    );
    assert!(first != other, "another seed must give another file");
}

#[test]
fn invalid_input_prints_the_servers_422_body_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.mp4");
    let run = r2v(&[
        "run",
        "--prompt",
        "Character3 walks [0-4s] in [3-8s] out",
        "--image",
        "examples/character-warm.png",
        "--resolution",
        "4k",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.status.code(), Some(3));
    let body = stdout_json(&run);
    let items: Vec<Value> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| json!([d["loc"], d["type"]]))
        .collect();
    assert_eq!(
        items,
        vec![
            json!([["body", "resolution"], "enum"]),
            json!([["body", "prompt"], "value_error"]),
            json!([["body", "prompt"], "value_error"]),
            json!([["body", "prompt"], "value_error"]),
        ]
    );
    assert!(
        body["detail"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with("#enum")
    );
    assert!(!out.exists());

    let readable = r2v(&["run", "--prompt", "", "-o", out.to_str().unwrap()]);
    assert_eq!(readable.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&readable.stderr);
    assert!(
        stderr.contains("body.prompt: String should have at least 1 character [string_too_short]"),
        "{stderr}"
    );
}

#[test]
fn bad_reference_files_are_422_items_at_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("fake.mp4");
    std::fs::write(&text, "not a video").unwrap();
    let run = r2v(&[
        "run",
        "--prompt",
        "x",
        "--video",
        text.to_str().unwrap(),
        "--image",
        "examples/character-cool.jpg",
        "--image",
        "http://169.254.169.254/latest/meta-data",
        "-o",
        dir.path().join("o.mp4").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.status.code(), Some(3));
    let body = stdout_json(&run);
    let items: Vec<Value> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| json!([d["loc"], d["type"]]))
        .collect();
    assert_eq!(
        items,
        vec![
            json!([["body", "video_urls", 0], "unsupported_video_format"]),
            json!([["body", "image_urls", 1], "file_download_error"]),
        ]
    );
}

#[test]
fn the_safety_checker_refuses_blocked_terms_with_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.mp4");
    let run = r2v(&[
        "run",
        "--prompt",
        "a Forbidden Thing",
        "--blocked-term",
        "forbidden thing",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.status.code(), Some(4));
    assert_eq!(
        stdout_json(&run)["detail"][0]["type"],
        "content_policy_violation"
    );
    let off = r2v(&[
        "run",
        "--prompt",
        "a Forbidden Thing",
        "--blocked-term",
        "forbidden thing",
        "--enable-safety-checker",
        "false",
        "--resolution",
        "720p",
        "--x264-preset",
        "ultrafast",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        off.status.success(),
        "{}",
        String::from_utf8_lossy(&off.stderr)
    );
}

#[test]
fn validate_checks_fields_and_files_without_generating() {
    let ok = r2v(&["validate", "--json", "examples/request.json"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert_eq!(stdout_json(&ok), json!({"valid": true, "references": 3}));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"prompt": "x", "image_urls": ["missing.png"]}"#).unwrap();
    let run = r2v(&["validate", "--json", bad.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(3));
    assert_eq!(
        stdout_json(&run)["detail"][0]["loc"],
        json!(["body", "image_urls", 0])
    );
    std::fs::write(&bad, "{not json").unwrap();
    let run = r2v(&["validate", "--json", bad.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(3));
    assert_eq!(stdout_json(&run)["detail"][0]["type"], "json_invalid");
}
