//! Reference images: format sniffed from the bytes, size and side limits, decoding
//! under `image::Limits`, EXIF orientation, and the alpha scan of SPEC §2.

use crate::error::MediaError;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use std::io::Cursor;

/// Largest accepted image file, in bytes (10 MiB).
pub const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;
/// Smallest accepted side, in pixels.
pub const MIN_SIDE: u32 = 240;
/// Largest accepted side, in pixels.
pub const MAX_SIDE: u32 = 5000;
/// Most memory the decoder may allocate.
const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;

/// Checks an untrusted image against every rule of SPEC §2 and returns its RGB pixels.
pub fn check_and_decode(bytes: &[u8]) -> Result<RgbImage, MediaError> {
    if bytes.len() as u64 > MAX_IMAGE_BYTES {
        return Err(MediaError::TooLarge {
            max_size: MAX_IMAGE_BYTES,
        });
    }
    let format = image::guess_format(bytes).map_err(|_| MediaError::UnsupportedImageFormat {
        found: "unknown (not an image)".to_owned(),
    })?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Bmp | ImageFormat::WebP
    ) {
        return Err(MediaError::UnsupportedImageFormat {
            found: format!("{format:?}").to_ascii_lowercase(),
        });
    }
    let load_error = |e: image::ImageError| MediaError::ImageLoad {
        reason: e.to_string(),
    };
    let reader = || ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader().into_dimensions().map_err(load_error)?;
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(MediaError::ImageTooSmall {
            width,
            height,
            min: MIN_SIDE,
        });
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(MediaError::ImageTooLarge {
            width,
            height,
            max: MAX_SIDE,
        });
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    let mut reader = reader();
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(load_error)?;
    let orientation = decoder.orientation().map_err(load_error)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(load_error)?;
    image.apply_orientation(orientation);

    if matches!(format, ImageFormat::Png | ImageFormat::WebP) && image.color().has_alpha() {
        let transparent_pixels = transparent_pixels(&image);
        if transparent_pixels > 0 {
            return Err(MediaError::ImageAlpha { transparent_pixels });
        }
    }
    // The decoded image and this copy are the most this check holds at once.
    Ok(image.into_rgb8())
}

/// The smallest 16-bit alpha that is opaque once in 8 bits (the image crate rounds with
/// `(a + 128) / 257`).
const OPAQUE_16: u16 = 65407;

/// Pixels whose alpha is below opaque in 8 bits, counted in the decoded buffer itself rather
/// than in an 8-bit RGBA copy of it.
fn transparent_pixels(image: &DynamicImage) -> u64 {
    let count = match image {
        DynamicImage::ImageLumaA8(i) => i.pixels().filter(|p| p.0[1] < u8::MAX).count(),
        DynamicImage::ImageRgba8(i) => i.pixels().filter(|p| p.0[3] < u8::MAX).count(),
        DynamicImage::ImageLumaA16(i) => i.pixels().filter(|p| p.0[1] < OPAQUE_16).count(),
        DynamicImage::ImageRgba16(i) => i.pixels().filter(|p| p.0[3] < OPAQUE_16).count(),
        other => other
            .to_rgba8()
            .pixels()
            .filter(|p| p.0[3] < u8::MAX)
            .count(),
    };
    count as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    fn png(image: DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn opaque_rgba_passes_and_transparent_rgba_fails() {
        let opaque = RgbaImage::from_pixel(300, 260, Rgba([10, 20, 30, 255]));
        let decoded = check_and_decode(&png(DynamicImage::ImageRgba8(opaque.clone()))).unwrap();
        assert_eq!(
            (decoded.width(), decoded.height(), decoded.get_pixel(5, 5).0),
            (300, 260, [10, 20, 30])
        );
        let mut transparent = opaque;
        transparent.put_pixel(3, 3, Rgba([0, 0, 0, 128]));
        let err = check_and_decode(&png(DynamicImage::ImageRgba8(transparent))).unwrap_err();
        assert!(
            matches!(
                err,
                MediaError::ImageAlpha {
                    transparent_pixels: 1
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn sixteen_bit_alpha_is_judged_as_its_8_bit_conversion() {
        // Alphas either side of the rounding edge, and the extremes.
        let alphas = [0u16, 1, 65406, 65407, 65534, 65535];
        let mut image = image::ImageBuffer::<Rgba<u16>, _>::from_pixel(
            alphas.len() as u32,
            1,
            Rgba([1000, 2000, 3000, 65535]),
        );
        for (x, a) in alphas.into_iter().enumerate() {
            image.put_pixel(x as u32, 0, Rgba([1000, 2000, 3000, a]));
        }
        for image in [
            DynamicImage::ImageRgba16(image.clone()),
            DynamicImage::ImageLumaA16(DynamicImage::ImageRgba16(image).to_luma_alpha16()),
        ] {
            let by_copy = image.to_rgba8().pixels().filter(|p| p.0[3] < 255).count() as u64;
            assert_eq!(transparent_pixels(&image), by_copy);
            assert_eq!(by_copy, 3);
        }
    }

    #[test]
    fn sides_are_checked_from_the_header() {
        let small = png(DynamicImage::new_rgb8(200, 200));
        assert!(matches!(
            check_and_decode(&small),
            Err(MediaError::ImageTooSmall { width: 200, .. })
        ));
        let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
        assert!(matches!(
            check_and_decode(gif),
            Err(MediaError::UnsupportedImageFormat { .. })
        ));
    }
}
