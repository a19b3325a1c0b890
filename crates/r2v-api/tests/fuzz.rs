//! Fuzz targets for what parses untrusted text: the request body and the shot timeline.
//!
//! Under `cargo test` (and so in CI) bolero runs each target on random inputs, a bounded
//! number of them; `cargo bolero test -p r2v-api --test fuzz TARGET` runs the same target
//! coverage-guided under libFuzzer (nightly). Crashes it finds go in as regression tests.

use r2v_api::ValidateOptions;
use r2v_api::body::RequestBody;
use r2v_api::input::MAX_ERRORS;
use r2v_api::prompt::parse_timeline;

/// Any bytes as a submit body: never a panic; at most `MAX_ERRORS` problems; a valid body's
/// stored input validates again to the same request (what a worker reads back).
#[test]
fn request_body() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let Ok(body) = RequestBody::parse(bytes) else {
            return;
        };
        match body.validate(&ValidateOptions::default()) {
            Ok(valid) => {
                let stored = serde_json::to_vec(&body.input()).unwrap();
                let again = RequestBody::parse(&stored)
                    .unwrap()
                    .validate(&ValidateOptions::default())
                    .unwrap();
                assert_eq!(format!("{valid:?}"), format!("{again:?}"));
            }
            Err(details) => assert!((1..=MAX_ERRORS).contains(&details.len())),
        }
    });
}

/// JSON-shaped bodies reach the field rules more often than raw bytes do.
#[test]
fn request_body_fields() {
    bolero::check!()
        .with_type::<(String, Vec<String>, Vec<String>, Option<u64>, String)>()
        .for_each(|(prompt, images, videos, seed, duration)| {
            let body = serde_json::json!({
                "prompt": prompt, "image_urls": images, "video_urls": videos,
                "seed": seed, "duration": duration, "multi_shots": true,
            });
            let body = RequestBody::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
            if let Err(details) = body.validate(&ValidateOptions::default()) {
                assert!((1..=MAX_ERRORS).contains(&details.len()));
            }
        });
}

/// Any prompt as a multi-shot timeline: never a panic, and a timeline that parses has its
/// shots in order, each ending after it starts and within the duration.
#[test]
fn shot_timeline() {
    bolero::check!()
        .with_type::<(String, Option<u8>)>()
        .for_each(|(prompt, duration)| {
            let duration = duration.map(|d| f64::from(d % 16));
            if let Ok(timeline) = parse_timeline(prompt, duration) {
                let mut last_end = 0.0;
                for segment in &timeline.segments {
                    assert!(segment.start >= last_end && segment.end > segment.start);
                    if let Some(d) = duration {
                        assert!(segment.end <= d + 1e-9);
                    }
                    last_end = segment.end;
                }
            }
        });
}
