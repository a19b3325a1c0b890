//! Pillow's 8-bit Lanczos resize (`Image.resize(size, Image.LANCZOS)`), bit for bit, and
//! diffusers' first step on a reference image: its sides floored to multiples of 8.
//!
//! diffusers' `VideoProcessor.preprocess(image, None, None)` (what `WanVACEPipeline` runs on
//! each reference) resizes an image whose sides are not multiples of the VAE factor (8) to
//! the sides floored to multiples of 8, with Pillow's Lanczos filter and no `reducing_gap`,
//! before the bilinear fit onto the canvas. Pillow (`libImaging/Resample.c`) resamples
//! separably: per output pixel, Lanczos-3 weights (support scaled by the downscale factor)
//! over the input pixels whose centres fall in `[center − support, center + support)`,
//! rounded, normalised, turned into 22-bit fixed point (rounded half away from zero) and
//! accumulated in `i32` from `1 << 21`, then shifted and clipped to `u8`. The first pass's
//! output is stored as `u8`, so the pass order matters. This follows Pillow 13 (the version
//! the fixture scripts pin): the vertical pass first when the height shrinks and
//! `2·(w − W) < h − H`, else the horizontal pass first (Pillow ≤ 12 always ran the
//! horizontal pass first, which gives other bytes for such sizes). No maintained crate
//! matches it: `fast_image_resize` uses 16-bit coefficients and the other order, `image`
//! computes in f32.

/// Fixed-point bits of Pillow's 8-bit coefficients.
const PRECISION_BITS: u32 = 22;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let y = x * std::f64::consts::PI;
        y.sin() / y
    }
}

fn lanczos(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Per output index: the first input index and the fixed-point weights.
fn coefficients(input: usize, output: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = 3.0 * filter_scale;
    let inv = 1.0 / filter_scale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C casts truncate toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let mut weights: Vec<f64> = (xmin..xmax)
                .map(|x| lanczos((x as f64 - center + 0.5) * inv))
                .collect();
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                for w in &mut weights {
                    *w /= total;
                }
            }
            let one = f64::from(1u32 << PRECISION_BITS);
            let fixed = weights
                .iter()
                .map(|&w| {
                    if w < 0.0 {
                        (-0.5 + w * one) as i32
                    } else {
                        (0.5 + w * one) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples rows: `width × height × 3` → `out_width × height × 3`.
fn horizontal(data: &[u8], width: usize, height: usize, out_width: usize) -> Vec<u8> {
    let coeffs = coefficients(width, out_width);
    let mut out = Vec::with_capacity(out_width * height * 3);
    for y in 0..height {
        let row = &data[y * width * 3..(y + 1) * width * 3];
        for (xmin, weights) in &coeffs {
            for c in 0..3 {
                let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                for (i, k) in weights.iter().enumerate() {
                    acc += i32::from(row[(xmin + i) * 3 + c]) * k;
                }
                out.push(clip8(acc));
            }
        }
    }
    out
}

/// Resamples columns: `width × height × 3` → `width × out_height × 3`.
fn vertical(data: &[u8], width: usize, height: usize, out_height: usize) -> Vec<u8> {
    let coeffs = coefficients(height, out_height);
    let mut out = Vec::with_capacity(width * out_height * 3);
    for (ymin, weights) in &coeffs {
        for x in 0..width {
            for c in 0..3 {
                let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                for (i, k) in weights.iter().enumerate() {
                    acc += i32::from(data[((ymin + i) * width + x) * 3 + c]) * k;
                }
                out.push(clip8(acc));
            }
        }
    }
    out
}

/// Pillow's `resize((out_width, out_height), LANCZOS)` of an RGB image (`width × height × 3`
/// bytes, rows first). Sides must be positive.
pub fn lanczos_rgb(
    data: &[u8],
    (width, height): (usize, usize),
    (out_width, out_height): (usize, usize),
) -> Vec<u8> {
    let need_h = out_width != width;
    let need_v = out_height != height;
    let vertical_first =
        out_height < height && 2 * width.saturating_sub(out_width) < height - out_height;
    match (need_h, need_v) {
        (false, false) => data.to_vec(),
        (true, false) => horizontal(data, width, height, out_width),
        (false, true) => vertical(data, width, height, out_height),
        (true, true) if vertical_first => {
            let tall = vertical(data, width, height, out_height);
            horizontal(&tall, width, out_height, out_width)
        }
        (true, true) => {
            let wide = horizontal(data, width, height, out_width);
            vertical(&wide, out_width, height, out_height)
        }
    }
}

/// diffusers' `VaeImageProcessor` resize for a reference: sides floored to multiples of
/// `multiple` with Pillow's Lanczos (unchanged when they already are). `None` when a side
/// would be 0 (Pillow refuses such a size).
pub fn floor_to_multiple(
    data: &[u8],
    (width, height): (usize, usize),
    multiple: usize,
) -> Option<(Vec<u8>, (usize, usize))> {
    let size = (width - width % multiple, height - height % multiple);
    if size.0 == 0 || size.1 == 0 {
        return None;
    }
    Some((lanczos_rgb(data, (width, height), size), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_normalised_fixed_point() {
        for (input, output) in [(21, 16), (43, 40), (5, 17), (1000, 8)] {
            for (xmin, weights) in coefficients(input, output) {
                let sum: i64 = weights.iter().map(|&k| i64::from(k)).sum();
                assert!((sum - (1 << 22)).abs() <= weights.len() as i64, "{sum}");
                assert!(xmin + weights.len() <= input);
            }
        }
    }

    #[test]
    fn flat_images_stay_flat_and_same_sizes_are_copies() {
        let flat = vec![77u8; 21 * 35 * 3];
        let out = lanczos_rgb(&flat, (21, 35), (16, 32));
        assert!(out.iter().all(|&v| v == 77));
        let noise: Vec<u8> = (0..16 * 8 * 3).map(|i| (i * 37 % 251) as u8).collect();
        assert_eq!(lanczos_rgb(&noise, (16, 8), (16, 8)), noise);
        assert!(floor_to_multiple(&noise, (16, 8), 8).is_some());
        assert!(floor_to_multiple(&noise[..7 * 8 * 3], (7, 8), 8).is_none());
    }
}
