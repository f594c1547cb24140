//! The augmentation primitives, each on one item in place: images are `(C, H, W)` row-major
//! `f32` planes, vectors plain slices. Every random draw comes from the generator passed in.
//!
//! The random-geometry transforms follow torchvision's definitions (`RandomResizedCrop`,
//! `RandomErasing`, bilinear resizing with `align_corners = False`) so that recipes from the
//! literature carry over. Nothing clips values: noise added after a pixel drop must be able to
//! make pixels negative, as in the digits recipe.

use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};

/// The `(channels, height, width)` of an image item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageDims {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl ImageDims {
    pub fn numel(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// Moves the image content by `dy` rows down and `dx` columns right; vacated pixels become 0.
pub fn translate(img: &mut [f32], dims: ImageDims, dy: isize, dx: isize) {
    let ImageDims { c, h, w } = dims;
    let src = img.to_vec();
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = (y as isize - dy, x as isize - dx);
                let inside = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                img[(ch * h + y) * w + x] = if inside {
                    src[(ch * h + sy as usize) * w + sx as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

/// A random integer translation: `dy` and `dx` drawn independently and uniformly from
/// `-max_shift..=max_shift`, zero fill.
pub fn random_shift(img: &mut [f32], dims: ImageDims, max_shift: usize, rng: &mut impl Rng) {
    let m = max_shift as isize;
    let dy = rng.random_range(0..=2 * max_shift) as isize - m;
    let dx = rng.random_range(0..=2 * max_shift) as isize - m;
    translate(img, dims, dy, dx);
}

/// Mirrors every row (left ↔ right).
pub fn hflip(img: &mut [f32], dims: ImageDims) {
    img.chunks_mut(dims.w).for_each(|row| row.reverse());
}

/// Sets each value to zero independently with probability `p` (pixel dropout on images,
/// feature masking on vectors).
pub fn drop_values(values: &mut [f32], p: f32, rng: &mut impl Rng) {
    for v in values.iter_mut() {
        if rng.random::<f32>() < p {
            *v = 0.0;
        }
    }
}

/// Adds independent `N(0, sigma²)` noise to every value, without clipping.
pub fn gaussian_noise(values: &mut [f32], sigma: f32, rng: &mut impl Rng) {
    for v in values.iter_mut() {
        let e: f32 = StandardNormal.sample(rng);
        *v += sigma * e;
    }
}

/// Multiplies by a brightness factor `b ~ U[max(0, 1 − brightness), 1 + brightness]`, then
/// scales the deviation from the image mean by a contrast factor drawn the same way.
pub fn jitter(values: &mut [f32], brightness: f32, contrast: f32, rng: &mut impl Rng) {
    let b = uniform(((1.0 - brightness).max(0.0), 1.0 + brightness), rng);
    let c = uniform(((1.0 - contrast).max(0.0), 1.0 + contrast), rng);
    values.iter_mut().for_each(|v| *v *= b);
    let mean = values.iter().sum::<f32>() / values.len().max(1) as f32;
    values.iter_mut().for_each(|v| *v = (*v - mean) * c + mean);
}

/// Draws a box of `area_frac · H·W` pixels with aspect ratio (width / height) log-uniform in
/// `ratio`, as torchvision draws them: `(height, width)` rounded; the caller checks the fit.
fn draw_box(
    dims: ImageDims,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut impl Rng,
) -> (usize, usize) {
    let area = (dims.h * dims.w) as f32;
    let target = area * uniform(scale, rng);
    let aspect = uniform((ratio.0.ln(), ratio.1.ln()), rng).exp();
    let bw = (target * aspect).sqrt().round() as usize;
    let bh = (target / aspect).sqrt().round() as usize;
    (bh, bw)
}

fn uniform(range: (f32, f32), rng: &mut impl Rng) -> f32 {
    range.0 + (range.1 - range.0) * rng.random::<f32>()
}

/// torchvision's `RandomResizedCrop`: a box covering a fraction in `scale` of the area with
/// aspect ratio in `ratio` (10 tries, then a centre crop clamped to `ratio`), resampled
/// bilinearly to `out` = (height, width) in one interpolation; `out` may differ from the
/// image's own size (training views smaller than the images, for instance).
pub fn random_resized_crop(
    img: &[f32],
    dims: ImageDims,
    out: (usize, usize),
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut impl Rng,
) -> Vec<f32> {
    let (h, w) = (dims.h, dims.w);
    for _ in 0..10 {
        let (bh, bw) = draw_box(dims, scale, ratio, rng);
        if (1..=h).contains(&bh) && (1..=w).contains(&bw) {
            let top = rng.random_range(0..=h - bh);
            let left = rng.random_range(0..=w - bw);
            return crop_resize(img, dims, Region::new(top, left, bh, bw), out);
        }
    }
    let in_ratio = w as f32 / h as f32;
    let (bh, bw) = if in_ratio < ratio.0 {
        (((w as f32 / ratio.0).round() as usize).clamp(1, h), w)
    } else if in_ratio > ratio.1 {
        (h, ((h as f32 * ratio.1).round() as usize).clamp(1, w))
    } else {
        (h, w)
    };
    let centre = Region::new((h - bh) / 2, (w - bw) / 2, bh, bw);
    crop_resize(img, dims, centre, out)
}

/// A box of `h × w` pixels inside an image, its top-left corner at row `top`, column `left`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub top: usize,
    pub left: usize,
    pub h: usize,
    pub w: usize,
}

impl Region {
    pub fn new(top: usize, left: usize, h: usize, w: usize) -> Self {
        Region { top, left, h, w }
    }

    /// The whole image.
    pub fn all(dims: ImageDims) -> Self {
        Region::new(0, 0, dims.h, dims.w)
    }
}

/// Crops `region` (which must lie inside the image) and resizes it to `out` = (height, width)
/// with bilinear interpolation (pixel centres aligned as in `align_corners = False`); returns
/// the `(C, out.0, out.1)` image. Downscaling does not low-pass first (torchvision's tensor
/// resize without antialiasing).
pub fn crop_resize(img: &[f32], dims: ImageDims, region: Region, out: (usize, usize)) -> Vec<f32> {
    let ImageDims { c, h, w } = dims;
    let (out_h, out_w) = out;
    // For each output coordinate: the two source indices (within the box) and the weight of the
    // second.
    let taps = |n_out: usize, n_in: usize| -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|o| {
                let s = ((o as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5)
                    .clamp(0.0, (n_in - 1) as f32);
                let i0 = s.floor() as usize;
                (i0, (i0 + 1).min(n_in - 1), s - i0 as f32)
            })
            .collect()
    };
    let (ys, xs) = (taps(out_h, region.h), taps(out_w, region.w));
    let mut resized = Vec::with_capacity(c * out_h * out_w);
    for ch in 0..c {
        let at = |y: usize, x: usize| img[(ch * h + region.top + y) * w + region.left + x];
        for &(y0, y1, fy) in &ys {
            for &(x0, x1, fx) in &xs {
                let upper = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                let lower = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                resized.push(upper * (1.0 - fy) + lower * fy);
            }
        }
    }
    resized
}

/// torchvision's `RandomErasing` with value 0: with probability `p`, zeroes a box covering a
/// fraction in `scale` of the area with aspect ratio in `ratio`, in every channel (10 tries to
/// find a box that fits; none found leaves the image unchanged).
pub fn random_erase(
    img: &mut [f32],
    dims: ImageDims,
    p: f32,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut impl Rng,
) {
    if rng.random::<f32>() >= p {
        return;
    }
    let ImageDims { c, h, w } = dims;
    for _ in 0..10 {
        let (bh, bw) = draw_box(dims, scale, ratio, rng);
        if (1..h).contains(&bh) && (1..w).contains(&bw) {
            let top = rng.random_range(0..=h - bh);
            let left = rng.random_range(0..=w - bw);
            for ch in 0..c {
                for y in top..top + bh {
                    img[(ch * h + y) * w + left..(ch * h + y) * w + left + bw].fill(0.0);
                }
            }
            return;
        }
    }
}
