//! Prompt → umT5 context: Wan's text cleaning, the umt5-xxl tokenizer (the `tokenizers`
//! crate reading `tokenizer.json`), the encoder, and the zero padding to the context
//! length the DiT was trained with (512; MODEL.md §1.5).
//!
//! Cleaning is Wan's `prompt_clean`: `ftfy.fix_text`, `html.unescape` twice, strip,
//! collapse whitespace. [`clean_prompt`] does the parts of `ftfy.fix_text` that change
//! well-formed text (character width, ligatures, curly quotes, line breaks, control and
//! terminal-escape characters, NFC). It does not repair mojibake (text that was decoded
//! with the wrong codec), which ftfy also does; such prompts tokenise differently.

use crate::attention::Kernel;
use crate::umt5::{Umt5Config, Umt5Encoder};
use crate::weights::Weights;
use crate::{Precision, WanError};
use burn::prelude::*;
use std::path::Path;
use tokenizers::Tokenizer;
use unicode_normalization::UnicodeNormalization;

/// Wan's `prompt_clean`, with [`fix_text`] standing in for `ftfy.fix_text`.
pub fn clean_prompt(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped =
        html_escape::decode_html_entities(&html_escape::decode_html_entities(&fixed)).into_owned();
    unescaped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The subset of `ftfy.fix_text` that applies to well-formed Unicode.
pub fn fix_text(text: &str) -> String {
    let without_escapes = strip_terminal_escapes(text);
    let mut out = String::with_capacity(without_escapes.len());
    let mut chars = without_escapes.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\u{2028}' | '\u{2029}' | '\u{85}' => out.push('\n'),
            '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}' => out.push('\''),
            '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{201f}' => out.push('"'),
            '\u{3000}' => out.push(' '),
            '\u{fb00}'..='\u{fb06}'
            | '\u{0132}'
            | '\u{0133}'
            | '\u{013f}'
            | '\u{0140}'
            | '\u{01c4}'..='\u{01cc}'
            | '\u{01f1}'..='\u{01f3}' => out.extend(c.nfkc()),
            '\u{ff01}'..='\u{ffef}' => out.extend(c.nfkc()),
            c if is_removed_control(c) => {}
            c => out.push(c),
        }
    }
    out.nfc().collect()
}

/// `ftfy.fixes.remove_terminal_escapes`: ANSI `ESC [ … letter` sequences.
fn strip_terminal_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `ftfy.fixes.remove_control_chars`: controls with no visible meaning in text.
fn is_removed_control(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}'
        | '\u{206a}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffc}'
        | '\u{1d173}'..='\u{1d17a}' | '\u{e0000}'..='\u{e007f}')
}

/// The prompt encoder: tokenizer plus umT5, padded to `text_len` positions.
pub struct TextEncoder<B: Backend> {
    tokenizer: Tokenizer,
    encoder: Umt5Encoder<B>,
    text_len: usize,
}

impl<B: Backend> TextEncoder<B> {
    /// Loads `tokenizer.json` and the encoder from opened weights.
    pub fn load(
        tokenizer: &Path,
        config: Umt5Config,
        weights: Weights,
        text_len: usize,
        attention: Kernel,
        device: &B::Device,
    ) -> Result<Self, WanError> {
        let mut tokenizer = Tokenizer::from_file(tokenizer)
            .map_err(|e| WanError::Config(format!("{}: {e}", tokenizer.display())))?;
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: text_len,
                ..Default::default()
            }))
            .map_err(|e| WanError::Config(format!("tokenizer truncation: {e}")))?;
        tokenizer.with_padding(None);
        let encoder = Umt5Encoder::load(config, weights, device)?.with_attention(attention);
        Ok(Self {
            tokenizer,
            encoder,
            text_len,
        })
    }

    /// The cleaned prompt's token ids, `</s>` included, at most `text_len`.
    pub fn tokenize(&self, prompt: &str) -> Result<Vec<u32>, WanError> {
        let encoding = self
            .tokenizer
            .encode(clean_prompt(prompt), true)
            .map_err(|e| WanError::Shape(format!("tokenizer: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// `[1, text_len, d_model]`: the encoder's output for the real tokens, then zeros, as
    /// Wan and diffusers build it (running on the unpadded tokens gives the same rows).
    pub fn encode(&self, prompt: &str) -> Result<Tensor<B, 3>, WanError> {
        let ids = self.tokenize(prompt)?;
        let hidden = self.encoder.forward(&ids, &vec![true; ids.len()])?;
        let [_, len, dim] = hidden.dims();
        if len >= self.text_len {
            return Ok(hidden.narrow(1, 0, self.text_len));
        }
        let padding = Precision::of(&hidden).apply(Tensor::zeros(
            [1, self.text_len - len, dim],
            &hidden.device(),
        ));
        Ok(Tensor::cat(vec![hidden, padding], 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_follows_wan_prompt_clean() {
        assert_eq!(
            clean_prompt("  A\tcat &amp;amp; a   dog\r\n on “grass”  "),
            "A cat & a dog on \"grass\""
        );
        assert_eq!(clean_prompt("Ｃａｔ，１２３！"), "Cat,123!");
        assert_eq!(clean_prompt("of\u{fb01}ce\u{200b}"), "office\u{200b}");
        assert_eq!(clean_prompt("\u{1b}[31mred\u{1b}[0m\u{7}"), "red");
        assert_eq!(clean_prompt("cafe\u{301}"), "café");
        assert_eq!(clean_prompt("一只猫　在草地上"), "一只猫 在草地上");
    }
}
