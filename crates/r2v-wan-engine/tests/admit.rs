//! The memory budget: a plan whose estimate is over it is refused by `admit` (a 422 on
//! `duration`) before any reference is fetched; one under it is admitted; and renders that
//! run at once on one engine never hold more than the budget: they queue for it.

use r2v_api::{Preset, RequestError, ValidateOptions, validate};
use r2v_engine::engine::{Engine, EngineError, FrameSink, LogLevel, RenderCtx};
use r2v_engine::plan::plan;
use r2v_wan::device::DeviceRequest;
use r2v_wan::model_dir::ModelDir;
use r2v_wan::{Cpu, Precision};
use r2v_wan_engine::memory::{WeightBytes, parameters, peak_bytes, working};
use r2v_wan_engine::{WanEngine, WanOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex};

fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("tiny");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let made = std::process::Command::new("python3")
        .arg(root.join("scripts/make-tiny-wan-model.py"))
        .arg(&model)
        .output()
        .unwrap();
    assert!(made.status.success());
    model
}

fn open(model: &Path, budget: u64) -> WanEngine<Cpu> {
    WanEngine::open(
        model,
        DeviceRequest::Cpu.resolve().unwrap(),
        Default::default(),
        WanOptions {
            precision: Some(Precision::F32),
            memory_budget: Some(budget),
        },
    )
    .unwrap()
}

fn input(duration: &str) -> r2v_api::ValidInput {
    validate(
        &serde_json::json!({"prompt": "A cat walks on the grass", "duration": duration,
                            "resolution": "720p", "seed": 5}),
        &ValidateOptions::default(),
    )
    .unwrap()
}

#[test]
fn plans_over_the_budget_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    // Budget: exactly what one 5 s shot at the engine's 16:9 size (48×32) with one reference needs.
    let inspected = ModelDir::open(&model).unwrap();
    let (counts, _) = parameters(&inspected).unwrap();
    let five_seconds = peak_bytes(&inspected, &counts, Precision::F32, (48, 32, 81, 1));
    let engine = open(&model, five_seconds);
    assert!(engine.admit(&plan(&input("5"), Preset::Flash, 1)).is_ok());
    let Err(RequestError::Invalid(details)) = engine.admit(&plan(&input("10"), Preset::Flash, 1))
    else {
        panic!("a 10 s shot is over the budget");
    };
    assert_eq!(details[0].kind, "memory_budget_exceeded");
    assert!(
        details[0].msg.contains("161-frame shot at 48×32"),
        "{}",
        details[0].msg
    );
}

/// Collects log lines; never cancelled.
#[derive(Default)]
struct Lines(Vec<String>);

impl RenderCtx for Lines {
    fn log(&mut self, _: LogLevel, message: &str) {
        self.0.push(message.to_owned());
    }
    fn progress(&mut self, _: &str, _: u64, _: u64) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// Counts frames without keeping them.
struct Count(u32);

impl FrameSink for Count {
    fn frame(&mut self, _: &[u8]) -> Result<(), EngineError> {
        self.0 += 1;
        Ok(())
    }
}

/// Renders the same 5 s plan on two threads at once; returns each render's log.
fn render_twice(engine: &Arc<WanEngine<Cpu>>) -> Vec<Vec<String>> {
    let plan = Arc::new(plan(&input("5"), Preset::Flash, 9));
    let start = Arc::new(Barrier::new(2));
    let logs = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (engine, plan, start, logs) =
                (engine.clone(), plan.clone(), start.clone(), logs.clone());
            std::thread::spawn(move || {
                let (mut ctx, mut sink) = (Lines::default(), Count(0));
                start.wait();
                engine.render(&plan, &[], &mut ctx, &mut sink).unwrap();
                assert_eq!(sink.0, plan.num_frames);
                logs.lock().unwrap().push(ctx.0);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(logs).unwrap().into_inner().unwrap()
}

#[test]
fn concurrent_renders_never_exceed_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let inspected = ModelDir::open(&model).unwrap();
    let (counts, _) = parameters(&inspected).unwrap();
    let w = WeightBytes::of(&counts, Precision::F32, 1);
    let resident = w.transformer + w.text_encoder + w.vae;
    // What one render of the 5 s plan reserves: the CPU's working memory at 48×32.
    let one = {
        let m = working(&inspected, (48, 32, 81, 0));
        m.activations + m.clip + m.frames
    };
    // Room for one render and a half (and for the open-time check, one with a reference).
    let with_reference = {
        let m = working(&inspected, (48, 32, 81, 1));
        m.activations + m.clip + m.frames
    };
    let budget = resident + (one * 3 / 2).max(with_reference);
    assert!(
        budget < resident + 2 * one,
        "the budget must not fit two renders"
    );
    let engine = Arc::new(open(&model, budget));
    let logs = render_twice(&engine);
    let (peak, capacity) = engine.working_memory();
    assert!(peak <= capacity, "held {peak} of {capacity}");
    assert_eq!(peak, one, "one render at a time");
    let waited = logs
        .iter()
        .filter(|log| {
            log.iter()
                .any(|l| l.starts_with("memory: waited for other renders"))
        })
        .count();
    assert_eq!(
        waited, 1,
        "the second render waited for the first: {logs:?}"
    );

    // With room for both, they run side by side.
    let roomy = Arc::new(open(&model, resident + 2 * one + with_reference));
    let logs = render_twice(&roomy);
    let (peak, capacity) = roomy.working_memory();
    assert!(peak <= capacity);
    assert_eq!(peak, 2 * one, "both renders at once");
    assert!(
        logs.iter()
            .flatten()
            .all(|l| !l.starts_with("memory: waited"))
    );
}
