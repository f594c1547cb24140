//! Convolution kernels: im2col + one GEMM per *group of images*, groups in parallel.
//!
//! One GEMM per image was slow for small images: an 8×8 image gives a `(576, 64)` column matrix,
//! and `matrixmultiply` repacked the weights and re-read the whole output block for every image
//! (the weight gradient summed 128 products of inner size 64). Here the columns of `B` images
//! sit side by side in one `(C·KH·KW, B·OH·OW)` matrix, so each layer costs a few large GEMMs.
//! `B` is chosen from the shapes alone (`ImageGroups`), never from the thread count, and every
//! output element is computed by one GEMM over its full inner dimension, so the bits do not
//! depend on the number of threads; the weight gradient adds one partial per group of images,
//! in group order.
//!
//! Layouts: input `(N, C, H, W)`, weight `(OC, C/G, KH, KW)`, output `(N, OC, OH, OW)`; `P` is
//! `OH·OW`, `K` is `C/G·KH·KW`, `G` the number of groups.

use super::gemm::{MatRef, gemm};
use super::im2col::{Window, col2im, im2col};
use super::transpose::transpose;
use crate::tensor::Float;
use rayon::prelude::*;

/// Columns a group of images aims for in the batched column matrix: enough that each GEMM is
/// large (its packing amortised), small enough that the matrix stays near the L2 cache.
/// Measured on `cnn_step` (CPU ms per step, one thread): 256 → 84, 512 → 84, 1024 → 88,
/// 2048 → 92, one image per GEMM → 106.
const TARGET_COLUMNS: usize = 512;

/// Everything the kernels need from the shapes.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub batch: usize,
    pub out_channels: usize,
    pub groups: usize,
    /// Sweep of one group's input channels over one image.
    pub window: Window,
}

/// How the batch is cut into groups of images, and the sizes that follow.
#[derive(Debug, Clone, Copy)]
struct ImageGroups {
    /// Images per group (the last group may hold fewer).
    images: usize,
    /// Elements of one input image, and of one group's channels of it.
    in_image: usize,
    in_group: usize,
    /// Elements of one output image.
    out_image: usize,
    /// `P`, `K` and output channels per group.
    pixels: usize,
    rows: usize,
    ocg: usize,
    /// A 1×1 kernel with unit stride and no padding reads the image itself as its columns.
    pointwise: bool,
}

impl ImageGroups {
    fn new(s: &ConvShape) -> Self {
        let w = &s.window;
        let pixels = w.col_cols();
        let in_group = w.channels * w.height * w.width;
        ImageGroups {
            images: TARGET_COLUMNS
                .div_ceil(pixels.max(1))
                .clamp(1, s.batch.max(1)),
            in_image: s.groups * in_group,
            in_group,
            out_image: s.out_channels * pixels,
            pixels,
            rows: w.col_rows(),
            ocg: s.out_channels / s.groups.max(1),
            pointwise: w.kernel == (1, 1) && w.stride == (1, 1) && w.padding == (0, 0),
        }
    }

    fn count(&self, batch: usize) -> usize {
        batch.div_ceil(self.images)
    }
}

/// Reusable buffers of one rayon job.
#[derive(Default)]
struct Scratch<T> {
    cols: Vec<T>,
    out: Vec<T>,
    dy: Vec<T>,
    dcols: Vec<T>,
    cols_t: Vec<T>,
    dy_t: Vec<T>,
}

/// The column matrix `(K, b·P)` of conv group `grp` of the `b` images in `xs` (borrowed when
/// it is the image itself).
fn columns<'a, T: Float>(
    xs: &'a [T],
    grp: usize,
    b: usize,
    s: &ConvShape,
    ig: &ImageGroups,
    buf: &'a mut Vec<T>,
) -> &'a [T] {
    if ig.pointwise && b == 1 {
        return &xs[grp * ig.in_group..(grp + 1) * ig.in_group];
    }
    let ld = b * ig.pixels;
    buf.resize(ig.rows * ld, T::ZERO);
    for i in 0..b {
        let image = &xs[i * ig.in_image + grp * ig.in_group..][..ig.in_group];
        im2col(image, &s.window, &mut buf[i * ig.pixels..], ld);
    }
    buf
}

