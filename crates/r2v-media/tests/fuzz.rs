//! Fuzz targets for what decodes untrusted bytes: `data:` URIs and reference images.
//!
//! Under `cargo test` (and so in CI) bolero runs each target on random inputs, a bounded
//! number of them; `cargo bolero test -p r2v-media --test fuzz TARGET` runs the same target
//! coverage-guided under libFuzzer (nightly).

use r2v_media::data_uri;
use r2v_media::image_check::{self, MAX_SIDE, MIN_SIDE};

/// Any text as a data URI: never a panic, and never more bytes than allowed.
#[test]
fn data_uris() {
    bolero::check!()
        .with_type::<(String, u16)>()
        .for_each(|(text, max)| {
            for uri in [text.clone(), format!("data:image/png;base64,{text}")] {
                if let Ok(decoded) = data_uri::decode(&uri, u64::from(*max)) {
                    assert!(decoded.bytes.len() <= usize::from(*max));
                }
            }
        });
}

/// Any bytes as a reference image: never a panic, and an accepted image is within the
/// side limits.
#[test]
fn reference_images() {
    bolero::check!().for_each(|bytes: &[u8]| {
        if let Ok(image) = image_check::check_and_decode(bytes) {
            assert!((MIN_SIDE..=MAX_SIDE).contains(&image.width()));
            assert!((MIN_SIDE..=MAX_SIDE).contains(&image.height()));
        }
    });
}
