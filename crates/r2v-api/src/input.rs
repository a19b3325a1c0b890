//! The request input: lenient JSON in, [`ValidInput`] out.
//!
//! [`validate`] walks the JSON body once and collects *every* problem into one list
//! (SPEC §2), with pydantic's `type`, `loc`, `msg` and `ctx` so that the official
//! clients surface them as they would from the hosted service. Unknown fields are
//! ignored, and `null` means "use the default" for every optional field. Checks that
//! need the bytes of a reference file are not here; see `r2v-media`'s `reference` module.

use crate::error::ErrorDetail;
use crate::loc;
use crate::prompt::{self, Timeline};
use crate::sizes::{AspectRatio, Duration, Resolution};
use crate::wire_forms;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Longest prompt, in Unicode scalar values.
pub const MAX_PROMPT_CHARS: usize = 1500;
/// Longest negative prompt, in Unicode scalar values.
pub const MAX_NEGATIVE_PROMPT_CHARS: usize = 500;
/// Most reference videos.
pub const MAX_VIDEOS: usize = 3;
/// Most reference images.
pub const MAX_IMAGES: usize = 5;
/// Most references of both kinds together.
pub const MAX_REFERENCES: usize = 5;
/// Exclusive upper bound of `seed` (2^63).
pub const SEED_LIMIT: u64 = 1 << 63;

/// The request body as the wire carries it: the schema of SPEC §2 for `/openapi.json`.
/// Requests are parsed leniently by [`validate`] (which reports every problem at once);
/// this type documents the shape, lenient forms included ([`crate::wire_forms`]: `null`
/// for any optional field, pydantic's lax booleans, whole-number seeds), and is not used
/// for parsing. At most 5 references of both kinds together.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct InputSchema {
    /// 1–1500 characters. Name references `Character1`…`Character5` (videos first, then
    /// images); `[0-3s] shot one. [3-5s] shot two.` makes a multi-shot video.
    #[schema(min_length = 1, max_length = 1500)]
    pub prompt: String,
    /// Up to 3 reference videos (mp4/mov, 1–30 s, ≥ 16 fps, ≤ 100 MiB): `http(s)` URLs or `data:` URIs.
    #[schema(max_items = 3, value_type = Option<Vec<wire_forms::ReferenceUrl>>)]
    pub video_urls: Option<Vec<String>>,
    /// Up to 5 reference images (JPEG/PNG/BMP/WEBP without transparency, 240–5000 px, ≤ 10 MiB);
    /// at most 5 references in all.
    #[schema(max_items = 5, value_type = Option<Vec<wire_forms::ReferenceUrl>>)]
    pub image_urls: Option<Vec<String>>,
    /// Output aspect ratio (default `16:9`).
    #[schema(default = "16:9")]
    pub aspect_ratio: Option<AspectRatio>,
    /// Output resolution (default `1080p`).
    #[schema(default = "1080p")]
    pub resolution: Option<Resolution>,
    /// Length in seconds (default `"5"`; the integers 5 and 10 are accepted too).
    #[schema(default = "5", value_type = Option<wire_forms::LaxDuration>)]
    pub duration: Option<Duration>,
    /// What to avoid, at most 500 characters.
    #[schema(max_length = 500, default = "")]
    pub negative_prompt: Option<String>,
    /// Rewrite the prompt; the result is returned as `actual_prompt` (default true).
    #[schema(default = true, value_type = Option<wire_forms::LaxBool>)]
    pub enable_prompt_expansion: Option<bool>,
    /// Let an unmarked prompt be split into shots; needs expansion (default true).
    #[schema(default = true, value_type = Option<wire_forms::LaxBool>)]
    pub multi_shots: Option<bool>,
    /// Add an AAC stereo 48 kHz track (default true).
    #[schema(default = true, value_type = Option<wire_forms::LaxBool>)]
    pub enable_audio: Option<bool>,
    /// 0 ≤ seed < 2^63; random when absent, and always returned.
    #[schema(value_type = Option<wire_forms::Seed>)]
    pub seed: Option<u64>,
    /// Check the prompt against the operator's policy (default true).
    #[schema(default = true, value_type = Option<wire_forms::LaxBool>)]
    pub enable_safety_checker: Option<bool>,
}

/// Where a reference file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceSource {
    /// An `http(s)` URL, fetched through the SSRF guard.
    Url(String),
    /// A `data:` URI carrying the file inline.
    DataUri(String),
    /// A local file; only accepted from the command line ([`ValidateOptions::allow_local_paths`]).
    LocalPath(PathBuf),
}

