//! Row reductions of the fused batch norm (`ops::norm`), compiled with the runtime AVX2
//! dispatch of [`super::simd`]: without it these loops ran as scalar SSE code and were a
//! twentieth of the `cnn_step` workload.
//!
//! Each keeps `LANES` independent accumulators (four 256-bit registers of f32), combined in a
//! fixed order, so the bits depend on the row alone, never on the thread count.

use super::simd::dispatch;
use crate::tensor::Float;

/// Accumulator lanes: enough independent add chains to hide the FMA latency.
const LANES: usize = 32;

fn fold<T: Float>(a: [T; LANES]) -> T {
    a.iter().fold(T::ZERO, |x, &y| x + y)
}

#[inline(always)]
fn centred_square_sum_body<T: Float>(x: &[T], m: T) -> T {
    let mut acc = [T::ZERO; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(T::ZERO, |a, &v| {
        let d = v - m;
        a + d * d
    });
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            let d = v - m;
            *a += d * d;
        }
    }
    fold(acc) + tail
}
dispatch!(pub fn centred_square_sum<T: Float>(x: &[T], m: T) -> T => centred_square_sum_body);

#[inline(always)]
fn sum_and_centred_dot_body<T: Float, G: Fn(T) -> bool>(
    dy: &[T],
    x: &[T],
    m: T,
    open: &G,
) -> (T, T) {
    let mut s = [T::ZERO; LANES];
    let mut p = [T::ZERO; LANES];
    let (dc, xc) = (dy.chunks_exact(LANES), x.chunks_exact(LANES));
    let (mut ts, mut tp) = (T::ZERO, T::ZERO);
    for (&d, &v) in dc.remainder().iter().zip(xc.remainder()) {
        let d = if open(v) { d } else { T::ZERO };
        ts += d;
        tp += d * (v - m);
    }
    for (d, v) in dc.zip(xc) {
        for j in 0..LANES {
            let dj = if open(v[j]) { d[j] } else { T::ZERO };
            s[j] += dj;
            p[j] += dj * (v[j] - m);
        }
    }
    (fold(s) + ts, fold(p) + tp)
}
// `(Σ dy, Σ dy·(x − m))` over the elements whose `x` passes `open` (a fused ReLU's mask;
// `|_| true` for plain batch norm, which the compiler folds away).
dispatch!(pub fn sum_and_centred_dot<T: Float, G: Fn(T) -> bool>(dy: &[T], x: &[T], m: T, open: &G) -> (T, T) => sum_and_centred_dot_body);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_match_plain_sums() {
        let x: Vec<f64> = (0..101).map(|i| (i as f64 * 0.37).sin()).collect();
        let dy: Vec<f64> = (0..101).map(|i| (i as f64 * 0.91).cos()).collect();
        let m = 0.25;
        let ss: f64 = x.iter().map(|v| (v - m) * (v - m)).sum();
        let (s, p) = sum_and_centred_dot(&dy, &x, m, &|_| true);
        // f64 sums of 101 O(1) terms in a different order.
        let tol = 1e-12;
        assert!((centred_square_sum(&x, m) - ss).abs() < tol);
        assert!((s - dy.iter().sum::<f64>()).abs() < tol);
        assert!((p - dy.iter().zip(&x).map(|(d, v)| d * (v - m)).sum::<f64>()).abs() < tol);
    }
}
