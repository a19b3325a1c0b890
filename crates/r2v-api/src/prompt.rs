//! The prompt grammar: `CharacterN` tags and `[a-bs]` multi-shot markers (SPEC §2,
//! "Prompt semantics").
//!
//! Both parsers are total: any string gives a result or a list of problems, never a
//! panic. Turning the parsed pieces into shots and rewritten text is `r2v-engine`'s job.

/// A `CharacterN` tag found in the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharacterTag {
    /// The tag's number; `u32::MAX` stands for a number too long to read.
    pub number: u32,
    /// Byte range of the whole tag in the prompt.
    pub span: std::ops::Range<usize>,
}

/// Every `CharacterN` tag in `prompt`, matched case-insensitively as a whole word, in order.
pub fn character_tags(prompt: &str) -> Vec<CharacterTag> {
    const WORD: &str = "character";
    let bytes = prompt.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut tags = Vec::new();
    let mut i = 0;
    while i + WORD.len() < bytes.len() {
        let starts_word = i == 0 || !is_word(bytes[i - 1]);
        if starts_word && bytes[i..i + WORD.len()].eq_ignore_ascii_case(WORD.as_bytes()) {
            let digits_start = i + WORD.len();
            let digits_end = digits_start
                + bytes[digits_start..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
            let ends_word = digits_end == bytes.len() || !is_word(bytes[digits_end]);
            if digits_end > digits_start && ends_word {
                let number = prompt[digits_start..digits_end].parse().unwrap_or(u32::MAX);
                tags.push(CharacterTag {
                    number,
                    span: i..digits_end,
                });
                i = digits_end;
                continue;
            }
        }
        i += 1;
    }
    tags
}

/// One timed segment of a multi-shot prompt: `[start-ends] text`.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start time in seconds.
    pub start: f64,
    /// End time in seconds.
    pub end: f64,
    /// The marker as written, e.g. `[0-3s]`.
    pub marker: String,
    /// The text after the marker up to the next one, trimmed.
    pub text: String,
}

/// A prompt split at its timing markers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Timeline {
    /// Text before the first marker (the whole prompt when there are no markers).
    pub preamble: String,
    /// The timed segments in the order written; empty when the prompt has no markers.
    pub segments: Vec<Segment>,
}

/// What is wrong with one segment of a timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineProblem {
    /// 1-based position of the segment.
    pub segment: usize,
    /// The marker as written.
    pub marker: String,
    /// What is wrong, as a sentence fragment.
    pub problem: String,
}

impl std::fmt::Display for TimelineProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shot {} {}: {}", self.segment, self.marker, self.problem)
    }
}

/// Splits `prompt` at its `[a-bs]` markers and checks that the segments are in
/// increasing order, do not overlap, have text, and end within `duration_s` (when known).
pub fn parse_timeline(
    prompt: &str,
    duration_s: Option<f64>,
) -> Result<Timeline, Vec<TimelineProblem>> {
    let markers = find_markers(prompt);
    let Some(first) = markers.first() else {
        return Ok(Timeline {
            preamble: prompt.trim().to_owned(),
            segments: Vec::new(),
        });
    };
    let preamble = prompt[..first.span.start].trim().to_owned();
    let mut segments = Vec::with_capacity(markers.len());
    for (k, marker) in markers.iter().enumerate() {
        let text_end = markers
            .get(k + 1)
            .map_or(prompt.len(), |next| next.span.start);
        segments.push(Segment {
            start: marker.start,
            end: marker.end,
            marker: prompt[marker.span.clone()].to_owned(),
            text: prompt[marker.span.end..text_end].trim().to_owned(),
        });
    }

    let mut problems = Vec::new();
    let mut previous_end: Option<f64> = None;
    for (k, seg) in segments.iter().enumerate() {
        let mut problem = |text: String| {
            problems.push(TimelineProblem {
                segment: k + 1,
                marker: seg.marker.clone(),
                problem: text,
            })
        };
        if seg.end <= seg.start {
            problem(format!(
                "ends at {}s, which is not after its start at {}s",
                seg.end, seg.start
            ));
        }
        if let Some(prev) = previous_end
            && seg.start < prev
        {
            problem(format!(
                "starts at {}s, before the previous shot ends at {}s (shots must be in increasing order and must not overlap)",
                seg.start, prev
            ));
        }
        if let Some(duration) = duration_s
            && seg.end > duration
        {
            problem(format!(
                "ends at {}s, after the end of the {}s video",
                seg.end, duration
            ));
        }
        if seg.text.is_empty() {
            problem("has no text".to_owned());
        }
        previous_end = Some(previous_end.map_or(seg.end, |p: f64| p.max(seg.end)));
    }
    if problems.is_empty() {
        Ok(Timeline { preamble, segments })
    } else {
        Err(problems)
    }
}

