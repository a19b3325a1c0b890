//! JSON Schemas of the lenient forms [`crate::validate`] accepts, for the OpenAPI
//! document: what a generated client or a schema-driven tester sends must be what the
//! validator takes, and nothing else. Each type here only names a schema.

use serde_json::json;
use utoipa::openapi::{RefOr, Schema};

/// A schema written as JSON (a constant of this module; it always parses).
fn schema(value: serde_json::Value) -> RefOr<Schema> {
    serde_json::from_value(value).expect("the schemas of wire_forms are valid")
}

/// Case-insensitive alternatives of a regular expression (ECMA-262 has no `(?i)`).
fn any_case(words: &[&str]) -> String {
    let alternatives: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        })
        .collect();
    alternatives.join("|")
}

/// A boolean in pydantic's lax form: `true`/`false`, `0`/`1`, or one of the strings
/// `true false yes no y n on off t f 1 0` in any case.
pub struct LaxBool;

impl utoipa::PartialSchema for LaxBool {
    fn schema() -> RefOr<Schema> {
        let words = [
            "true", "false", "yes", "no", "y", "n", "on", "off", "t", "f", "1", "0",
        ];
        schema(json!({
            "oneOf": [
                {"type": "boolean"},
                {"type": "integer", "enum": [0, 1]},
                {"type": "string", "pattern": format!("^({})$", any_case(&words))}
            ]
        }))
    }
}

impl utoipa::ToSchema for LaxBool {}

/// A reference file: an `http(s)://` URL or a `data:` URI (the scheme in any case).
pub struct ReferenceUrl;

impl utoipa::PartialSchema for ReferenceUrl {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "string",
            "pattern": format!("^({})", any_case(&["http://", "https://", "data:"]))
        }))
    }
}

impl utoipa::ToSchema for ReferenceUrl {}

/// `duration`: the strings `"5"` and `"10"`, or the integers 5 and 10.
pub struct LaxDuration;

impl utoipa::PartialSchema for LaxDuration {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "oneOf": [
                {"type": "string", "enum": ["5", "10"]},
                {"type": "integer", "enum": [5, 10]}
            ]
        }))
    }
}

impl utoipa::ToSchema for LaxDuration {}

/// `seed`: an integer from 0 to 2^63 − 1 (a number with no fraction counts, as in pydantic).
pub struct Seed;

impl utoipa::PartialSchema for Seed {
    fn schema() -> RefOr<Schema> {
        schema(json!({"type": "integer", "minimum": 0, "maximum": 9_223_372_036_854_775_807_u64}))
    }
}

impl utoipa::ToSchema for Seed {}

/// Any JSON value (an error's `input` echoes what was sent).
pub struct AnyValue;

impl utoipa::PartialSchema for AnyValue {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            utoipa::openapi::schema::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
                .build(),
        ))
    }
}

impl utoipa::ToSchema for AnyValue {}

/// The rule that spans two fields: at most 5 references of both kinds together.
pub fn reference_total_rule() -> serde_json::Value {
    let over = |videos: usize| {
        json!({
            "required": ["video_urls", "image_urls"],
            "properties": {
                "video_urls": {"type": "array", "minItems": videos},
                "image_urls": {"type": "array", "minItems": crate::input::MAX_REFERENCES + 1 - videos}
            }
        })
    };
    json!({"not": {"anyOf": (1..=crate::input::MAX_VIDEOS).map(over).collect::<Vec<_>>()}})
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    #[test]
    fn every_schema_parses() {
        for (name, f) in [
            ("LaxBool", super::LaxBool::schema as fn() -> _),
            ("ReferenceUrl", super::ReferenceUrl::schema),
            ("LaxDuration", super::LaxDuration::schema),
            ("Seed", super::Seed::schema),
            ("AnyValue", super::AnyValue::schema),
        ] {
            let schema = std::panic::catch_unwind(f);
            assert!(schema.is_ok(), "{name}");
        }
    }
}
