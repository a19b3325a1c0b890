//! The preview engine: a deterministic storyboard renderer. **It is not a neural
//! model**: it lays out the request's own references shot by shot and animates them
//! with pan, zoom and drift, so that every request gets a real, contract-correct mp4 in
//! seconds on any machine. It says so in the request log and on every frame.
//!
//! Each shot shows the characters its text names (all references when it names none),
//! tiled across the frame; shots meet with hard cuts. Every random choice comes from the
//! plan's seed, and the pixel math is the same on every run, so equal plans give equal
//! frames. Start at [`PreviewEngine::render`].

pub mod font;

use crate::engine::{Engine, EngineError, FrameSink, LogLevel, ReferenceMedia, RenderCtx};
use crate::plan::{Plan, Shot};
use image::RgbImage;
use rayon::prelude::*;

/// Text on every frame, so that nobody mistakes a preview for a generated video.
pub const WATERMARK: &str = "R2V PREVIEW - NOT A NEURAL MODEL";

/// The storyboard engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreviewEngine;

impl Engine for PreviewEngine {
    fn name(&self) -> &'static str {
        "preview"
    }

    fn describe(&self) -> String {
        "preview engine: a deterministic storyboard of the references (pan, zoom and cuts); \
         it is not a neural model and generates no new content"
            .to_owned()
    }

    fn render(
        &self,
        plan: &Plan,
        references: &[ReferenceMedia],
        ctx: &mut dyn RenderCtx,
        sink: &mut dyn FrameSink,
    ) -> Result<(), EngineError> {
        ctx.log(LogLevel::Warn, &self.describe());
        let mut frame = vec![0u8; plan.width as usize * plan.height as usize * 3];
        let placeholder = [ReferenceMedia::Image(placeholder(plan.seed))];
        let sources = if references.is_empty() {
            &placeholder[..]
        } else {
            references
        };
        for (k, shot) in plan.shots.iter().enumerate() {
            ctx.log(
                LogLevel::Info,
                &format!(
                    "shot {}/{}: frames {}-{}",
                    k + 1,
                    plan.shots.len(),
                    shot.start_frame,
                    shot.end_frame
                ),
            );
            let scene = Scene::new(plan, k, shot, sources);
            for f in shot.start_frame..shot.end_frame {
                if ctx.cancelled() {
                    return Err(EngineError::Cancelled);
                }
                let t = f64::from(f - shot.start_frame) / f64::from(plan.fps);
                scene.draw(&mut frame, t);
                sink.frame(&frame)?;
                ctx.progress("render", u64::from(f + 1), u64::from(plan.num_frames));
            }
        }
        Ok(())
    }
}

/// SplitMix64: a tiny, stable PRNG for layout choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where one subject sits in the frame and how its camera moves during the shot.
struct Tile<'a> {
    source: &'a ReferenceMedia,
    x0: u32,
    y0: u32,
    w: u32,
    h: u32,
    zoom: (f64, f64),
    pan: ((f64, f64), (f64, f64)),
    drift: (f64, f64),
}

/// One shot, ready to draw at any time `t` within it.
struct Scene<'a> {
    width: u32,
    height: u32,
    duration: f64,
    background: ([f64; 3], [f64; 3]),
    tiles: Vec<Tile<'a>>,
    label: String,
    caption: String,
}

impl<'a> Scene<'a> {
    fn new(plan: &Plan, index: usize, shot: &Shot, sources: &'a [ReferenceMedia]) -> Self {
        let mut rng = Rng(plan.seed ^ (index as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f));
        let subjects: Vec<&ReferenceMedia> = shot
            .characters
            .iter()
            .filter_map(|&n| sources.get(n as usize - 1))
            .collect();
        let subjects = if subjects.is_empty() {
            sources.iter().collect()
        } else {
            subjects
        };
        let cells = grid(plan.width, plan.height, subjects.len());
        let tiles = subjects
            .into_iter()
            .zip(cells)
            .map(|(source, (x0, y0, w, h))| {
                let z0 = rng.range(1.0, 1.15);
                let push = rng.range(0.08, 0.3)
                    * if rng.next().is_multiple_of(2) {
                        1.0
                    } else {
                        -0.6
                    };
                Tile {
                    source,
                    x0,
                    y0,
                    w,
                    h,
                    zoom: (z0, (z0 + push).max(1.0)),
                    pan: (
                        (rng.range(-0.06, 0.06), rng.range(-0.06, 0.06)),
                        (rng.range(-0.06, 0.06), rng.range(-0.06, 0.06)),
                    ),
                    drift: (rng.range(0.3, 0.9), rng.range(0.0, std::f64::consts::TAU)),
                }
            })
            .collect();
        let color = |rng: &mut Rng| {
            [
                rng.range(10.0, 70.0),
                rng.range(10.0, 70.0),
                rng.range(20.0, 90.0),
            ]
        };
        let background = (color(&mut rng), color(&mut rng));
        Self {
            width: plan.width,
            height: plan.height,
            duration: f64::from(shot.frames()) / f64::from(plan.fps),
            background,
            tiles,
            label: format!("SHOT {}/{}", index + 1, plan.shots.len()),
            caption: shot.text.clone(),
        }
    }