/// The forward convolution `(N, OC, OH, OW)`, with the bias (when given) added as each output
/// row is written.
pub fn conv2d_fwd<T: Float>(x: &[T], weight: &[T], bias: Option<&[T]>, s: &ConvShape) -> Vec<T> {
    let ig = ImageGroups::new(s);
    let mut out = vec![T::ZERO; s.batch * ig.out_image];
    out.par_chunks_mut((ig.images * ig.out_image).max(1))
        .enumerate()
        .for_each_init(Scratch::default, |scratch, (gi, y)| {
            let b = y.len() / ig.out_image.max(1);
            let xs = &x[gi * ig.images * ig.in_image..][..b * ig.in_image];
            let Scratch { cols, out, .. } = scratch;
            for grp in 0..s.groups {
                let cols_m = columns(xs, grp, b, s, &ig, cols);
                let w_g = MatRef::new(
                    &weight[grp * ig.ocg * ig.rows..][..ig.ocg * ig.rows],
                    ig.ocg,
                    ig.rows,
                );
                let bias_g = bias.map(|bs| &bs[grp * ig.ocg..(grp + 1) * ig.ocg]);
                let n = b * ig.pixels;
                if b == 1 {
                    // (OC/G, K) · (K, P) → (OC/G, P), straight into the output image.
                    let y_g = &mut y[grp * ig.ocg * n..(grp + 1) * ig.ocg * n];
                    if let Some(bs) = bias_g {
                        for (row, &v) in y_g.chunks_mut(n.max(1)).zip(bs) {
                            row.fill(v);
                        }
                    }
                    gemm(w_g, MatRef::new(cols_m, ig.rows, n), y_g, bias_g.is_some());
                    continue;
                }
                // (OC/G, K) · (K, b·P) → (OC/G, b·P), then each image's rows to their place.
                out.resize(ig.ocg * n, T::ZERO);
                gemm(w_g, MatRef::new(cols_m, ig.rows, n), out, false);
                for (oc, row) in out.chunks(n).enumerate() {
                    let v = bias_g.map_or(T::ZERO, |bs| bs[oc]);
                    for (i, src) in row.chunks(ig.pixels).enumerate() {
                        let dst = &mut y[i * ig.out_image + (grp * ig.ocg + oc) * ig.pixels..]
                            [..ig.pixels];
                        if bias_g.is_some() {
                            for (d, &u) in dst.iter_mut().zip(src) {
                                *d = u + v;
                            }
                        } else {
                            dst.copy_from_slice(src);
                        }
                    }
                }
            }
        });
    out
}

/// `(dX, dW)` of the convolution, each only when asked for. `dX = col2im(Wᵀ·dY)`;
/// `dW = Σ_groups dY_g·cols_gᵀ`, one partial per group of images, added in group order.
pub fn conv2d_bwd<T: Float>(
    x: &[T],
    weight: &[T],
    dy: &[T],
    s: &ConvShape,
    need_input: bool,
    need_weight: bool,
) -> (Option<Vec<T>>, Option<Vec<T>>) {
    let ig = ImageGroups::new(s);
    let count = ig.count(s.batch);
    let mut dx = if need_input {
        vec![T::ZERO; x.len()]
    } else {
        Vec::new()
    };
    let dx_chunks: Vec<Option<&mut [T]>> = if need_input {
        dx.chunks_mut((ig.images * ig.in_image).max(1))
            .map(Some)
            .collect()
    } else {
        (0..count).map(|_| None).collect()
    };
    let partials: Vec<Vec<T>> = dx_chunks
        .into_par_iter()
        .enumerate()
        .map_init(Scratch::default, |scratch, (gi, dxc)| {
            let n0 = gi * ig.images;
            let b = ig.images.min(s.batch - n0);
            let xs = &x[n0 * ig.in_image..][..b * ig.in_image];
            let dys = &dy[n0 * ig.out_image..][..b * ig.out_image];
            backward_group(xs, weight, dys, b, s, &ig, dxc, need_weight, scratch)
        })
        .collect();
    let dw = need_weight.then(|| {
        let mut it = partials.into_iter();
        let mut dw = it.next().unwrap_or_else(|| vec![T::ZERO; weight.len()]);
        for p in it {
            super::simd::add_assign(&mut dw, &p);
        }
        dw
    });
    (need_input.then_some(dx), dw)
}

