//! Elementwise maps and reductions, vectorised at run time.
//!
//! Each kernel body is plain Rust written so that LLVM vectorises it (independent lanes, an
//! explicit 16-wide accumulator for reductions so no float reassociation is needed). The body is
//! compiled twice: once for the baseline target and once inside a
//! `#[target_feature(enable = "avx2,fma")]` function, chosen per call by
//! `is_x86_feature_detected!`. A plain `cargo build --release` therefore runs 256-bit AVX2 code
//! on processors that have it, and the same binary still runs on ones that do not. Set
//! `CONTRASTIVE_SIMD=portable` to force the baseline path (to compare the two).
//!
//! Why not `wide`: it picks its instruction set when it is compiled (`cfg(target_feature)`), so
//! without `-C target-cpu` its 8-lane types lower to pairs of SSE registers even inside an AVX2
//! function; runtime dispatch needs code the compiler can re-target, which these loops are.
//!
//! The f32 `exp` (a polynomial with an AVX2 intrinsic path) lives in the [`exp`] submodule.

use super::CHUNK;
use crate::tensor::Float;
use rayon::prelude::*;
use std::sync::OnceLock;

/// Width of the accumulators in reductions: two AVX2 registers of f32, four of f64.
const LANES: usize = 16;

/// True when the AVX2+FMA versions of the kernels run on this processor.
pub fn has_avx2_fma() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        let forced_off = std::env::var("CONTRASTIVE_SIMD").is_ok_and(|v| v == "portable");
        #[cfg(target_arch = "x86_64")]
        {
            !forced_off && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = forced_off;
            false
        }
    })
}

/// The instruction set the elementwise kernels use: `"avx2+fma"` or `"portable"`.
pub fn simd_level() -> &'static str {
    if has_avx2_fma() {
        "avx2+fma"
    } else {
        "portable"
    }
}

/// Defines `$name` as a runtime dispatcher over `$body`: the AVX2+FMA compilation where the
/// processor supports it, the baseline one elsewhere.
macro_rules! dispatch {
    ($vis:vis fn $name:ident<$($g:ident: $b:path),*>($($a:ident: $t:ty),*) $(-> $r:ty)? => $body:ident) => {
        #[inline]
        $vis fn $name<$($g: $b),*>($($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast<$($g: $b),*>($($a: $t),*) $(-> $r)? {
                    $body($($a),*)
                }
                if $crate::backend::cpu::simd::has_avx2_fma() {
                    // SAFETY: `fast` only requires AVX2 and FMA, which were detected at run
                    // time just above; its body is safe Rust.
                    return unsafe { fast($($a),*) };
                }
            }
            $body($($a),*)
        }
    };
}
/// For the other kernel files of this folder.
pub(crate) use dispatch;

#[inline(always)]
fn map_body<T: Float, F: Fn(T) -> T>(x: &[T], out: &mut [T], f: &F) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f(v);
    }
}
dispatch!(fn map_serial<T: Float, F: Fn(T) -> T>(x: &[T], out: &mut [T], f: &F) => map_body);

#[inline(always)]
fn zip_body<T: Float, F: Fn(T, T) -> T>(a: &[T], b: &[T], out: &mut [T], f: &F) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = f(x, y);
    }
}
dispatch!(fn zip_serial<T: Float, F: Fn(T, T) -> T>(a: &[T], b: &[T], out: &mut [T], f: &F) => zip_body);

#[inline(always)]
fn zip3_body<T: Float, F: Fn(T, T, T) -> T>(a: &[T], b: &[T], c: &[T], out: &mut [T], f: &F) {
    for (((o, &x), &y), &z) in out.iter_mut().zip(a).zip(b).zip(c) {
        *o = f(x, y, z);
    }
}
dispatch!(fn zip3_serial<T: Float, F: Fn(T, T, T) -> T>(a: &[T], b: &[T], c: &[T], out: &mut [T], f: &F) => zip3_body);

#[inline(always)]
fn sum_body<T: Float>(x: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        add_lanes(&mut acc, c);
    }
    combine_lanes(acc) + tail.iter().copied().sum::<T>()
}