struct Marker {
    span: std::ops::Range<usize>,
    start: f64,
    end: f64,
}

/// Finds `[a-bs]`, `[a s - b s]` and `[as-bs]` markers; a bracket that is not a
/// marker is ordinary prompt text.
fn find_markers(prompt: &str) -> Vec<Marker> {
    let bytes = prompt.as_bytes();
    let mut markers = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'['
            && let Some((end, start_s, end_s)) = parse_marker(bytes, i + 1)
        {
            markers.push(Marker {
                span: i..end,
                start: start_s,
                end: end_s,
            });
            i = end;
            continue;
        }
        i += 1;
    }
    markers
}

/// Parses the inside of a marker starting after `[`; returns the index after `]`.
fn parse_marker(bytes: &[u8], mut i: usize) -> Option<(usize, f64, f64)> {
    let skip_spaces = |i: &mut usize| {
        while *i < bytes.len() && bytes[*i] == b' ' {
            *i += 1;
        }
    };
    skip_spaces(&mut i);
    let start = parse_seconds(bytes, &mut i)?;
    skip_spaces(&mut i);
    if bytes.get(i) == Some(&b's') {
        i += 1;
        skip_spaces(&mut i);
    }
    if bytes.get(i) != Some(&b'-') {
        return None;
    }
    i += 1;
    skip_spaces(&mut i);
    let end = parse_seconds(bytes, &mut i)?;
    skip_spaces(&mut i);
    if bytes.get(i) != Some(&b's') {
        return None;
    }
    i += 1;
    skip_spaces(&mut i);
    if bytes.get(i) != Some(&b']') {
        return None;
    }
    Some((i + 1, start, end))
}

/// Reads `12` or `1.5` (at most 6 digits before and 3 after the point).
fn parse_seconds(bytes: &[u8], i: &mut usize) -> Option<f64> {
    let begin = *i;
    let int_digits = bytes[begin..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if int_digits == 0 || int_digits > 6 {
        return None;
    }
    let mut end = begin + int_digits;
    if bytes.get(end) == Some(&b'.') {
        let frac = bytes[end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if frac == 0 || frac > 3 {
            return None;
        }
        end += 1 + frac;
    }
    *i = end;
    std::str::from_utf8(&bytes[begin..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_whole_words_and_case_insensitive() {
        let tags = character_tags(
            "character1 meets CHARACTER12, not xCharacter3 or Character4b; Character",
        );
        let numbers: Vec<u32> = tags.iter().map(|t| t.number).collect();
        assert_eq!(numbers, vec![1, 12]);
        assert_eq!(character_tags("Character99999999999")[0].number, u32::MAX);
    }

    #[test]
    fn timeline_splits_at_markers() {
        let t = parse_timeline(
            "Style: noir. [0-2.5s] Character1 walks. [2.5 - 5 s] She turns.",
            Some(5.0),
        )
        .unwrap();
        assert_eq!(t.preamble, "Style: noir.");
        assert_eq!(t.segments.len(), 2);
        assert_eq!((t.segments[1].start, t.segments[1].end), (2.5, 5.0));
        assert_eq!(t.segments[1].text, "She turns.");
        assert!(
            parse_timeline("a [link] and [1-2] are text", Some(5.0))
                .unwrap()
                .segments
                .is_empty()
        );
    }

    #[test]
    fn timeline_problems_name_the_segment() {
        let err = parse_timeline("[0-3s] a [2-4s] b [4-6s] c", Some(5.0)).unwrap_err();
        assert_eq!(err.len(), 2);
        assert_eq!(err[0].segment, 2);
        assert!(
            err[0].problem.contains("before the previous shot ends"),
            "{}",
            err[0]
        );
        assert_eq!(err[1].segment, 3);
        assert!(err[1].problem.contains("after the end of the 5s video"));
        let err = parse_timeline("[3-1s] backwards", None).unwrap_err();
        assert!(err[0].to_string().starts_with("shot 1 [3-1s]: ends at 1s"));
    }
}
