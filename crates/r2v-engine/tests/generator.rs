//! `Generator::generate` around engines that misbehave, with the real ffmpeg:
//! - a render may take as long as it takes: the encoder's watchdog measures stalls of ffmpeg,
//!   not the engine's time, so an engine that pauses longer than the encoder's limit before
//!   its first frame and between shots still gives a complete mp4;
//! - an engine that refuses a plan in a way every attempt would repeat fails the request at
//!   once (`RequestError::Fatal`, not retried), while a model failure stays retryable.

use r2v_api::{Preset, RequestError, ValidateOptions};
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

/// Fails every render with the error it holds.
struct Failing(fn() -> EngineError);

impl Engine for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }

    fn describe(&self) -> String {
        "an engine that fails".to_owned()
    }

    fn render(
        &self,
        _: &Plan,
        _: &[ReferenceMedia],
        _: &mut dyn RenderCtx,
        _: &mut dyn FrameSink,
    ) -> Result<(), EngineError> {
        Err((self.0)())
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

/// A generator on `engine` with the short encoder limit, and a 720p request.
fn setup(engine: Arc<dyn Engine>) -> (tokio::runtime::Runtime, Generator, r2v_api::ValidInput) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fetcher = {
        let _guard = runtime.enter();
        Fetcher::new(FetchPolicy::default()).unwrap()
    };
    let generator = Generator::new(
        engine,
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
    (runtime, generator, input)
}

#[test]
fn a_render_slower_than_the_encoder_limit_completes() {
    let (runtime, generator, input) = setup(Arc::new(SlowEngine));
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

#[test]
fn a_refused_plan_fails_at_once_and_a_model_failure_is_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let run = |engine: Failing| {
        let (runtime, generator, input) = setup(Arc::new(engine));
        generator
            .generate(
                runtime.handle(),
                &input,
                Preset::Flash,
                &dir.path().join("x.mp4"),
                &mut Quiet,
            )
            .unwrap_err()
    };
    let refused = run(Failing(|| {
        EngineError::Refused("shape: 7 frames".to_owned())
    }));
    assert!(
        matches!(&refused, RequestError::Fatal { message } if message.contains("7 frames")),
        "{refused:?}"
    );
    assert_eq!(
        (refused.status(), refused.error_type()),
        (500, "internal_error")
    );
    let failed = run(Failing(|| EngineError::Model("device lost".to_owned())));
    assert!(
        matches!(&failed, RequestError::Internal { message } if message.contains("device lost")),
        "{failed:?}"
    );
}