impl ReferenceSource {
    /// A short description for logs: the URL, the path, or the data URI's media type and size.
    pub fn describe(&self) -> String {
        match self {
            Self::Url(url) => url.clone(),
            Self::LocalPath(path) => path.display().to_string(),
            Self::DataUri(uri) => {
                let head = uri.split(',').next().unwrap_or("data:");
                format!("{head},… ({} bytes)", uri.len())
            }
        }
    }
}

/// Knobs that differ between the server and the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidateOptions {
    /// Accept plain file paths and `file://` URLs as references (the CLI does; the server never).
    pub allow_local_paths: bool,
}

/// An input that passed every field rule of SPEC §2. Downstream code takes only this.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidInput {
    /// The prompt as given.
    pub prompt: String,
    /// Reference videos; they are numbered first (Character1…).
    pub video_urls: Vec<ReferenceSource>,
    /// Reference images; numbered after the videos.
    pub image_urls: Vec<ReferenceSource>,
    /// Output aspect ratio.
    pub aspect_ratio: AspectRatio,
    /// Output resolution.
    pub resolution: Resolution,
    /// Output length.
    pub duration: Duration,
    /// Things the video should avoid.
    pub negative_prompt: String,
    /// Whether the prompt is rewritten (and `actual_prompt` returned).
    pub enable_prompt_expansion: bool,
    /// Whether an unmarked prompt may be split into shots (needs expansion).
    pub multi_shots: bool,
    /// Whether the output has an audio track.
    pub enable_audio: bool,
    /// The seed, when the client chose one.
    pub seed: Option<u64>,
    /// Whether the safety checker runs.
    pub enable_safety_checker: bool,
    /// The prompt split at its `[a-bs]` markers.
    pub timeline: Timeline,
}

impl ValidInput {
    /// Number of references of both kinds.
    pub fn reference_count(&self) -> usize {
        self.video_urls.len() + self.image_urls.len()
    }
}

/// Parses a request body and validates it; malformed JSON is a `json_invalid` detail. Only
/// the contract's fields are kept while parsing ([`crate::body::RequestBody`]).
pub fn validate_json_bytes(
    body: &[u8],
    options: &ValidateOptions,
) -> Result<ValidInput, Vec<ErrorDetail>> {
    crate::body::RequestBody::parse(body)
        .map_err(|detail| vec![detail])?
        .validate(options)
}

/// Most problems listed in one 422 body; a body with more lists these.
pub const MAX_ERRORS: usize = 32;

/// Checks every field rule of SPEC §2 and returns all problems together (at most
/// [`MAX_ERRORS`]).
pub fn validate(body: &Value, options: &ValidateOptions) -> Result<ValidInput, Vec<ErrorDetail>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![
            ErrorDetail::new(
                loc!["body"],
                "model_attributes_type",
                "Input should be a valid dictionary or object to extract fields from",
            )
            .with_input(truncated(body)),
        ]);
    };
    validate_object(obj, &BTreeMap::new(), options)
}

/// [`validate`] of an object whose lists in `list_lengths` were cut short while parsing (the
/// real lengths are given there).
pub(crate) fn validate_object(
    obj: &Map<String, Value>,
    list_lengths: &BTreeMap<&'static str, usize>,
    options: &ValidateOptions,
) -> Result<ValidInput, Vec<ErrorDetail>> {
    validate_fields(obj, list_lengths, options).map_err(|mut errors| {
        errors.truncate(MAX_ERRORS);
        errors
    })
}

