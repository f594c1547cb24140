//! Max-pooling kernel for the common unpadded 2×2 window, vectorised with the runtime AVX2
//! dispatch of [`super::simd`].
//!
//! The general pooling loop clips the window bounds for every output and walks taps through
//! `(value, index)` pairs, which LLVM leaves scalar; it was a tenth of the `cnn_step` workload.
//! Here every window is whole and the four taps are compared as selects over whole rows, in the
//! general loop's order (row-major, strict `>` from −∞: the first maximum wins, NaN never
//! does), so values, ties and NaN handling are those of the general loop (tested in
//! `ops::pool`).

use super::simd::dispatch;
use crate::tensor::Float;

/// One output row of 2×2 windows whose top-left taps are `top[sx·ox]` (`bottom` is the input
/// row below): the maximum, and its offset `at0 + sx·ox + k` where k is 0, 1, `w` or `w + 1`.
#[inline(always)]
fn row_body<T: Float>(
    top: &[T],
    bottom: &[T],
    sx: usize,
    w: usize,
    at0: usize,
    out: &mut [T],
    arg: &mut [usize],
) {
    for (ox, (o, a)) in out.iter_mut().zip(arg.iter_mut()).enumerate() {
        let x = sx * ox;
        let (mut best, mut k) = (T::NEG_INFINITY, 0);
        for (v, kv) in [
            (top[x], 0),
            (top[x + 1], 1),
            (bottom[x], w),
            (bottom[x + 1], w + 1),
        ] {
            let take = v > best;
            best = if take { v } else { best };
            k = if take { kv } else { k };
        }
        *o = best;
        *a = at0 + x + k;
    }
}

/// The stride-2 case with its stride as a constant, so the loads become shuffles of whole
/// vectors.
#[inline(always)]
fn plane_body<T: Float>(
    plane: &[T],
    w: usize,
    stride: (usize, usize),
    ow: usize,
    base: usize,
    out: &mut [T],
    arg: &mut [usize],
) {
    for (oy, (o, a)) in out.chunks_mut(ow).zip(arg.chunks_mut(ow)).enumerate() {
        let y0 = oy * stride.0;
        let top = &plane[y0 * w..(y0 + 1) * w];
        let bottom = &plane[(y0 + 1) * w..(y0 + 2) * w];
        if stride.1 == 2 {
            row_body(top, bottom, 2, w, base + y0 * w, o, a);
        } else {
            row_body(top, bottom, stride.1, w, base + y0 * w, o, a);
        }
    }
}
dispatch!(fn plane_serial<T: Float>(plane: &[T], w: usize, stride: (usize, usize), ow: usize, base: usize, out: &mut [T], arg: &mut [usize]) => plane_body);

/// Max pooling of one `(H, W)` plane with 2×2 windows, no padding and stride `stride`
/// (rows, columns): `out` and `arg` hold `OH·OW` entries, `arg` the input offset (plus `base`,
/// the plane's offset in the whole input) of each window's first maximum.
pub fn max_pool_2x2<T: Float>(
    plane: &[T],
    w: usize,
    stride: (usize, usize),
    ow: usize,
    base: usize,
    out: &mut [T],
    arg: &mut [usize],
) {
    debug_assert_eq!(out.len(), arg.len());
    if ow == 0 {
        return;
    }
    plane_serial(plane, w, stride, ow, base, out, arg);
}
