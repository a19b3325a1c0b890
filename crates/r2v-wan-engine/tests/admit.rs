//! The memory budget: a plan whose estimate is over it is refused by `admit` (a 422 on
//! `duration`) before any reference is fetched; one under it is admitted.

use r2v_api::{Preset, RequestError, ValidateOptions, validate};
use r2v_engine::engine::Engine;
use r2v_engine::plan::plan;
use r2v_wan::Precision;
use r2v_wan::model_dir::ModelDir;
use r2v_wan_engine::memory::{parameters, peak_bytes};
use r2v_wan_engine::{WanEngine, WanOptions};
use std::path::Path;

#[test]
fn plans_over_the_budget_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let made = std::process::Command::new("python3")
        .arg(root.join("scripts/make-tiny-wan-model.py"))
        .arg(&model)
        .output()
        .unwrap();
    assert!(made.status.success());
    // Budget: exactly what one 5 s shot at the engine's 16:9 size (48×32) with no reference needs.
    let inspected = ModelDir::open(&model).unwrap();
    let (counts, _) = parameters(&inspected).unwrap();
    let five_seconds = peak_bytes(&inspected, &counts, Precision::F32, (48, 32, 81, 1));
    let engine = WanEngine::open(
        &model,
        WanOptions {
            precision: Precision::F32,
            memory_budget: Some(five_seconds),
        },
    )
    .unwrap();
    let input = |duration: &str| {
        validate(
            &serde_json::json!({"prompt": "A cat.", "duration": duration}),
            &ValidateOptions::default(),
        )
        .unwrap()
    };
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