/// Every field rule: the valid input, or the problems (not yet capped).
fn validate_fields(
    obj: &Map<String, Value>,
    list_lengths: &BTreeMap<&'static str, usize>,
    options: &ValidateOptions,
) -> Result<ValidInput, Vec<ErrorDetail>> {
    let mut errors = Vec::new();
    let mut fields = Fields {
        obj,
        list_lengths,
        errors: &mut errors,
    };

    let prompt = fields.string("prompt", Some(1), MAX_PROMPT_CHARS, None);
    let video_urls = fields.references("video_urls", MAX_VIDEOS, options);
    let image_urls = fields.references("image_urls", MAX_IMAGES, options);
    let aspect_ratio = fields.choice(
        "aspect_ratio",
        &AspectRatio::ALL,
        AspectRatio::as_str,
        AspectRatio::Landscape16x9,
    );
    let resolution = fields.choice(
        "resolution",
        &Resolution::ALL,
        Resolution::as_str,
        Resolution::P1080,
    );
    let duration = fields.duration();
    let negative_prompt =
        fields.string("negative_prompt", None, MAX_NEGATIVE_PROMPT_CHARS, Some(""));
    let enable_prompt_expansion = fields.boolean("enable_prompt_expansion", true);
    let multi_shots = fields.boolean("multi_shots", true);
    let enable_audio = fields.boolean("enable_audio", true);
    let seed = fields.seed();
    let enable_safety_checker = fields.boolean("enable_safety_checker", true);

    if let (Some(videos), Some(images)) = (&video_urls, &image_urls) {
        let total = videos.len() + images.len();
        if total > MAX_REFERENCES {
            errors.push(
                ErrorDetail::new(
                    loc!["body"],
                    "sequence_too_long",
                    format!(
                        "video_urls and image_urls together may hold at most {MAX_REFERENCES} references, got {} videos + {} images = {total}",
                        videos.len(),
                        images.len()
                    ),
                )
                .with_ctx(json!({ "max_length": MAX_REFERENCES, "actual_length": total })),
            );
        }
    }

    let mut timeline = None;
    if let Some(prompt) = &prompt {
        if let (Some(videos), Some(images)) = (&video_urls, &image_urls) {
            check_character_tags(prompt, videos.len() + images.len(), &mut errors);
        }
        let duration_s = duration.map(|d| f64::from(d.seconds()));
        match prompt::parse_timeline(prompt, duration_s) {
            Ok(t) => timeline = Some(t),
            Err(problems) => errors.extend(problems.into_iter().map(|p| {
                ErrorDetail::new(
                    loc!["body", "prompt"],
                    "value_error",
                    format!("Value error, {p}"),
                )
                .with_ctx(json!({ "error": p.to_string(), "segment": p.segment }))
            })),
        }
    }

    match (
        prompt,
        video_urls,
        image_urls,
        aspect_ratio,
        resolution,
        duration,
        negative_prompt,
        enable_prompt_expansion,
        multi_shots,
        enable_audio,
        seed,
        enable_safety_checker,
        timeline,
    ) {
        (
            Some(prompt),
            Some(video_urls),
            Some(image_urls),
            Some(aspect_ratio),
            Some(resolution),
            Some(duration),
            Some(negative_prompt),
            Some(enable_prompt_expansion),
            Some(multi_shots),
            Some(enable_audio),
            Some(seed),
            Some(enable_safety_checker),
            Some(timeline),
        ) if errors.is_empty() => Ok(ValidInput {
            prompt,
            video_urls,
            image_urls,
            aspect_ratio,
            resolution,
            duration,
            negative_prompt,
            enable_prompt_expansion,
            multi_shots,
            enable_audio,
            seed,
            enable_safety_checker,
            timeline,
        }),
        _ => Err(errors),
    }
}

fn check_character_tags(prompt: &str, references: usize, errors: &mut Vec<ErrorDetail>) {
    let mut reported = Vec::new();
    for tag in prompt::character_tags(prompt) {
        let n = tag.number as usize;
        if (n == 0 || n > references) && !reported.contains(&tag.number) {
            reported.push(tag.number);
            let written = &prompt[tag.span.clone()];
            let available = match references {
                0 => "no references were given".to_owned(),
                1 => "only 1 reference was given (Character1)".to_owned(),
                r => format!("only {r} references were given (Character1 to Character{r})"),
            };
            errors.push(
                ErrorDetail::new(
                    loc!["body", "prompt"],
                    "value_error",
                    format!("Value error, {written} has no reference behind it: {available}; references are numbered videos first, then images"),
                )
                .with_ctx(json!({ "tag": written, "references": references })),
            );
        }
    }
}

/// Reads typed fields out of the body object, recording problems as it goes.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    /// Real lengths of lists that were cut short while parsing.
    list_lengths: &'a BTreeMap<&'static str, usize>,
    errors: &'a mut Vec<ErrorDetail>,
}