    fn draw(&self, frame: &mut [u8], t: f64) {
        let width = self.width as usize;
        let progress = if self.duration > 0.0 {
            (t / self.duration).clamp(0.0, 1.0)
        } else {
            0.0
        };
        // Ease in and out, so camera moves start and stop softly.
        let eased = progress * progress * (3.0 - 2.0 * progress);
        let cameras: Vec<Camera> = self
            .tiles
            .iter()
            .map(|tile| Camera::at(tile, eased, t))
            .collect();
        frame
            .par_chunks_mut(width * 3)
            .enumerate()
            .for_each(|(y, row)| {
                let y = y as u32;
                let mix = f64::from(y) / f64::from(self.height);
                let (top, bottom) = self.background;
                let bg: [u8; 3] =
                    std::array::from_fn(|c| (top[c] * (1.0 - mix) + bottom[c] * mix) as u8);
                for px in row.chunks_exact_mut(3) {
                    px.copy_from_slice(&bg);
                }
                for camera in cameras
                    .iter()
                    .filter(|c| y >= c.tile_y0 && y < c.tile_y0 + c.tile_h)
                {
                    camera.draw_row(row, y);
                }
            });
        let scale = (self.height / 270).max(1);
        let margin = scale * 4;
        font::draw_text(
            frame,
            self.width,
            margin,
            margin,
            scale,
            WATERMARK,
            [255, 214, 64],
        );
        let label_w = (self.label.len() as u32 * font::ADVANCE + 4) * scale;
        font::draw_text(
            frame,
            self.width,
            self.width.saturating_sub(label_w + margin),
            margin,
            scale,
            &self.label,
            [255, 255, 255],
        );
        let max_chars =
            ((self.width - 2 * margin) / (font::ADVANCE * scale)).saturating_sub(2) as usize;
        let caption: String = self.caption.chars().take(max_chars).collect();
        let caption_y = self.height - margin - (font::HEIGHT + 4) * scale;
        font::draw_text(
            frame,
            self.width,
            margin,
            caption_y,
            scale,
            &caption,
            [235, 235, 235],
        );
    }
}

/// A tile's camera at one instant: which part of which source frame fills the tile.
struct Camera<'a> {
    image: &'a RgbImage,
    tile_x0: u32,
    tile_y0: u32,
    tile_h: u32,
    /// Source pixels per tile pixel.
    step: f64,
    /// Source y of the tile's top row.
    origin_y: f64,
    /// For each tile column: the byte offsets of the two source columns and the
    /// weight of the right one in 1/256ths. Computed once per frame, used by every row.
    columns: Vec<(usize, usize, u32)>,
}

impl<'a> Camera<'a> {
    fn at(tile: &'a Tile<'a>, eased: f64, t: f64) -> Self {
        let image = tile.source.frame_at(t);
        let (sw, sh) = (f64::from(image.width()), f64::from(image.height()));
        let (tw, th) = (f64::from(tile.w), f64::from(tile.h));
        // "Cover" fit: the largest window of the tile's aspect inside the source, zoomed in.
        let zoom = tile.zoom.0 + (tile.zoom.1 - tile.zoom.0) * eased;
        let step = (sw / tw).min(sh / th) / zoom;
        let (win_w, win_h) = (tw * step, th * step);
        let wobble = (t * tile.drift.0 + tile.drift.1).sin() * 0.01;
        let pan_x = tile.pan.0.0 + (tile.pan.1.0 - tile.pan.0.0) * eased + wobble;
        let pan_y = tile.pan.0.1 + (tile.pan.1.1 - tile.pan.0.1) * eased - wobble;
        let cx = clamp_centre(sw / 2.0 + pan_x * sw, win_w, sw);
        let cy = clamp_centre(sh / 2.0 + pan_y * sh, win_h, sh);
        let origin_x = cx - win_w / 2.0;
        let last = image.width() as usize - 1;
        let columns = (0..tile.w)
            .map(|x| {
                let sx = (origin_x + (f64::from(x) + 0.5) * step - 0.5).clamp(0.0, last as f64);
                let x0 = sx as usize;
                let weight = ((sx - x0 as f64) * 256.0) as u32;
                (x0 * 3, (x0 + 1).min(last) * 3, weight)
            })
            .collect();
        Self {
            image,
            tile_x0: tile.x0,
            tile_y0: tile.y0,
            tile_h: tile.h,
            step,
            origin_y: cy - win_h / 2.0,
            columns,
        }
    }