/// One group of `b` images: writes its input gradient into `dx` (when given) and returns its
/// weight-gradient partial (empty when not needed).
#[allow(clippy::too_many_arguments)]
fn backward_group<T: Float>(
    xs: &[T],
    weight: &[T],
    dys: &[T],
    b: usize,
    s: &ConvShape,
    ig: &ImageGroups,
    mut dx: Option<&mut [T]>,
    need_weight: bool,
    scratch: &mut Scratch<T>,
) -> Vec<T> {
    let n = b * ig.pixels;
    let mut dw = if need_weight {
        vec![T::ZERO; weight.len()]
    } else {
        Vec::new()
    };
    let Scratch {
        cols,
        dy,
        dcols,
        cols_t,
        dy_t,
        ..
    } = scratch;
    for grp in 0..s.groups {
        let w_g = MatRef::new(
            &weight[grp * ig.ocg * ig.rows..][..ig.ocg * ig.rows],
            ig.ocg,
            ig.rows,
        );
        if let Some(dx) = dx.as_deref_mut() {
            // dY of this conv group, (OC/G, b·P): the images' rows side by side.
            let dy_g: &[T] = if b == 1 {
                &dys[grp * ig.ocg * n..(grp + 1) * ig.ocg * n]
            } else {
                dy.resize(ig.ocg * n, T::ZERO);
                for (oc, row) in dy.chunks_mut(n).enumerate() {
                    for (i, dst) in row.chunks_mut(ig.pixels).enumerate() {
                        dst.copy_from_slice(
                            &dys[i * ig.out_image + (grp * ig.ocg + oc) * ig.pixels..][..ig.pixels],
                        );
                    }
                }
                dy
            };
            let dy_g = MatRef::new(dy_g, ig.ocg, n);
            if ig.pointwise && b == 1 {
                // (C/G, OC/G) · (OC/G, P): the column gradient is the image gradient.
                gemm(
                    w_g.t(),
                    dy_g,
                    &mut dx[grp * ig.in_group..(grp + 1) * ig.in_group],
                    false,
                );
            } else {
                // (K, OC/G) · (OC/G, b·P) → column gradient, folded back image by image.
                dcols.resize(ig.rows * n, T::ZERO);
                gemm(w_g.t(), dy_g, dcols, false);
                for i in 0..b {
                    let image = &mut dx[i * ig.in_image + grp * ig.in_group..][..ig.in_group];
                    col2im(&dcols[i * ig.pixels..], &s.window, image, n);
                }
            }
        }
        if need_weight {
            // Both factors pixel-major (see `transpose`): dYᵀ (b·P, OC/G) and colsᵀ (b·P, K).
            dy_t.resize(n * ig.ocg, T::ZERO);
            for i in 0..b {
                let src = &dys[i * ig.out_image + grp * ig.ocg * ig.pixels..];
                transpose(
                    src,
                    ig.pixels,
                    ig.ocg,
                    ig.pixels,
                    &mut dy_t[i * ig.pixels * ig.ocg..],
                    ig.ocg,
                );
            }
            // Image by image, so each column matrix is transposed while it is in cache.
            cols_t.resize(n * ig.rows, T::ZERO);
            for i in 0..b {
                let image = &xs[i * ig.in_image..];
                let cols_i = columns(image, grp, 1, s, ig, cols);
                let dst = &mut cols_t[i * ig.pixels * ig.rows..];
                transpose(cols_i, ig.pixels, ig.rows, ig.pixels, dst, ig.rows);
            }
            // (OC/G, b·P) · (b·P, K) → (OC/G, K)
            gemm(
                MatRef::new(dy_t, n, ig.ocg).t(),
                MatRef::new(cols_t, n, ig.rows),
                &mut dw[grp * ig.ocg * ig.rows..(grp + 1) * ig.ocg * ig.rows],
                false,
            );
        }
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Geometry of a test case: (N, C, H, W), (OC, KH, KW), stride, padding, dilation, groups.
    type Case = ([usize; 4], [usize; 3], usize, usize, usize, usize);

    fn shape(c: &Case) -> ConvShape {
        let ([n, ch, h, w], [oc, kh, kw], s, p, d, g) = *c;
        let out = |size: usize, k: usize| (size + 2 * p - d * (k - 1) - 1) / s + 1;
        ConvShape {
            batch: n,
            out_channels: oc,
            groups: g,
            window: Window {
                channels: ch / g,
                height: h,
                width: w,
                kernel: (kh, kw),
                stride: (s, s),
                padding: (p, p),
                dilation: (d, d),
                out_height: out(h, kh),
                out_width: out(w, kw),
            },
        }
    }

    /// Every tap of `y[n][o][oy][ox] = Σ x[n][c][iy][ix]·w[o][c'][ki][kj]` in a direct loop,
    /// calling `tap(x index, w index, y index)`.
    fn for_each_tap(s: &ConvShape, mut tap: impl FnMut(usize, usize, usize)) {
        let w = &s.window;
        let (cg, ocg) = (w.channels, s.out_channels / s.groups);
        for n in 0..s.batch {
            for o in 0..s.out_channels {
                let g = o / ocg;
                for oy in 0..w.out_height {
                    for ox in 0..w.out_width {
                        let yi = ((n * s.out_channels + o) * w.out_height + oy) * w.out_width + ox;
                        for c in 0..cg {
                            for ki in 0..w.kernel.0 {
                                for kj in 0..w.kernel.1 {
                                    let iy = (oy * w.stride.0 + ki * w.dilation.0) as isize
                                        - w.padding.0 as isize;
                                    let ix = (ox * w.stride.1 + kj * w.dilation.1) as isize
                                        - w.padding.1 as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy as usize >= w.height
                                        || ix as usize >= w.width
                                    {
                                        continue;
                                    }
                                    let ch = g * cg + c;
                                    let xi = ((n * s.groups * cg + ch) * w.height + iy as usize)
                                        * w.width
                                        + ix as usize;
                                    let wi = ((o * cg + c) * w.kernel.0 + ki) * w.kernel.1 + kj;
                                    tap(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn values(len: usize, seed: f64) -> Vec<f64> {
        (0..len)
            .map(|i| ((i as f64 + seed) * 0.731).sin())
            .collect()
    }

    fn max_diff(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    /// The batched kernels (several groups of images, a ragged last group, one image per
    /// GEMM, pointwise borrowed columns) against the direct loop, forward and both gradients.
    #[test]
    fn batched_kernels_match_the_direct_loop() {
        let cases: [Case; 7] = [
            // 3×3 "same": 13 images of 100 pixels make groups of 6, 6 and 1.
            ([13, 3, 10, 10], [4, 3, 3], 1, 1, 1, 1),
            // Stride, padding, dilation and two conv groups.
            ([7, 4, 9, 11], [6, 3, 3], 2, 2, 2, 2),
            // Non-square kernel, no padding.
            ([5, 2, 6, 7], [3, 2, 3], 1, 0, 1, 1),
            // Pointwise, several images per GEMM and one image per GEMM (576 pixels).
            ([9, 6, 5, 5], [4, 1, 1], 1, 0, 1, 2),
            ([3, 2, 24, 24], [3, 1, 1], 1, 0, 1, 1),
            // A big image (one per GEMM) with a 3×3 kernel.
            ([2, 2, 24, 30], [3, 3, 3], 1, 1, 1, 1),
            // 1×1 kernel with stride (not pointwise: goes through im2col).
            ([4, 3, 7, 7], [2, 1, 1], 2, 0, 1, 1),
        ];
        for case in &cases {
            let s = shape(case);
            let w = &s.window;
            let x = values(s.batch * s.groups * w.channels * w.height * w.width, 0.0);
            let weight = values(s.out_channels * w.col_rows(), 1.0);
            let bias = values(s.out_channels, 2.0);
            let out_len = s.batch * s.out_channels * w.col_cols();
            let dy = values(out_len, 3.0);
            let (mut y, mut dx, mut dw) = (
                vec![0.0; out_len],
                vec![0.0; x.len()],
                vec![0.0; weight.len()],
            );
            for (i, v) in y.iter_mut().enumerate() {
                *v = bias[(i / w.col_cols()) % s.out_channels];
            }
            for_each_tap(&s, |xi, wi, yi| {
                y[yi] += x[xi] * weight[wi];
                dx[xi] += dy[yi] * weight[wi];
                dw[wi] += dy[yi] * x[xi];
            });
            let got = conv2d_fwd(&x, &weight, Some(&bias), &s);
            let (got_dx, got_dw) = conv2d_bwd(&x, &weight, &dy, &s, true, true);
            // f64 sums of at most a few thousand O(1) products, in other orders.
            let tol = 1e-11;
            assert!(max_diff(&got, &y) < tol, "forward {case:?}");
            assert!(max_diff(&got_dx.unwrap(), &dx) < tol, "dx {case:?}");
            assert!(max_diff(&got_dw.unwrap(), &dw) < tol, "dw {case:?}");
            // Only the weight gradient (the first layer's case).
            let (none, only_dw) = conv2d_bwd(&x, &weight, &dy, &s, false, true);
            assert!(none.is_none());
            assert_eq!(
                only_dw.unwrap(),
                conv2d_bwd(&x, &weight, &dy, &s, true, true).1.unwrap()
            );
        }
    }
}