impl<'a> Fields<'a> {
    /// The field's value, `None` when absent or `null`.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    fn type_error(&mut self, name: &str, kind: &str, msg: &str, value: &Value) {
        self.errors
            .push(ErrorDetail::new(loc!["body", name], kind, msg).with_input(truncated(value)));
    }

    fn string(
        &mut self,
        name: &str,
        min: Option<usize>,
        max: usize,
        default: Option<&str>,
    ) -> Option<String> {
        let Some(value) = self.get(name) else {
            return match default {
                Some(d) => Some(d.to_owned()),
                None => {
                    self.errors.push(
                        ErrorDetail::new(loc!["body", name], "missing", "Field required")
                            .with_input(json!(null)),
                    );
                    None
                }
            };
        };
        let Some(s) = value.as_str() else {
            self.type_error(
                name,
                "string_type",
                "Input should be a valid string",
                &value.clone(),
            );
            return None;
        };
        let chars = s.chars().count();
        if let Some(min) = min.filter(|&m| chars < m) {
            self.errors.push(
                ErrorDetail::new(
                    loc!["body", name],
                    "string_too_short",
                    format!("String should have at least {min} character{}", plural(min)),
                )
                .with_ctx(json!({ "min_length": min }))
                .with_input(json!(s)),
            );
            return None;
        }
        if chars > max {
            self.errors.push(
                ErrorDetail::new(
                    loc!["body", name],
                    "string_too_long",
                    format!("String should have at most {max} characters, got {chars}"),
                )
                .with_ctx(json!({ "max_length": max, "actual_length": chars })),
            );
            return None;
        }
        Some(s.to_owned())
    }

    fn references(
        &mut self,
        name: &str,
        max: usize,
        options: &ValidateOptions,
    ) -> Option<Vec<ReferenceSource>> {
        let Some(value) = self.get(name) else {
            return Some(Vec::new());
        };
        let Some(items) = value.as_array() else {
            self.type_error(
                name,
                "list_type",
                "Input should be a valid list",
                &value.clone(),
            );
            return None;
        };
        let length = self.list_lengths.get(name).copied().unwrap_or(items.len());
        if length > max {
            // The length is enough: the items of an over-long list are not looked at.
            self.errors.push(
                ErrorDetail::new(
                    loc!["body", name],
                    "sequence_too_long",
                    format!("List should have at most {max} items after validation, not {length}"),
                )
                .with_ctx(
                    json!({ "field_type": "List", "max_length": max, "actual_length": length }),
                ),
            );
            return None;
        }
        let mut ok = true;
        let mut sources = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Some(s) = item.as_str() else {
                ok = false;
                self.errors.push(
                    ErrorDetail::new(
                        loc!["body", name, i],
                        "string_type",
                        "Input should be a valid string",
                    )
                    .with_input(truncated(item)),
                );
                continue;
            };
            match reference_source(s, options) {
                Ok(source) => sources.push(source),
                Err(detail) => {
                    ok = false;
                    let mut detail = detail;
                    detail.loc = loc!["body", name, i];
                    self.errors.push(*detail);
                }
            }
        }
        ok.then_some(sources)
    }

    fn choice<T: Copy>(
        &mut self,
        name: &str,
        all: &[T],
        as_str: fn(T) -> &'static str,
        default: T,
    ) -> Option<T> {
        let Some(value) = self.get(name) else {
            return Some(default);
        };
        if let Some(found) = value
            .as_str()
            .and_then(|s| all.iter().copied().find(|&v| as_str(v) == s))
        {
            return Some(found);
        }
        let expected = expected_list(all.iter().map(|&v| as_str(v)));
        self.errors.push(
            ErrorDetail::new(
                loc!["body", name],
                "enum",
                format!("Input should be {expected}"),
            )
            .with_ctx(json!({ "expected": expected }))
            .with_input(truncated(value)),
        );
        None
    }

    fn duration(&mut self) -> Option<Duration> {
        // The wire type is an enum string, and the integers 5 and 10 are accepted too.
        if let Some(n) = self.get("duration").and_then(Value::as_u64) {
            return Duration::ALL
                .into_iter()
                .find(|d| u64::from(d.seconds()) == n)
                .or_else(|| {
                    self.choice("duration", &Duration::ALL, Duration::as_str, Duration::Five)
                });
        }
        self.choice("duration", &Duration::ALL, Duration::as_str, Duration::Five)
    }

    fn boolean(&mut self, name: &str, default: bool) -> Option<bool> {
        let Some(value) = self.get(name) else {
            return Some(default);
        };
        // pydantic's lax boolean parsing, so clients that send 1 or "true" still work.
        let parsed = match value {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_u64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "y" | "on" | "t" => Some(true),
                "false" | "0" | "no" | "n" | "off" | "f" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.type_error(
                name,
                "bool_type",
                "Input should be a valid boolean",
                &value.clone(),
            );
        }
        parsed
    }

    fn seed(&mut self) -> Option<Option<u64>> {
        let Some(value) = self.get("seed") else {
            return Some(None);
        };
        let value = value.clone();
        let Value::Number(n) = &value else {
            self.type_error(
                "seed",
                "int_type",
                "Input should be a valid integer",
                &value,
            );
            return None;
        };
        // A number with no fraction is an integer, as in pydantic's lax mode (2580.0).
        let whole = n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(64))
                .map(|f| f as u64)
        });
        if let Some(seed) = whole {
            if seed >= SEED_LIMIT {
                self.errors.push(
                    ErrorDetail::new(
                        loc!["body", "seed"],
                        "less_than",
                        format!("Input should be less than {SEED_LIMIT}"),
                    )
                    .with_ctx(json!({ "lt": SEED_LIMIT }))
                    .with_input(value),
                );
                return None;
            }
            return Some(Some(seed));
        }
        if n.as_i64().is_some() || n.as_f64().is_some_and(|f| f < 0.0) {
            self.errors.push(
                ErrorDetail::new(
                    loc!["body", "seed"],
                    "greater_than_equal",
                    "Input should be greater than or equal to 0",
                )
                .with_ctx(json!({ "ge": 0 }))
                .with_input(value),
            );
            return None;
        }
        self.type_error(
            "seed",
            "int_type",
            "Input should be a valid integer",
            &value,
        );
        None
    }
}

