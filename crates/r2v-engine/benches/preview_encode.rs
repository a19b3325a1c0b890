//! Benchmark: the preview engine's whole request (reference checks, render, audio bed,
//! encode, probe) for a 1080p, 10 s, 3-shot video with audio, against the limit: the
//! ffmpeg CLI alone encoding the same raw frames and PCM with the same arguments, fed
//! from memory. Both are measured in the same run; the figure is their ratio.
//!
//! `cargo bench -p r2v-engine --bench preview_encode` (R2V_BENCH_RUNS sets the repeats).

use r2v_api::{Preset, ValidateOptions};
use r2v_engine::engine::LogLevel;
use r2v_engine::pipeline::Generator;
use r2v_engine::preview::PreviewEngine;
use r2v_engine::safety::SafetyPolicy;
use r2v_engine::{Engine, RenderCtx, audio};
use r2v_media::fetch::{FetchPolicy, Fetcher};
use r2v_media::ffmpeg::Tools;
use r2v_media::reference::ReferenceLoader;
use r2v_media::video::{encode_args, write_pcm};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Quiet;

impl RenderCtx for Quiet {
    fn log(&mut self, _: LogLevel, _: &str) {}
    fn progress(&mut self, _: &str, _: u64, _: u64) {}
    fn cancelled(&self) -> bool {
        false
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("R2V_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let body = serde_json::json!({
        "prompt": "[0-3s] Character1 swirls into view. [3-6.5s] Character2 looks at Character3. [6.5-10s] Character3 waves.",
        "video_urls": [examples.join("scene.mp4")],
        "image_urls": [examples.join("character-warm.png"), examples.join("character-cool.jpg")],
        "resolution": "1080p", "aspect_ratio": "16:9", "duration": "10", "enable_audio": true, "seed": 11,
    });
    let input = r2v_api::validate(
        &body,
        &ValidateOptions {
            allow_local_paths: true,
        },
    )
    .expect("valid benchmark input");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fetcher = {
        let _guard = runtime.enter();
        Fetcher::new(FetchPolicy::default()).unwrap()
    };
    let generator = Generator::new(
        Arc::new(PreviewEngine),
        ReferenceLoader::new(fetcher, Tools::default()),
        SafetyPolicy::default(),
    );
    let dir = tempfile::tempdir().unwrap();

    // The same frames and PCM, prepared untimed for the ffmpeg-only baseline.
    let (plan, references) = generator
        .prepare(runtime.handle(), &input, Preset::Flash, &mut Quiet)
        .unwrap();
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(plan.num_frames as usize);
    let started = Instant::now();
    PreviewEngine
        .render(&plan, &references, &mut Quiet, &mut frames)
        .unwrap();
    let render_alone = started.elapsed();
    let pcm = audio::render_bed(&plan);
    let pcm_file = write_pcm(&pcm).unwrap();
    let settings = generator.encode_settings(&plan);

    let mut r2v_times = Vec::new();
    let mut ffmpeg_times = Vec::new();
    for run in 0..runs {
        let out = dir.path().join(format!("r2v-{run}.mp4"));
        let started = Instant::now();
        generator
            .generate(runtime.handle(), &input, Preset::Flash, &out, &mut Quiet)
            .unwrap();
        r2v_times.push(started.elapsed());

        let out = dir.path().join(format!("ffmpeg-{run}.mp4"));
        let args = encode_args(&settings, Some((&pcm, pcm_file.path())), &out);
        let started = Instant::now();
        let mut child = Command::new("ffmpeg")
            .args(&args)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for frame in &frames {
            stdin.write_all(frame).unwrap();
        }
        drop(stdin);
        assert!(child.wait().unwrap().success());
        ffmpeg_times.push(started.elapsed());
        eprintln!(
            "run {}: r2v {:.2?}, ffmpeg alone {:.2?}",
            run + 1,
            r2v_times[run],
            ffmpeg_times[run]
        );
    }
    let (r2v, ffmpeg) = (median(r2v_times), median(ffmpeg_times));
    println!(
        "preview 1080p 10s 3 shots + audio ({} frames, x264 {}, {} threads), median of {runs}:",
        frames.len(),
        settings.preset,
        settings.threads
    );
    println!(
        "  r2v preview (render + encode + checks): {:.2} s",
        r2v.as_secs_f64()
    );
    println!(
        "  ffmpeg CLI alone on the same raw frames: {:.2} s",
        ffmpeg.as_secs_f64()
    );
    println!(
        "  ratio r2v / ffmpeg: {:.2}x",
        r2v.as_secs_f64() / ffmpeg.as_secs_f64()
    );
    println!(
        "  (render alone into memory, once: {:.2} s)",
        render_alone.as_secs_f64()
    );
}
