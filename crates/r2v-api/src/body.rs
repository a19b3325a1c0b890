//! The request body as the contract reads it, parsed so that what a client sends cannot make
//! the server hold more than the contract needs.
//!
//! [`RequestBody::parse`] keeps the contract's fields ([`FIELDS`]) and skips every other key
//! while parsing (serde's `IgnoredAny`: nothing of it is allocated), so an unknown 50 MB field
//! costs the time to read it and nothing else, and is never stored. A reference list longer
//! than its limit keeps only its first items, with its length recorded for the error: a
//! million-item `image_urls` is one `sequence_too_long`, not a million values in memory and a
//! million errors. A body that is not an object keeps only a short description of itself.
//! [`RequestBody::input`] is what the server stores: the known fields as they came.

use crate::error::ErrorDetail;
use crate::input::{self, MAX_IMAGES, MAX_VIDEOS, ValidInput, ValidateOptions};
use crate::loc;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;

/// The input fields of SPEC §2; every other key of a body is ignored.
pub const FIELDS: [&str; 12] = [
    "prompt",
    "video_urls",
    "image_urls",
    "aspect_ratio",
    "resolution",
    "duration",
    "negative_prompt",
    "enable_prompt_expansion",
    "multi_shots",
    "enable_audio",
    "seed",
    "enable_safety_checker",
];

/// The list fields, and how many items each may have.
const LISTS: [(&str, usize); 2] = [("video_urls", MAX_VIDEOS), ("image_urls", MAX_IMAGES)];

/// A parsed request body.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBody {
    shape: Shape,
}

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    /// An object: its known fields, and the real length of every list that was cut short.
    Object {
        fields: Map<String, Value>,
        list_lengths: BTreeMap<&'static str, usize>,
    },
    /// Anything else, described briefly (echoed in the error).
    Other(Value),
}

impl RequestBody {
    /// Parses JSON bytes; malformed JSON is a `json_invalid` detail at its byte offset.
    pub fn parse(bytes: &[u8]) -> Result<Self, ErrorDetail> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let parsed = deserializer
            .deserialize_any(BodyVisitor)
            .and_then(|shape| deserializer.end().map(|()| shape));
        match parsed {
            Ok(shape) => Ok(Self { shape }),
            Err(e) => Err(ErrorDetail::new(
                loc!["body", byte_offset(bytes, e.line(), e.column())],
                "json_invalid",
                "JSON decode error",
            )
            .with_ctx(json!({ "error": e.to_string() }))),
        }
    }

    /// Checks every field rule of SPEC §2 (see [`input::validate`]).
    pub fn validate(&self, options: &ValidateOptions) -> Result<ValidInput, Vec<ErrorDetail>> {
        match &self.shape {
            Shape::Object {
                fields,
                list_lengths,
            } => input::validate_object(fields, list_lengths, options),
            Shape::Other(description) => input::validate(description, options),
        }
    }

    /// The known fields as they came: what is stored for a request.
    pub fn input(&self) -> Value {
        match &self.shape {
            Shape::Object { fields, .. } => Value::Object(fields.clone()),
            Shape::Other(description) => description.clone(),
        }
    }
}

fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = body
        .split(|&b| b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(body.len())
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut fields = Map::new();
        let mut list_lengths = BTreeMap::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let Some(&name) = FIELDS.iter().find(|f| **f == key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            match LISTS.iter().find(|(list, _)| *list == name) {
                Some(&(list, max)) => {
                    let (value, length) = map.next_value_seed(Bounded(max + 1))?;
                    match length {
                        Some(length) => list_lengths.insert(list, length),
                        None => list_lengths.remove(list),
                    };
                    fields.insert(name.to_owned(), value);
                }
                None => {
                    fields.insert(name.to_owned(), map.next_value::<Value>()?);
                }
            }
        }
        Ok(Shape::Object {
            fields,
            list_lengths,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut count = 0usize;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok(Shape::Other(json!(format!("[list of {count} items]"))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Shape, E> {
        let cut: String = v.chars().take(200).collect();
        Ok(Shape::Other(Value::String(cut)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Shape, E> {
        Ok(Shape::Other(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Shape, E> {
        Ok(Shape::Other(json!(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Shape, E> {
        Ok(Shape::Other(json!(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Shape, E> {
        Ok(Shape::Other(json!(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
        Ok(Shape::Other(Value::Null))
    }
}

/// A value kept whole, except a list: its first `keep` items, and its length when it had more.
struct Bounded(usize);

impl<'de> de::DeserializeSeed<'de> for Bounded {
    type Value = (Value, Option<usize>);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded {
    type Value = (Value, Option<usize>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kept = Vec::new();
        let mut count = 0usize;
        while count < self.0 {
            match seq.next_element::<Value>()? {
                Some(item) => kept.push(item),
                None => return Ok((Value::Array(kept), None)),
            }
            count += 1;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok((Value::Array(kept), Some(count)))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let value = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok((value, None))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((Value::String(v.to_owned()), None))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok((Value::Bool(v), None))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok((json!(v), None))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok((json!(v), None))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok((json!(v), None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((Value::Null, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_dropped_and_long_lists_cut() {
        let mut body = br#"{"prompt": "A cat.", "huge": ""#.to_vec();
        body.extend(std::iter::repeat_n(b'x', 1 << 20));
        body.extend(br#"", "image_urls": ["#);
        body.extend(
            (0..100_000)
                .map(|i| format!("{i},"))
                .collect::<String>()
                .as_bytes(),
        );
        body.extend(br#"0], "seed": 3}"#);
        let parsed = RequestBody::parse(&body).unwrap();
        let input = parsed.input();
        assert_eq!(input["seed"], 3);
        assert!(input.get("huge").is_none(), "unknown fields are not kept");
        assert_eq!(
            input["image_urls"].as_array().unwrap().len(),
            MAX_IMAGES + 1
        );
        let errors = parsed.validate(&ValidateOptions::default()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].kind, "sequence_too_long");
        assert_eq!(errors[0].ctx.as_ref().unwrap()["actual_length"], 100_001);
    }

    #[test]
    fn other_shapes_and_bad_json_are_the_usual_errors() {
        let errors = RequestBody::parse(b"[1, 2, 3]")
            .unwrap()
            .validate(&ValidateOptions::default())
            .unwrap_err();
        assert_eq!(errors[0].kind, "model_attributes_type");
        let detail = RequestBody::parse(b"{\"prompt\": \"x\",}").unwrap_err();
        assert_eq!(detail.kind, "json_invalid");
        let detail = RequestBody::parse(b"{} []").unwrap_err();
        assert_eq!(
            detail.kind, "json_invalid",
            "trailing data is malformed JSON"
        );
    }
}
