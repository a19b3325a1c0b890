//! A render may take as long as it takes: the encoder's watchdog measures stalls of
//! ffmpeg, not the engine's time. An engine that pauses longer than the encoder's limit
//! before its first frame and between shots still gives a complete mp4 (real ffmpeg).

use r2v_api::{Preset, ValidateOptions};
use r2v_engine::engine::{Engine, EngineError, FrameSink, LogLevel, ReferenceMedia, RenderCtx};
use r2v_engine::pipeline::Generator;
use r2v_engine::plan::Plan;
use r2v_engine::preview::PreviewEngine;
use r2v_engine::safety::SafetyPolicy;
use r2v_media::fetch::{FetchPolicy, Fetcher};
use r2v_media::ffmpeg::Tools;
use r2v_media::reference::ReferenceLoader;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The encoder's limit in this test.
const STALL: Duration = Duration::from_millis(500);

/// The preview engine, slowed down: it thinks for three stall limits before the first
/// frame and again half-way, like a neural engine denoising a second shot.
struct SlowEngine;

struct SlowSink<'a> {
    inner: &'a mut dyn FrameSink,
    written: u32,
    pause_at: u32,
}

impl FrameSink for SlowSink<'_> {
    fn frame(&mut self, rgb: &[u8]) -> Result<(), EngineError> {
        if self.written == 0 || self.written == self.pause_at {
            std::thread::sleep(STALL * 3);
        }
        self.written += 1;
        self.inner.frame(rgb)
    }
}

impl Engine for SlowEngine {
    fn name(&self) -> &'static str {
        "slow"
    }

    fn describe(&self) -> String {
        "a deliberately slow preview".to_owned()
    }

    fn render(
        &self,
        plan: &Plan,
        references: &[ReferenceMedia],
        ctx: &mut dyn RenderCtx,
        sink: &mut dyn FrameSink,
    ) -> Result<(), EngineError> {
        let mut slow = SlowSink {
            inner: sink,
            written: 0,
            pause_at: plan.num_frames / 2,
        };
        PreviewEngine.render(plan, references, ctx, &mut slow)
    }
}

struct Quiet;

impl RenderCtx for Quiet {
    fn log(&mut self, _: LogLevel, _: &str) {}
    fn progress(&mut self, _: &str, _: u64, _: u64) {}
    fn cancelled(&self) -> bool {
        false
    }
}

#[test]
fn a_render_slower_than_the_encoder_limit_completes() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fetcher = {
        let _guard = runtime.enter();
        Fetcher::new(FetchPolicy::default()).unwrap()
    };
    let generator = Generator::new(
        Arc::new(SlowEngine),
        ReferenceLoader::new(fetcher, Tools::default()),
        SafetyPolicy::default(),
    )
    .with_x264_preset("ultrafast".to_owned())
    .with_encoder_stall_timeout(STALL);
    let input = r2v_api::validate(
        &serde_json::json!({"prompt": "A lighthouse at dusk.", "resolution": "720p", "seed": 3}),
        &ValidateOptions::default(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("slow.mp4");
    let started = Instant::now();
    let generated = generator
        .generate(runtime.handle(), &input, Preset::Flash, &output, &mut Quiet)
        .expect("a slow render is not a hung encoder");
    assert!(
        started.elapsed() > STALL * 6,
        "the engine paused for longer than the limit in all"
    );
    assert_eq!(generated.probe.video.num_frames, Some(150));
    assert_eq!(
        (generated.probe.video.width, generated.probe.video.height),
        (1280, 720)
    );
}
