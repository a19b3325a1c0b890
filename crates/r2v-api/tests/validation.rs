//! SPEC §2 field rules, one case per rule and error type, through one helper.
//! Reference-file rules (which need bytes) are tested in `r2v-media/tests/references.rs`.

use r2v_api::{ErrorDetail, ValidateOptions, validate, validate_json_bytes};
use serde_json::{Value, json};

/// Validates `body` and returns `(loc, type, ctx)` of every problem, as JSON.
fn errors(body: Value) -> Vec<Value> {
    let details =
        validate(&body, &ValidateOptions::default()).expect_err("the input should be invalid");
    details.iter().map(summary).collect()
}

fn summary(d: &ErrorDetail) -> Value {
    json!({"loc": d.loc, "type": d.kind, "ctx": d.ctx})
}

/// Asserts exactly one problem, with this loc, type and ctx (`null` = no ctx checked).
fn check(body: Value, loc: Value, kind: &str, ctx: Value) {
    let errs = errors(body.clone());
    assert_eq!(errs.len(), 1, "{body}: {errs:#?}");
    assert_eq!(errs[0]["loc"], loc, "{body}");
    assert_eq!(errs[0]["type"], kind, "{body}");
    if !ctx.is_null() {
        assert_eq!(errs[0]["ctx"], ctx, "{body}");
    }
}

const URL: &str = "https://example.com/a.png";

#[test]
fn prompt_rules() {
    check(json!({}), json!(["body", "prompt"]), "missing", Value::Null);
    check(
        json!({"prompt": ""}),
        json!(["body", "prompt"]),
        "string_too_short",
        json!({"min_length": 1}),
    );
    check(
        json!({"prompt": "a".repeat(1501)}),
        json!(["body", "prompt"]),
        "string_too_long",
        json!({"max_length": 1500, "actual_length": 1501}),
    );
    // 1500 scalar values of a 4-byte character are still within the limit.
    assert!(
        validate(
            &json!({"prompt": "😀".repeat(1500)}),
            &ValidateOptions::default()
        )
        .is_ok()
    );
    check(
        json!({"prompt": "x", "negative_prompt": "n".repeat(501)}),
        json!(["body", "negative_prompt"]),
        "string_too_long",
        json!({"max_length": 500, "actual_length": 501}),
    );
}

#[test]
fn reference_list_rules() {
    check(
        json!({"prompt": "x", "video_urls": [URL, URL, URL, URL]}),
        json!(["body", "video_urls"]),
        "sequence_too_long",
        json!({"field_type": "List", "max_length": 3, "actual_length": 4}),
    );
    check(
        json!({"prompt": "x", "image_urls": [URL, URL, URL, URL, URL, URL]}),
        json!(["body", "image_urls"]),
        "sequence_too_long",
        json!({"field_type": "List", "max_length": 5, "actual_length": 6}),
    );
    let both = errors(
        json!({"prompt": "x", "video_urls": [URL, URL, URL], "image_urls": [URL, URL, URL]}),
    );
    assert_eq!(
        both,
        vec![
            json!({"loc": ["body"], "type": "sequence_too_long", "ctx": {"max_length": 5, "actual_length": 6}})
        ]
    );
    let d = validate(
        &json!({"prompt": "x", "video_urls": [URL, URL], "image_urls": [URL, URL, URL, URL]}),
        &ValidateOptions::default(),
    )
    .unwrap_err();
    assert!(
        d[0].msg.contains("video_urls") && d[0].msg.contains("image_urls"),
        "{}",
        d[0].msg
    );
    check(
        json!({"prompt": "x", "image_urls": [URL, "ftp://host/file.png"]}),
        json!(["body", "image_urls", 1]),
        "url_scheme",
        json!({"expected_schemes": "'http', 'https' or 'data'"}),
    );
    assert!(validate(&json!({"prompt": "x", "image_urls": ["data:image/png;base64,AAAA", "HTTP://EXAMPLE.COM/A"]}), &ValidateOptions::default()).is_ok());
}

#[test]
fn enum_rules() {
    check(
        json!({"prompt": "x", "aspect_ratio": "21:9"}),
        json!(["body", "aspect_ratio"]),
        "enum",
        json!({"expected": "'16:9', '9:16', '1:1', '4:3' or '3:4'"}),
    );
    check(
        json!({"prompt": "x", "resolution": "4k"}),
        json!(["body", "resolution"]),
        "enum",
        json!({"expected": "'720p' or '1080p'"}),
    );
    check(
        json!({"prompt": "x", "duration": "7"}),
        json!(["body", "duration"]),
        "enum",
        json!({"expected": "'5' or '10'"}),
    );
    check(
        json!({"prompt": "x", "duration": 7}),
        json!(["body", "duration"]),
        "enum",
        Value::Null,
    );
    for ok in [json!("5"), json!("10"), json!(5), json!(10)] {
        assert!(
            validate(
                &json!({"prompt": "x", "duration": ok}),
                &ValidateOptions::default()
            )
            .is_ok(),
            "{ok}"
        );
    }
}

