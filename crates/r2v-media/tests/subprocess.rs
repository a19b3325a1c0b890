//! The subprocess sandbox: a hung child is killed at its timeout with its whole process
//! group and reaped (no zombie), a crashing one gives a clear error, and ffprobe
//! failures that are not the file's fault stay internal.

use r2v_media::MediaError;
use r2v_media::ffmpeg::{Limits, Subprocess, run};
use std::path::Path;
use std::time::{Duration, Instant};

fn state(pid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.chars().next()
}

#[test]
fn a_hung_child_is_killed_with_its_group_and_reaped() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = format!(
        "echo $$ > {p}; sleep 300 & echo $! >> {p}; wait",
        p = pids.display()
    );
    let limits = Limits {
        timeout: Duration::from_millis(700),
        ..Limits::probe()
    };
    let started = Instant::now();
    let err = run(Path::new("/bin/sh"), &["-c".into(), script], limits).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, MediaError::Timeout { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "sh did not finish within 0.7s and was killed"
    );
    let text = std::fs::read_to_string(&pids).unwrap();
    let pids: Vec<&str> = text.lines().collect();
    assert_eq!(pids.len(), 2);
    // Our child is reaped: no entry at all, not even a zombie.
    assert_eq!(
        state(pids[0]),
        None,
        "the shell is still in the process table"
    );
    // Its own child was killed with the group (it may linger as init's zombie briefly).
    let deadline = Instant::now() + Duration::from_secs(5);
    while matches!(state(pids[1]), Some(s) if s != 'Z') {
        assert!(Instant::now() < deadline, "the grandchild survived");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_crashing_child_gives_a_clear_error() {
    let err = run(
        Path::new("/bin/sh"),
        &["-c".into(), "echo about to crash >&2; kill -SEGV $$".into()],
        Limits::probe(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "sh failed with killed by signal 11: about to crash"
    );
    assert!(
        err.detail(r2v_api::loc!["body"]).is_none(),
        "a crash is internal, not the user's fault"
    );
}

#[test]
fn a_crashing_ffprobe_is_internal_but_a_refusing_one_is_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let crash = dir.path().join("ffprobe-crash");
    std::fs::write(&crash, "#!/bin/sh\nkill -ABRT $$\n").unwrap();
    let refuse = dir.path().join("ffprobe-refuse");
    std::fs::write(
        &refuse,
        "#!/bin/sh\necho 'x.mp4: Invalid data found when processing input' >&2\nexit 1\n",
    )
    .unwrap();
    for script in [&crash, &refuse] {
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(script)
            .status()
            .unwrap();
    }
    let tools = |ffprobe: &Path| r2v_media::ffmpeg::Tools {
        ffprobe: ffprobe.to_path_buf(),
        ..Default::default()
    };
    let err = r2v_media::probe::probe(&tools(&crash), Path::new("x.mp4"), false).unwrap_err();
    assert!(err.to_string().contains("killed by signal 6"), "{err}");
    assert!(err.detail(r2v_api::loc!["body"]).is_none());
    let err = r2v_media::probe::probe(&tools(&refuse), Path::new("x.mp4"), false).unwrap_err();
    let detail = err.detail(r2v_api::loc!["body", "video_urls", 0]).unwrap();
    assert_eq!(detail.kind, "unsupported_video_format");
    assert!(detail.msg.contains("Invalid data found"), "{}", detail.msg);
}

#[test]
fn a_missing_program_is_a_spawn_error() {
    let err = run(Path::new("/nonexistent/ffmpeg"), &[], Limits::probe()).unwrap_err();
    assert!(
        err.to_string().starts_with("could not run ffmpeg:"),
        "{err}"
    );
}

/// The encoder's clock: a producer that pauses longer than the timeout between writes is
/// not a hung child, but a write the child does not take within the timeout is.
#[test]
fn the_stall_clock_counts_only_waits_on_the_child() {
    let limits = Limits::encode(Duration::from_millis(400));
    let shell = Path::new("/bin/sh");
    let mut reader =
        Subprocess::spawn(shell, &["-c".into(), "wc -c".into()], limits, true).unwrap();
    for _ in 0..3 {
        // Three pauses of 2.5 timeouts each: over the limit in all, and each on its own.
        std::thread::sleep(Duration::from_millis(1000));
        reader.write(&[7u8; 1000]).unwrap();
    }
    let out = reader.finish().unwrap();
    assert_eq!(String::from_utf8_lossy(&out).trim(), "3000");

    // A child that never reads: the pipe fills, the write blocks, the watchdog kills it.
    let mut stuck =
        Subprocess::spawn(shell, &["-c".into(), "sleep 300".into()], limits, true).unwrap();
    let started = Instant::now();
    let written = stuck.write(&vec![0u8; 4 << 20]);
    assert!(written.is_err(), "the write cannot complete");
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = stuck.finish().unwrap_err();
    assert!(matches!(err, MediaError::Timeout { .. }), "{err}");

    // A child that hangs after its input is closed is killed while `finish` waits.
    let hangs = Subprocess::spawn(
        shell,
        &["-c".into(), "cat >/dev/null; sleep 300".into()],
        limits,
        true,
    )
    .unwrap();
    let started = Instant::now();
    let err = hangs.finish().unwrap_err();
    assert!(matches!(err, MediaError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
