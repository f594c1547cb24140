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
                if has_avx2_fma() {
                    // SAFETY: `fast` only requires AVX2 and FMA, which were detected at run
                    // time just above; its body is safe Rust.
                    return unsafe { fast($($a),*) };
                }
            }
            $body($($a),*)
        }
    };
}

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
        for j in 0..LANES {
            acc[j] += c[j];
        }
    }
    combine_lanes(acc) + tail.iter().copied().sum::<T>()
}
dispatch!(fn sum_serial<T: Float>(x: &[T]) -> T => sum_body);

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
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
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

/// Pairwise sum of the lane accumulators (a fixed tree, so results are reproducible).
#[inline(always)]
fn combine_lanes<T: Float>(mut acc: [T; LANES]) -> T {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for j in 0..width {
            acc[j] += acc[j + width];
        }
    }
    acc[0]
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
    fn dot_and_axpy() {
        let a: Vec<f32> = (0..35).map(|i| i as f32).collect();
        let b = vec![2.0f32; 35];
        assert_eq!(dot_serial(&a, &b), 2.0 * 595.0);
        let mut acc = vec![1.0f64; 19];
        axpy(&mut acc, 0.5, &[2.0; 19]);
        assert!(acc.iter().all(|&v| v == 2.0));
    }
}