/// Classifies one reference string; the error's `loc` is filled in by the caller.
fn reference_source(
    s: &str,
    options: &ValidateOptions,
) -> Result<ReferenceSource, Box<ErrorDetail>> {
    let lower_prefix: String = s.chars().take(8).collect::<String>().to_ascii_lowercase();
    if lower_prefix.starts_with("http://") || lower_prefix.starts_with("https://") {
        return Ok(ReferenceSource::Url(s.to_owned()));
    }
    if lower_prefix.starts_with("data:") {
        return Ok(ReferenceSource::DataUri(s.to_owned()));
    }
    if options.allow_local_paths && !s.is_empty() {
        let path = s.strip_prefix("file://").unwrap_or(s);
        if !path.contains("://") {
            return Ok(ReferenceSource::LocalPath(PathBuf::from(path)));
        }
    }
    let expected = if options.allow_local_paths {
        "'http', 'https', 'data' or a local file path"
    } else {
        "'http', 'https' or 'data'"
    };
    Err(Box::new(
        ErrorDetail::new(
            Vec::new(),
            "url_scheme",
            format!("URL scheme should be {expected}"),
        )
        .with_ctx(json!({ "expected_schemes": expected }))
        .with_input(truncated(&Value::String(s.to_owned()))),
    ))
}

/// pydantic's way of listing choices: `'a', 'b' or 'c'`.
fn expected_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.map(|s| format!("'{s}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The offending input, shortened so that a huge data URI is not echoed back.
fn truncated(value: &Value) -> Value {
    const MAX: usize = 200;
    match value {
        Value::String(s) if s.len() > MAX => {
            let cut: String = s.chars().take(MAX).collect();
            Value::String(format!("{cut}…"))
        }
        Value::Array(a) if a.len() > 10 => json!(format!("[list of {} items]", a.len())),
        Value::Object(o) if o.len() > 10 => json!(format!("{{object with {} keys}}", o.len())),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_a_minimal_input() {
        let v = validate(&json!({"prompt": "a cat"}), &ValidateOptions::default()).unwrap();
        assert_eq!(v.aspect_ratio, AspectRatio::Landscape16x9);
        assert_eq!(v.resolution, Resolution::P1080);
        assert_eq!(v.duration, Duration::Five);
        assert!(v.enable_audio && v.enable_prompt_expansion && v.multi_shots);
        assert_eq!(v.seed, None);
    }

    #[test]
    fn local_paths_only_when_allowed() {
        let body = json!({"prompt": "x", "image_urls": ["examples/a.png"]});
        let err = validate(&body, &ValidateOptions::default()).unwrap_err();
        assert_eq!(err[0].kind, "url_scheme");
        let ok = validate(
            &body,
            &ValidateOptions {
                allow_local_paths: true,
            },
        )
        .unwrap();
        assert_eq!(
            ok.image_urls,
            vec![ReferenceSource::LocalPath("examples/a.png".into())]
        );
    }

    #[test]
    fn json_errors_point_at_the_byte() {
        let err = validate_json_bytes(b"{\"prompt\": }", &ValidateOptions::default()).unwrap_err();
        assert_eq!(err[0].kind, "json_invalid");
        assert_eq!(err[0].loc, loc!["body", 11]);
    }
}