/// The sum of one slice without threads. On AVX2 processors, f32 and f64 use explicit 256-bit
/// intrinsics (LLVM's SLP vectoriser packs the 16-lane accumulator into 2-lane pieces); the
/// lane layout and combining tree are those of `sum_body`, so both paths give the same bits.
#[inline]
fn sum_serial<T: Float>(x: &[T]) -> T {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        return match T::DTYPE {
            // SAFETY: AVX2 was detected at run time; `T::DTYPE` says `T` is exactly f32 (or
            // f64), so reinterpreting the slice and the result is an identity.
            crate::tensor::DType::F32 => unsafe {
                let xs = std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len());
                T::from_f64(f64::from(x86::sum_f32(xs)))
            },
            crate::tensor::DType::F64 => unsafe {
                let xs = std::slice::from_raw_parts(x.as_ptr().cast::<f64>(), x.len());
                T::from_f64(x86::sum_f64(xs))
            },
        };
    }
    sum_body(x)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 16 f32 lanes in two registers; combined as `sum_body`'s tree: (j, j+8), (j, j+4),
    /// (j, j+2), (0, 1).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn sum_f32(x: &[f32]) -> f32 {
        let blocks = x.len() / 16;
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for b in 0..blocks {
            // SAFETY: block b covers x[16b .. 16b+16], inside the slice; unaligned loads.
            unsafe {
                lo = _mm256_add_ps(lo, _mm256_loadu_ps(x.as_ptr().add(16 * b)));
                hi = _mm256_add_ps(hi, _mm256_loadu_ps(x.as_ptr().add(16 * b + 8)));
            }
        }
        let half = _mm256_add_ps(lo, hi);
        let quarter = _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
        let eighth = _mm_add_ps(quarter, _mm_movehl_ps(quarter, quarter));
        let total = _mm_cvtss_f32(_mm_add_ss(eighth, _mm_movehdup_ps(eighth)));
        total + x[16 * blocks..].iter().sum::<f32>()
    }

    /// 16 f64 lanes in four registers, combined like `sum_f32`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn sum_f64(x: &[f64]) -> f64 {
        let blocks = x.len() / 16;
        let mut acc = [_mm256_setzero_pd(); 4];
        for b in 0..blocks {
            for (r, a) in acc.iter_mut().enumerate() {
                // SAFETY: lanes 16b + 4r .. +4 lie inside the slice; unaligned loads.
                *a = _mm256_add_pd(*a, unsafe {
                    _mm256_loadu_pd(x.as_ptr().add(16 * b + 4 * r))
                });
            }
        }
        let half = [_mm256_add_pd(acc[0], acc[2]), _mm256_add_pd(acc[1], acc[3])];
        let quarter = _mm256_add_pd(half[0], half[1]);
        let eighth = _mm_add_pd(
            _mm256_castpd256_pd128(quarter),
            _mm256_extractf128_pd(quarter, 1),
        );
        let total = _mm_cvtsd_f64(_mm_add_sd(eighth, _mm_unpackhi_pd(eighth, eighth)));
        total + x[16 * blocks..].iter().sum::<f64>()
    }
}

#[inline(always)]
fn dot_body<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let tail: T = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        let mut prod = [T::ZERO; LANES];
        for ((p, &u), &v) in prod.iter_mut().zip(x).zip(y) {
            *p = u * v;
        }
        add_lanes(&mut acc, &prod);
    }
    combine_lanes(acc) + tail
}
dispatch!(pub fn dot_serial<T: Float>(a: &[T], b: &[T]) -> T => dot_body);

#[inline(always)]
fn add_assign_body<T: Float>(acc: &mut [T], x: &[T]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += v;
    }
}
dispatch!(fn add_assign_serial<T: Float>(acc: &mut [T], x: &[T]) => add_assign_body);

/// `acc += alpha·x`.
#[inline(always)]
fn axpy_body<T: Float>(acc: &mut [T], alpha: T, x: &[T]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += alpha * v;
    }
}
dispatch!(pub fn axpy<T: Float>(acc: &mut [T], alpha: T, x: &[T]) => axpy_body);

/// `acc[j] += x[j]` over one block of lanes, written over fixed-size arrays so that LLVM emits
/// whole-register adds (two ymm for f32, four for f64) rather than scalar or half-width ones.
#[inline(always)]
fn add_lanes<T: Float>(acc: &mut [T; LANES], x: &[T]) {
    let x: &[T; LANES] = x.try_into().expect("a full block of lanes");
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += v;
    }
}

/// Sum of the lane accumulators, halving the width each round (a fixed tree, so results are
/// reproducible).
#[inline(always)]
fn combine_lanes<T: Float>(acc: [T; LANES]) -> T {
    let mut half = [T::ZERO; LANES / 2];
    for (j, h) in half.iter_mut().enumerate() {
        *h = acc[j] + acc[j + LANES / 2];
    }
    let mut quarter = [T::ZERO; LANES / 4];
    for (j, q) in quarter.iter_mut().enumerate() {
        *q = half[j] + half[j + LANES / 4];
    }
    let mut eighth = [T::ZERO; LANES / 8];
    for (j, e) in eighth.iter_mut().enumerate() {
        *e = quarter[j] + quarter[j + LANES / 8];
    }
    eighth[0] + eighth[1]
}

mod exp;
pub use exp::{exp, exp_shifted_scaled, exp_shifted_sum};

