//! im2col / col2im: unfold the receptive fields of one image into the columns of a matrix so a
//! convolution becomes one GEMM, and fold column gradients back (summing overlaps). The column
//! matrix has a row stride `ld` of its own, so that the columns of several images can sit side
//! by side in one matrix (`ld = images · OH·OW`) and a whole group of images takes one GEMM.

/// The geometry of one 2-d convolution window sweep over one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub out_height: usize,
    pub out_width: usize,
}

impl Window {
    /// Rows of the column matrix: `channels · kh · kw`.
    pub fn col_rows(&self) -> usize {
        self.channels * self.kernel.0 * self.kernel.1
    }
    /// Columns of the column matrix: `out_height · out_width`.
    pub fn col_cols(&self) -> usize {
        self.out_height * self.out_width
    }

    /// For kernel offset `k` along one axis, the output positions whose input coordinate
    /// `o·stride + k·dilation − padding` lies inside `0..size`, as a half-open range.
    fn valid_outputs(
        k: usize,
        size: usize,
        out: usize,
        stride: usize,
        pad: usize,
        dil: usize,
    ) -> (usize, usize) {
        let shift = k * dil;
        // o·stride + shift ≥ pad  ⇔  o ≥ ceil((pad − shift)/stride)
        let lo = if shift >= pad {
            0
        } else {
            (pad - shift).div_ceil(stride)
        };
        // o·stride + shift − pad ≤ size − 1  ⇔  o ≤ (size − 1 + pad − shift)/stride
        let hi = if size + pad > shift {
            ((size - 1 + pad - shift) / stride + 1).min(out)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
}

/// A half-open range `(first, end)` of output positions.
type Span = (usize, usize);

impl Window {
    /// The valid output rows of each kernel row offset, and columns of each column offset
    /// (see `valid_outputs`): computed once per image, not once per channel.
    fn ranges(&self) -> (Vec<Span>, Vec<Span>) {
        let ys = (0..self.kernel.0)
            .map(|k| {
                Self::valid_outputs(
                    k,
                    self.height,
                    self.out_height,
                    self.stride.0,
                    self.padding.0,
                    self.dilation.0,
                )
            })
            .collect();
        let xs = (0..self.kernel.1)
            .map(|k| {
                Self::valid_outputs(
                    k,
                    self.width,
                    self.out_width,
                    self.stride.1,
                    self.padding.1,
                    self.dilation.1,
                )
            })
            .collect();
        (ys, xs)
    }

    /// Unit stride with output rows as wide as input rows (a "same" convolution): then the
    /// valid taps of one kernel offset are one contiguous run of the plane, shifted.
    fn is_same_width(&self) -> bool {
        self.stride == (1, 1) && self.out_width == self.width
    }
}

/// `image` (C, H, W) → `cols` (C·KH·KW, OH·OW), row `r` at `cols[r·ld..]` (`ld ≥ OH·OW`);
/// out-of-image taps are zero, and entries between `OH·OW` and `ld` in a row are untouched.
pub fn im2col<T: Copy + Default>(image: &[T], w: &Window, cols: &mut [T], ld: usize) {
    let (kh, kw) = w.kernel;
    let (oh, ow) = (w.out_height, w.out_width);
    debug_assert!(ld >= oh * ow);
    let (yr, xr) = w.ranges();
    let same = w.is_same_width();
    for c in 0..w.channels {
        let plane = &image[c * w.height * w.width..(c + 1) * w.height * w.width];
        for (ki, &(y0, y1)) in yr.iter().enumerate() {
            for (kj, &(x0, x1)) in xr.iter().enumerate() {
                let row = (c * kh + ki) * kw + kj;
                let dst = &mut cols[row * ld..row * ld + oh * ow];
                if y0 >= y1 || x0 >= x1 {
                    dst.fill(T::default());
                    continue;
                }
                if same {
                    // One copy of the run from the first valid tap to the last, then zeros
                    // over the taps that fell outside the image at the row ends.
                    let (lo, hi) = (y0 * ow + x0, (y1 - 1) * ow + x1);
                    let src0 = (y0 * w.stride.0 + ki * w.dilation.0 - w.padding.0) * w.width
                        + x0
                        + kj * w.dilation.1
                        - w.padding.1;
                    dst[lo..hi].copy_from_slice(&plane[src0..src0 + (hi - lo)]);
                    dst[..lo].fill(T::default());
                    dst[hi..].fill(T::default());
                    if x0 > 0 || x1 < ow {
                        for oy in y0..y1 {
                            let r = &mut dst[oy * ow..(oy + 1) * ow];
                            r[..x0].fill(T::default());
                            r[x1..].fill(T::default());
                        }
                    }
                    continue;
                }
                // Only the out-of-image taps are zeroed: every other entry is written once.
                dst[..y0 * ow].fill(T::default());
                dst[y1 * ow..].fill(T::default());
                for oy in y0..y1 {
                    let iy = oy * w.stride.0 + ki * w.dilation.0 - w.padding.0;
                    let src_row = &plane[iy * w.width..(iy + 1) * w.width];
                    let dst_row = &mut dst[oy * ow..(oy + 1) * ow];
                    dst_row[..x0].fill(T::default());
                    dst_row[x1..].fill(T::default());
                    if w.stride.1 == 1 {
                        let ix0 = x0 + kj * w.dilation.1 - w.padding.1;
                        dst_row[x0..x1].copy_from_slice(&src_row[ix0..ix0 + (x1 - x0)]);
                    } else {
                        for ox in x0..x1 {
                            dst_row[ox] =
                                src_row[ox * w.stride.1 + kj * w.dilation.1 - w.padding.1];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`] (same `ld`): adds each column entry back into the pixel it was
/// read from. `image` (C, H, W) must be zeroed (or hold a gradient to add to).
pub fn col2im<T: Copy + std::ops::AddAssign>(cols: &[T], w: &Window, image: &mut [T], ld: usize) {
    let (kh, kw) = w.kernel;
    let (oh, ow) = (w.out_height, w.out_width);
    let (yr, xr) = w.ranges();
    for c in 0..w.channels {
        let plane = &mut image[c * w.height * w.width..(c + 1) * w.height * w.width];
        for (ki, &(y0, y1)) in yr.iter().enumerate() {
            for (kj, &(x0, x1)) in xr.iter().enumerate() {
                let row = (c * kh + ki) * kw + kj;
                let src = &cols[row * ld..row * ld + oh * ow];
                for oy in y0..y1 {
                    let iy = oy * w.stride.0 + ki * w.dilation.0 - w.padding.0;
                    let dst_row = &mut plane[iy * w.width..(iy + 1) * w.width];
                    let src_row = &src[oy * ow..(oy + 1) * ow];
                    if w.stride.1 == 1 {
                        // Contiguous on both sides: a loop LLVM vectorises.
                        let ix0 = x0 + kj * w.dilation.1 - w.padding.1;
                        let dst = &mut dst_row[ix0..ix0 + (x1 - x0)];
                        for (d, &v) in dst.iter_mut().zip(&src_row[x0..x1]) {
                            *d += v;
                        }
                    } else {
                        for ox in x0..x1 {
                            dst_row[ox * w.stride.1 + kj * w.dilation.1 - w.padding.1] +=
                                src_row[ox];
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(h: usize, w: usize, k: usize, s: usize, p: usize, d: usize) -> Window {
        let eff = d * (k - 1) + 1;
        Window {
            channels: 2,
            height: h,
            width: w,
            kernel: (k, k),
            stride: (s, s),
            padding: (p, p),
            dilation: (d, d),
            out_height: (h + 2 * p - eff) / s + 1,
            out_width: (w + 2 * p - eff) / s + 1,
        }
    }

    /// Reference: read every tap with explicit bounds checks.
    fn naive_im2col(image: &[f64], w: &Window) -> Vec<f64> {
        let mut cols = vec![0.0; w.col_rows() * w.col_cols()];
        for c in 0..w.channels {
            for ki in 0..w.kernel.0 {
                for kj in 0..w.kernel.1 {
                    let row = (c * w.kernel.0 + ki) * w.kernel.1 + kj;
                    for oy in 0..w.out_height {
                        for ox in 0..w.out_width {
                            let iy = (oy * w.stride.0 + ki * w.dilation.0) as isize
                                - w.padding.0 as isize;
                            let ix = (ox * w.stride.1 + kj * w.dilation.1) as isize
                                - w.padding.1 as isize;
                            if iy >= 0
                                && ix >= 0
                                && (iy as usize) < w.height
                                && (ix as usize) < w.width
                            {
                                cols[row * w.col_cols() + oy * w.out_width + ox] =
                                    image[(c * w.height + iy as usize) * w.width + ix as usize];
                            }
                        }
                    }
                }
            }
        }
        cols
    }

    #[test]
    fn im2col_matches_naive_and_col2im_is_its_adjoint() {
        for &(h, wd, k, s, p, d) in &[
            (5, 6, 3, 1, 1, 1),
            (7, 5, 3, 2, 2, 1),
            (6, 6, 2, 3, 0, 2),
            (4, 4, 3, 1, 3, 2),
            // "Same" convolutions (one shifted run per kernel offset): dilated, narrow, flat.
            (6, 7, 3, 1, 2, 2),
            (3, 2, 3, 1, 1, 1),
            (1, 5, 3, 1, 1, 1),
        ] {
            let w = window(h, wd, k, s, p, d);
            let (rows, n) = (w.col_rows(), w.col_cols());
            let image: Vec<f64> = (0..2 * h * wd).map(|i| (i as f64 * 0.37).sin()).collect();
            let expected = naive_im2col(&image, &w);
            // A dense matrix (ld = OH·OW) and one with 3 foreign columns after each row.
            for ld in [n, n + 3] {
                let mut cols = vec![f64::NAN; rows * ld];
                im2col(&image, &w, &mut cols, ld);
                for r in 0..rows {
                    let row = &cols[r * ld..(r + 1) * ld];
                    assert_eq!(
                        row[..n],
                        expected[r * n..(r + 1) * n],
                        "{h}x{wd} k{k} s{s} p{p} d{d}"
                    );
                    assert!(
                        row[n..].iter().all(|v| v.is_nan()),
                        "wrote outside the columns"
                    );
                }
                // ⟨im2col(x), y⟩ = ⟨x, col2im(y)⟩, y zero in the foreign columns
                let y: Vec<f64> = (0..cols.len())
                    .map(|i| {
                        if i % ld < n {
                            (i as f64 * 0.11).cos()
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let mut back = vec![0.0; image.len()];
                col2im(&y, &w, &mut back, ld);
                let lhs: f64 = expected
                    .iter()
                    .enumerate()
                    .map(|(i, a)| a * y[(i / n) * ld + i % n])
                    .sum();
                let rhs: f64 = image.iter().zip(&back).map(|(a, b)| a * b).sum();
                // Two f64 sums of a few hundred O(1) products in different orders.
                assert!((lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0));
            }
        }
    }
}