#[test]
fn seed_rules() {
    check(
        json!({"prompt": "x", "seed": -1}),
        json!(["body", "seed"]),
        "greater_than_equal",
        json!({"ge": 0}),
    );
    check(
        json!({"prompt": "x", "seed": 9223372036854775808u64}),
        json!(["body", "seed"]),
        "less_than",
        json!({"lt": 9223372036854775808u64}),
    );
    let v = validate(
        &json!({"prompt": "x", "seed": 9223372036854775807u64}),
        &ValidateOptions::default(),
    )
    .unwrap();
    assert_eq!(v.seed, Some(9223372036854775807));
}

#[test]
fn wrong_json_types_for_every_field() {
    let cases = [
        ("prompt", json!(12), "string_type"),
        ("video_urls", json!("https://x/a.mp4"), "list_type"),
        ("image_urls", json!({"a": 1}), "list_type"),
        ("aspect_ratio", json!(16), "enum"),
        ("resolution", json!(true), "enum"),
        ("duration", json!(5.5), "enum"),
        ("negative_prompt", json!(["no"]), "string_type"),
        ("enable_prompt_expansion", json!("maybe"), "bool_type"),
        ("multi_shots", json!(2), "bool_type"),
        ("enable_audio", json!([]), "bool_type"),
        ("seed", json!("42"), "int_type"),
        ("seed", json!(1.5), "int_type"),
        ("enable_safety_checker", json!({}), "bool_type"),
    ];
    for (field, value, kind) in cases {
        let mut body = json!({"prompt": "x"});
        body[field] = value;
        check(body, json!(["body", field]), kind, Value::Null);
    }
    check(
        json!({"prompt": "x", "image_urls": [URL, 7]}),
        json!(["body", "image_urls", 1]),
        "string_type",
        Value::Null,
    );
    check(
        json!(["not", "an", "object"]),
        json!(["body"]),
        "model_attributes_type",
        Value::Null,
    );
    // pydantic's lax booleans and null-as-default are accepted.
    let v = validate(&json!({"prompt": "x", "enable_audio": "false", "multi_shots": 0, "seed": null, "image_urls": null}), &ValidateOptions::default()).unwrap();
    assert!(!v.enable_audio && !v.multi_shots && v.seed.is_none());
}

#[test]
fn malformed_json_is_json_invalid() {
    let d = validate_json_bytes(b"{\"prompt\": \"x\",}", &ValidateOptions::default()).unwrap_err();
    assert_eq!(summary(&d[0])["type"], "json_invalid");
    assert_eq!(d[0].loc.len(), 2);
}

#[test]
fn character_tags_need_references() {
    let d = validate(
        &json!({"prompt": "Character6 meets character2", "image_urls": [URL, URL]}),
        &ValidateOptions::default(),
    )
    .unwrap_err();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (summary(&d[0])["loc"].clone(), d[0].kind.as_str()),
        (json!(["body", "prompt"]), "value_error")
    );
    assert!(d[0].msg.contains("Character6"), "{}", d[0].msg);
    assert_eq!(
        d[0].ctx,
        Some(json!({"tag": "Character6", "references": 2}))
    );
    let none = validate(
        &json!({"prompt": "CHARACTER1 alone"}),
        &ValidateOptions::default(),
    )
    .unwrap_err();
    assert!(
        none[0].msg.contains("no references were given"),
        "{}",
        none[0].msg
    );
    assert!(validate(&json!({"prompt": "Character1 and Character2", "video_urls": [URL], "image_urls": [URL]}), &ValidateOptions::default()).is_ok());
}

#[test]
fn shot_timing_rules() {
    let overlapping = errors(json!({"prompt": "[0-3s] one [2-5s] two"}));
    assert_eq!(
        overlapping,
        vec![
            json!({"loc": ["body", "prompt"], "type": "value_error", "ctx": {"error": "shot 2 [2-5s]: starts at 2s, before the previous shot ends at 3s (shots must be in increasing order and must not overlap)", "segment": 2}})
        ]
    );
    let out_of_range = errors(json!({"prompt": "[0-4s] one [4-6s] two"}));
    assert_eq!(out_of_range[0]["ctx"]["segment"], 2);
    assert!(
        out_of_range[0]["ctx"]["error"]
            .as_str()
            .unwrap()
            .contains("after the end of the 5s video")
    );
    assert!(
        validate(
            &json!({"prompt": "[0-4s] one [4-6s] two", "duration": "10"}),
            &ValidateOptions::default()
        )
        .is_ok()
    );
    let backwards = errors(json!({"prompt": "[3-1s] backwards"}));
    assert!(
        backwards[0]["ctx"]["error"]
            .as_str()
            .unwrap()
            .contains("not after its start")
    );
}

