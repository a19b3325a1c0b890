//! The safety checker's prompt policy (SPEC §4): the operator's list of blocked terms.
//! No output-frame classifier exists yet; the pipeline logs that when the checker is on.

use r2v_api::{ErrorDetail, RequestError, loc};
use serde_json::json;

/// The operator's prompt policy.
#[derive(Debug, Clone, Default)]
pub struct SafetyPolicy {
    /// Terms that may not appear in a prompt, matched case-insensitively as whole words.
    pub blocked_terms: Vec<String>,
}

impl SafetyPolicy {
    /// A `content_policy_violation` when `prompt` contains a blocked term.
    pub fn check_prompt(&self, prompt: &str) -> Result<(), RequestError> {
        let words: Vec<String> = prompt
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        for term in &self.blocked_terms {
            let term_words: Vec<String> = term.split_whitespace().map(str::to_lowercase).collect();
            if !term_words.is_empty()
                && words
                    .windows(term_words.len())
                    .any(|w| w == term_words.as_slice())
            {
                return Err(RequestError::ContentPolicy(Box::new(
                    ErrorDetail::new(
                        loc!["body", "prompt"],
                        "content_policy_violation",
                        "The prompt was flagged by the content policy",
                    )
                    .with_ctx(json!({ "policy": "prompt_terms" })),
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_only() {
        let policy = SafetyPolicy {
            blocked_terms: vec!["bad thing".into()],
        };
        assert!(policy.check_prompt("a BAD thing happens").is_err());
        assert!(policy.check_prompt("a badthing happens").is_ok());
    }
}