    /// Bilinear-samples this camera's view into row `y` of the frame (8-bit fixed point).
    fn draw_row(&self, row: &mut [u8], y: u32) {
        let stride = self.image.width() as usize * 3;
        let last_row = self.image.height() as usize - 1;
        let src = self.image.as_raw();
        let sy = (self.origin_y + (f64::from(y - self.tile_y0) + 0.5) * self.step - 0.5)
            .clamp(0.0, last_row as f64);
        let y0 = sy as usize;
        let fy = ((sy - y0 as f64) * 256.0) as u32;
        let top = &src[y0 * stride..(y0 + 1) * stride];
        let bottom = &src[(y0 + 1).min(last_row) * stride..][..stride];
        let start = self.tile_x0 as usize * 3;
        let out = &mut row[start..start + self.columns.len() * 3];
        for (px, &(a, b, fx)) in out.chunks_exact_mut(3).zip(&self.columns) {
            for c in 0..3 {
                let t = u32::from(top[a + c]) * (256 - fx) + u32::from(top[b + c]) * fx;
                let u = u32::from(bottom[a + c]) * (256 - fx) + u32::from(bottom[b + c]) * fx;
                px[c] = ((t * (256 - fy) + u * fy + (1 << 15)) >> 16) as u8;
            }
        }
    }
}

/// Keeps a window of `window` around `centre` inside `0..extent`.
fn clamp_centre(centre: f64, window: f64, extent: f64) -> f64 {
    let (lo, hi) = (window / 2.0, extent - window / 2.0);
    if lo >= hi {
        extent / 2.0
    } else {
        centre.clamp(lo, hi)
    }
}

/// Splits the frame into `n` cells `(x, y, w, h)` with margins: rows of up to three
/// cells on landscape frames, two on square ones, one (then two) on portrait ones.
fn grid(width: u32, height: u32, n: usize) -> Vec<(u32, u32, u32, u32)> {
    let n = n.max(1);
    let per_row = if width * 5 > height * 6 {
        3
    } else if height * 5 > width * 6 {
        if n <= 3 { 1 } else { 2 }
    } else {
        2
    };
    let rows = n.div_ceil(per_row);
    let margin = width.min(height) / 40;
    let row_h = (height - margin * (rows as u32 + 1)) / rows as u32;
    let mut cells = Vec::with_capacity(n);
    for r in 0..rows {
        let in_row = if r + 1 == rows {
            n - per_row * (rows - 1)
        } else {
            per_row
        };
        let cell_w = (width - margin * (in_row as u32 + 1)) / in_row as u32;
        for c in 0..in_row {
            let x = margin + c as u32 * (cell_w + margin);
            let y = margin + r as u32 * (row_h + margin);
            cells.push((x, y, cell_w, row_h));
        }
    }
    cells
}

/// A seeded abstract image for requests without references.
fn placeholder(seed: u64) -> RgbImage {
    let mut rng = Rng(seed);
    let blobs: Vec<(f64, f64, f64, [f64; 3])> = (0..5)
        .map(|_| {
            (
                rng.range(0.1, 0.9),
                rng.range(0.1, 0.9),
                rng.range(0.1, 0.35),
                [
                    rng.range(60.0, 255.0),
                    rng.range(60.0, 255.0),
                    rng.range(60.0, 255.0),
                ],
            )
        })
        .collect();
    RgbImage::from_fn(512, 512, |x, y| {
        let (u, v) = (f64::from(x) / 512.0, f64::from(y) / 512.0);
        let mut rgb = [30.0 + 40.0 * v, 30.0, 50.0 + 40.0 * u];
        for &(bx, by, r, color) in &blobs {
            let d = ((u - bx).powi(2) + (v - by).powi(2)).sqrt();
            let a = (1.0 - d / r).clamp(0.0, 1.0);
            for c in 0..3 {
                rgb[c] = rgb[c] * (1.0 - a) + color[c] * a;
            }
        }
        image::Rgb(rgb.map(|c| c as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_cells_fit_and_do_not_overlap() {
        for (w, h) in [(1920, 1080), (1080, 1920), (960, 960)] {
            for n in 1..=5 {
                let cells = grid(w, h, n);
                assert_eq!(cells.len(), n);
                for (i, a) in cells.iter().enumerate() {
                    assert!(a.0 + a.2 <= w && a.1 + a.3 <= h, "{w}x{h} n={n} {a:?}");
                    for b in &cells[i + 1..] {
                        let apart = a.0 + a.2 <= b.0
                            || b.0 + b.2 <= a.0
                            || a.1 + a.3 <= b.1
                            || b.1 + b.3 <= a.1;
                        assert!(apart, "{a:?} overlaps {b:?}");
                    }
                }
            }
        }
    }
}