#[test]
fn several_errors_come_back_together() {
    let errs = errors(json!({
        "prompt": "Character4 [0-6s] too long",
        "image_urls": [URL, 3],
        "aspect_ratio": "2:1",
        "resolution": "8k",
        "seed": -5,
        "enable_audio": "loud",
    }));
    let kinds: Vec<&str> = errs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "string_type",
            "enum",
            "enum",
            "bool_type",
            "greater_than_equal",
            "value_error"
        ]
    );
    // The Character check is skipped while the reference list itself is broken, and the
    // shot bound is still checked against the (default) duration.
    assert!(
        errs[5]["ctx"]["error"]
            .as_str()
            .unwrap()
            .contains("after the end")
    );
}

#[test]
fn every_detail_links_to_its_docs() {
    let d = validate(
        &json!({"prompt": 1, "resolution": "x"}),
        &ValidateOptions::default(),
    )
    .unwrap_err();
    for detail in d {
        assert_eq!(detail.url, format!("/docs/errors#{}", detail.kind));
    }
}

mod no_panic {
    use super::*;
    use proptest::prelude::*;

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            "\\[[0-9 .s-]{0,10}\\][a-zA-Z0-9 ]{0,10}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..7).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("prompt".to_owned()),
                            Just("image_urls".to_owned()),
                            Just("video_urls".to_owned()),
                            Just("seed".to_owned()),
                            Just("duration".to_owned()),
                            Just("aspect_ratio".to_owned()),
                            Just("enable_audio".to_owned()),
                            ".{0,8}".prop_map(String::from)
                        ],
                        inner
                    ),
                    0..8
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn validate_never_panics(body in any_json(), local in any::<bool>()) {
            let _ = validate(&body, &ValidateOptions { allow_local_paths: local });
        }

        #[test]
        fn json_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = validate_json_bytes(&bytes, &ValidateOptions::default());
        }

        #[test]
        fn timeline_parser_never_panics(prompt in "([\\[\\]0-9.s -]|[a-zA-Z]|é|😀){0,80}", duration in prop::option::of(0.0f64..20.0)) {
            if let Ok(t) = r2v_api::prompt::parse_timeline(&prompt, duration) {
                for pair in t.segments.windows(2) {
                    prop_assert!(pair[0].end <= pair[1].start);
                }
            }
            let _ = r2v_api::prompt::character_tags(&prompt);
        }
    }
}

/// The OpenAPI schema (which the playground builds its form from) states the limits that
/// validation enforces, and the defaults that validation applies.
#[test]
fn the_documented_schema_states_the_validated_limits_and_defaults() {
    use r2v_api::input::{
        InputSchema, MAX_IMAGES, MAX_NEGATIVE_PROMPT_CHARS, MAX_PROMPT_CHARS, MAX_VIDEOS,
    };
    let schema = serde_json::to_value(<InputSchema as utoipa::PartialSchema>::schema()).unwrap();
    let properties = &schema["properties"];
    assert_eq!(properties["prompt"]["maxLength"], json!(MAX_PROMPT_CHARS));
    assert_eq!(properties["prompt"]["minLength"], json!(1));
    assert_eq!(
        properties["negative_prompt"]["maxLength"],
        json!(MAX_NEGATIVE_PROMPT_CHARS)
    );
    assert_eq!(properties["video_urls"]["maxItems"], json!(MAX_VIDEOS));
    assert_eq!(properties["image_urls"]["maxItems"], json!(MAX_IMAGES));
    let valid = validate(&json!({"prompt": "x"}), &ValidateOptions::default()).unwrap();
    let defaults = json!({
        "aspect_ratio": "16:9", "resolution": "1080p", "duration": "5", "negative_prompt": "",
        "enable_audio": valid.enable_audio, "enable_prompt_expansion": valid.enable_prompt_expansion,
        "multi_shots": valid.multi_shots, "enable_safety_checker": valid.enable_safety_checker,
    });
    for (name, default) in defaults.as_object().unwrap() {
        assert_eq!(&properties[name]["default"], default, "{name}");
    }
    assert_eq!(valid.aspect_ratio.as_str(), "16:9");
    assert_eq!(valid.resolution.as_str(), "1080p");
    assert_eq!(valid.duration.as_str(), "5");
    assert_eq!(valid.negative_prompt, "");
}
