//! Settings as a process sees them: a value `serve` or `worker` refuses as a flag keeps the
//! process from starting, and refuses it from the `--config` file with the same message.

mod util;

use std::process::Output;
use util::r2v;

/// The first line of what the process said on stderr, without `error: ` and the file's name.
fn said(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    first
        .trim_start_matches("error: ")
        .split_once(".toml: ")
        .map_or(first.trim_start_matches("error: "), |(_, rest)| rest)
        .to_owned()
}

#[test]
fn refused_settings_keep_serve_and_worker_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let file = dir.path().join("r2v.toml");
    let path = file.to_str().unwrap();
    let worker = [
        "worker",
        "--api",
        "http://127.0.0.1:9",
        "--token",
        "0123456789abcdef",
    ];
    for (flag, value) in [
        ("--x264-preset", "bogus"),
        ("--max-attempts", "0"),
        ("--heartbeat-seconds", "-2"),
    ] {
        let key = flag.trim_start_matches("--").replace('-', "_");
        let quoted = if value.parse::<f64>().is_ok() {
            value.to_owned()
        } else {
            format!("\"{value}\"")
        };
        std::fs::write(&file, format!("{key} = {quoted}\n")).unwrap();
        let given = format!("{flag}={value}");
        let mut runs = vec![
            ("serve flag", r2v(&["serve", "--data-dir", data, &given])),
            (
                "serve file",
                r2v(&["serve", "--data-dir", data, "--config", path]),
            ),
        ];
        if flag != "--max-attempts" {
            runs.push((
                "worker flag",
                r2v(&[&worker[..], &[given.as_str()]].concat()),
            ));
            runs.push((
                "worker file",
                r2v(&[&worker[..], &["--config", path]].concat()),
            ));
        }
        let first = said(&runs[0].1);
        assert!(first.contains(value), "{flag}: {first}");
        for (how, output) in &runs {
            assert_eq!(output.status.code(), Some(2), "{flag} {how}: {output:?}");
            assert_eq!(said(output), first, "{flag} {how}: the same message");
            assert!(output.stdout.is_empty(), "{flag} {how} started: {output:?}");
        }
    }
    std::fs::write(&file, "x264_presett = \"fast\"\n").unwrap();
    let output = r2v(&["serve", "--data-dir", data, "--config", path]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        said(&output).contains("unknown key `x264_presett`"),
        "{output:?}"
    );
}
