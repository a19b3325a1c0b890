//! `data:` URI decoding (RFC 2397, base64 form only) with a size cap checked before
//! any decoding work.

use crate::error::MediaError;
use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

const STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A decoded `data:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataUri {
    /// The declared media type, e.g. `image/png` (may be empty).
    pub media_type: String,
    /// The decoded bytes.
    pub bytes: Vec<u8>,
}

/// Decodes `data:<media type>;base64,<payload>`; payloads that would decode to more
/// than `max_bytes` are refused before decoding.
pub fn decode(uri: &str, max_bytes: u64) -> Result<DataUri, MediaError> {
    let malformed = |reason: &str| MediaError::DataUri {
        reason: reason.to_owned(),
    };
    let rest = uri
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("data:"))
        .map(|_| &uri[5..])
        .ok_or_else(|| malformed("it does not start with `data:`"))?;
    let (header, payload) = rest
        .split_once(',')
        .ok_or_else(|| malformed("there is no `,` between the header and the data"))?;
    let mut params = header.split(';');
    let media_type = params
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !params.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
        return Err(malformed(
            "only base64 data URIs (`data:<type>;base64,<data>`) are supported",
        ));
    }
    let payload: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if payload.len() as u64 / 4 * 3 > max_bytes.saturating_add(3) {
        return Err(MediaError::TooLarge {
            max_size: max_bytes,
        });
    }
    let bytes = STANDARD
        .decode(payload.as_bytes())
        .or_else(|_| general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')))
        .map_err(|e| MediaError::DataUri {
            reason: format!("the base64 data is invalid ({e})"),
        })?;
    if bytes.len() as u64 > max_bytes {
        return Err(MediaError::TooLarge {
            max_size: max_bytes,
        });
    }
    if bytes.is_empty() {
        return Err(malformed("it holds no data"));
    }
    Ok(DataUri { media_type, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64_with_or_without_padding() {
        let d = decode("data:image/png;base64,aGVsbG8=", 100).unwrap();
        assert_eq!(
            (d.media_type.as_str(), d.bytes.as_slice()),
            ("image/png", &b"hello"[..])
        );
        assert_eq!(decode("DATA:;base64,aGVsbG8", 100).unwrap().bytes, b"hello");
    }

    #[test]
    fn malformed_uris_say_why() {
        let cases = [
            ("data:image/png;base64", "no `,`"),
            ("data:image/png,hello", "only base64"),
            ("data:image/png;base64,@@@@", "base64 data is invalid"),
            ("data:image/png;base64,", "holds no data"),
        ];
        for (uri, expected) in cases {
            let err = decode(uri, 100).unwrap_err().to_string();
            assert!(err.contains(expected), "{uri}: {err}");
        }
        assert!(matches!(
            decode("data:;base64,aGVsbG8gd29ybGQ=", 4),
            Err(MediaError::TooLarge { max_size: 4 })
        ));
    }
}