#[inline(always)]
fn max_body<T: Float>(x: &[T]) -> T {
    let mut acc = [T::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            // A compare-and-select (not `max`, whose NaN rule costs extra instructions).
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter()
        .chain(tail)
        .fold(T::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}
dispatch!(fn max_serial<T: Float>(x: &[T]) -> T => max_body);

/// The largest entry of one row (−∞ when empty); NaN entries are skipped.
pub fn max_row<T: Float>(x: &[T]) -> T {
    max_serial(x)
}

#[inline(always)]
fn scale_body<T: Float>(x: &mut [T], factor: T) {
    for v in x.iter_mut() {
        *v *= factor;
    }
}
dispatch!(fn scale_serial<T: Float>(x: &mut [T], factor: T) => scale_body);

/// `x[i] *= factor` over one block (serial).
pub fn scale_in_place<T: Float>(x: &mut [T], factor: T) {
    scale_serial(x, factor);
}

fn parallel(len: usize) -> bool {
    len >= 2 * CHUNK
}

/// `out[i] = f(x[i])`, in parallel for large inputs.
pub fn map<T: Float, F: Fn(T) -> T + Sync>(x: &[T], out: &mut [T], f: F) {
    debug_assert_eq!(x.len(), out.len());
    if parallel(x.len()) {
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, x)| map_serial(x, o, &f));
    } else {
        map_serial(x, out, &f);
    }
}

/// `out[i] = f(a[i], b[i])`.
pub fn zip_map<T: Float, F: Fn(T, T) -> T + Sync>(a: &[T], b: &[T], out: &mut [T], f: F) {
    debug_assert!(a.len() == out.len() && b.len() == out.len());
    if parallel(a.len()) {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(o, (a, b))| zip_serial(a, b, o, &f));
    } else {
        zip_serial(a, b, out, &f);
    }
}

/// `out[i] = f(a[i], b[i], c[i])` (backward passes: input, output, incoming gradient).
pub fn zip3_map<T: Float, F: Fn(T, T, T) -> T + Sync>(
    a: &[T],
    b: &[T],
    c: &[T],
    out: &mut [T],
    f: F,
) {
    debug_assert!(a.len() == out.len() && b.len() == out.len() && c.len() == out.len());
    if parallel(a.len()) {
        out.par_chunks_mut(CHUNK)
            .zip(
                a.par_chunks(CHUNK)
                    .zip(b.par_chunks(CHUNK).zip(c.par_chunks(CHUNK))),
            )
            .for_each(|(o, (a, (b, c)))| zip3_serial(a, b, c, o, &f));
    } else {
        zip3_serial(a, b, c, out, &f);
    }
}

/// `acc[i] += x[i]`.
pub fn add_assign<T: Float>(acc: &mut [T], x: &[T]) {
    debug_assert_eq!(acc.len(), x.len());
    if parallel(acc.len()) {
        acc.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(a, x)| add_assign_serial(a, x));
    } else {
        add_assign_serial(acc, x);
    }
}

/// The sum of `x`: fixed chunks summed (in parallel) with 16-lane accumulators, then the chunk
/// sums added in order. The same bits for any number of threads.
pub fn sum<T: Float>(x: &[T]) -> T {
    if parallel(x.len()) {
        let partials: Vec<T> = x.par_chunks(CHUNK).map(sum_serial).collect();
        partials.into_iter().fold(T::ZERO, |a, b| a + b)
    } else {
        x.chunks(CHUNK).map(sum_serial).fold(T::ZERO, |a, b| a + b)
    }
}

/// The sum of one short row (no parallelism): used per output element of axis reductions.
pub fn sum_row<T: Float>(x: &[T]) -> T {
    sum_serial(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_matches_serial_reference_and_is_exact_on_integers() {
        let x: Vec<f64> = (0..100_003).map(|i| (i % 17) as f64).collect();
        let expected: f64 = x.iter().sum();
        assert_eq!(sum(&x), expected);
        let y: Vec<f32> = (0..37).map(|i| i as f32).collect();
        assert_eq!(sum_row(&y), 666.0);
    }

    #[test]
    fn intrinsic_and_portable_sums_agree_bitwise() {
        let x32: Vec<f32> = (0..1003)
            .map(|i| ((i * 37) % 101) as f32 * 0.013 - 0.6)
            .collect();
        let x64: Vec<f64> = x32.iter().map(|&v| f64::from(v) * 1.1).collect();
        assert_eq!(sum_serial(&x32).to_bits(), sum_body(&x32).to_bits());
        assert_eq!(sum_serial(&x64).to_bits(), sum_body(&x64).to_bits());
    }

    #[test]
    fn max_row_and_scale() {
        assert_eq!(max_row(&[1.0f32, -f32::INFINITY, 7.5, 2.0]), 7.5);
        assert_eq!(max_row(&[0.5f64; 37]), 0.5);
        assert_eq!(max_row::<f64>(&[]), f64::NEG_INFINITY);
        let mut x = vec![1.5f32; 19];
        scale_in_place(&mut x, 2.0);
        assert!(x.iter().all(|&v| v == 3.0));
    }

    #[test]
    fn dot_and_axpy() {
        let a: Vec<f32> = (0..35).map(|i| i as f32).collect();
        let b = vec![2.0f32; 35];
        assert_eq!(dot_serial(&a, &b), 2.0 * 595.0);
        let mut acc = vec![1.0f64; 19];
        axpy(&mut acc, 0.5, &[2.0; 19]);
        assert!(acc.iter().all(|&v| v == 2.0));
    }
}
