//! `e^x` for the kernels: a polynomial exp for f32 lanes (Cody–Waite range reduction, Cephes'
//! degree-6 `expf` polynomial, ≤ 2 ulp — measured 1.01 — over the whole range, `+∞` above
//! ln(f32::MAX), 0 below ln(2^−150), NaN → NaN, −∞ → 0), with an AVX2+FMA intrinsic path chosen
//! at run time like the other kernels; f64 keeps `f64::exp`, so f64 gradient checks stay exact.
//! Used by the unary `exp` op and by the fused similarity log-sum-exp.

use super::{CHUNK, has_avx2_fma, map_serial, parallel};
use crate::tensor::Float;
use rayon::prelude::*;

/// Inputs are clamped to `[EXP_LO, EXP_HI]` before the range reduction, so the integer exponent
/// stays in `[−150, 128]`; the two-step scaling below then overflows to `+∞` above
/// ln(f32::MAX) ≈ 88.72 and underflows to 0 below ln(2^−150) ≈ −103.97 by ordinary rounding.
const EXP_HI: f32 = 89.0;
const EXP_LO: f32 = -104.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// Cody–Waite split of ln 2: `LN2_HI` has 9 significant bits, so `n·LN2_HI` is exact for
/// |n| ≤ 2^15 and `x − n·LN2_HI` loses nothing. (Written as its exact binary value, 355/512.)
#[allow(clippy::excessive_precision)]
const LN2_HI: f32 = 0.693_359_375;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2^23: adding it rounds to an integer (ties to even) and leaves that integer in the low
/// mantissa bits.
const ROUND: f32 = 12_582_912.0;
/// Cephes `expf`: `e^r ≈ 1 + r + r²·P(r)` on |r| ≤ ln2/2 (minimax, ≈ 1 ulp).
const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5, // Cephes writes 5.0000001201e-1, which is 0.5 in f32
];

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    // Without FMA hardware `mul_add` is a slow library call, so the baseline build rounds twice.
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// e^x for one lane, branch-free so that LLVM vectorises the loops around it. NaN propagates
/// through the arithmetic (every comparison with NaN is false, so it is not clamped); the
/// integer exponent arithmetic wraps harmlessly for NaN.
#[inline(always)]
fn exp_lane<const FMA: bool>(x: f32) -> f32 {
    let x = if x < EXP_LO { EXP_LO } else { x };
    let x = if x > EXP_HI { EXP_HI } else { x };
    let t = madd::<FMA>(x, LOG2E, ROUND);
    let n = t - ROUND;
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = madd::<FMA>(-n, LN2_HI, x);
    let r = madd::<FMA>(-n, LN2_LO, r);
    let mut p = EXP_P[0];
    for &c in &EXP_P[1..] {
        p = madd::<FMA>(p, r, c);
    }
    let y = madd::<FMA>(p, r * r, r) + 1.0;
    // 2^n in two factors, each a normal float for n ∈ [−150, 128]: y·2^n1 is exact and the
    // second product rounds once, so subnormal results are correctly rounded too.
    let n1 = ni >> 1;
    let n2 = ni.wrapping_sub(n1);
    let s1 = f32::from_bits((n1.wrapping_add(127) << 23) as u32);
    let s2 = f32::from_bits((n2.wrapping_add(127) << 23) as u32);
    y * s1 * s2
}

/// The portable kernels: `exp_lane` over each element. (LLVM's SLP vectoriser packs this body
/// into 128-bit pieces even inside an AVX2 function, so the AVX2 path is written with
/// intrinsics in `exp_x86`, lane for lane the same arithmetic.)
fn exp_f32_portable(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = exp_lane::<false>(v);
    }
}

/// `row[k] = factor·e^{row[k] − shift}`, returning `Σ row[k]` (8 lane accumulators combined as
/// (j, j+4), (j, j+2), (0, 1), then the tail, as the AVX2 path does).
fn exp_shift_f32_portable(row: &mut [f32], shift: f32, factor: f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = row.chunks_exact_mut(8);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
            *v = factor * exp_lane::<false>(*v - shift);
            *a += *v;
        }
    }
    let mut tail = 0.0f32;
    for v in chunks.into_remainder() {
        *v = factor * exp_lane::<false>(*v - shift);
        tail += *v;
    }
    let q = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    let h = [q[0] + q[2], q[1] + q[3]];
    h[0] + h[1] + tail
}

fn exp_f32_serial(x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { exp_x86::exp(x, out) };
    }
    exp_f32_portable(x, out);
}

fn exp_shift_f32(row: &mut [f32], shift: f32, factor: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { exp_x86::exp_shift(row, shift, factor) };
    }
    exp_shift_f32_portable(row, shift, factor)
}

#[cfg(target_arch = "x86_64")]
mod exp_x86 {
    use super::{EXP_HI, EXP_LO, EXP_P, LN2_HI, LN2_LO, LOG2E, ROUND, exp_lane};
    use std::arch::x86_64::*;

    /// e^x on 8 lanes: `exp_lane::<true>` step for step, so each lane has the same bits as the
    /// scalar FMA version.
    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        // maxps/minps return their second operand when either is NaN, so NaN passes through.
        let x = _mm256_max_ps(_mm256_set1_ps(EXP_LO), x);
        let x = _mm256_min_ps(_mm256_set1_ps(EXP_HI), x);
        let round = _mm256_set1_ps(ROUND);
        let t = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), round);
        let n = _mm256_sub_ps(t, round);
        let ni = _mm256_sub_epi32(
            _mm256_castps_si256(t),
            _mm256_set1_epi32(ROUND.to_bits() as i32),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(EXP_P[0]);
        for &c in &EXP_P[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let y = _mm256_add_ps(
            _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
            _mm256_set1_ps(1.0),
        );
        let n1 = _mm256_srai_epi32::<1>(ni);
        let n2 = _mm256_sub_epi32(ni, n1);
        let bias = _mm256_set1_epi32(127);
        let s1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
        let s2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
        _mm256_mul_ps(_mm256_mul_ps(y, s1), s2)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp(x: &[f32], out: &mut [f32]) {
        let blocks = x.len().min(out.len()) / 8;
        for b in 0..blocks {
            // SAFETY: lanes 8b .. 8b+8 lie inside both slices; unaligned loads and stores.
            unsafe {
                let v = exp8(_mm256_loadu_ps(x.as_ptr().add(8 * b)));
                _mm256_storeu_ps(out.as_mut_ptr().add(8 * b), v);
            }
        }
        for (o, &v) in out[8 * blocks..].iter_mut().zip(&x[8 * blocks..]) {
            *o = exp_lane::<true>(v);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp_shift(row: &mut [f32], shift: f32, factor: f32) -> f32 {
        let blocks = row.len() / 8;
        let (sh, f) = (_mm256_set1_ps(shift), _mm256_set1_ps(factor));
        let mut acc = _mm256_setzero_ps();
        for b in 0..blocks {
            // SAFETY: lanes 8b .. 8b+8 lie inside the slice; unaligned load and store.
            unsafe {
                let ptr = row.as_mut_ptr().add(8 * b);
                let v = _mm256_mul_ps(f, exp8(_mm256_sub_ps(_mm256_loadu_ps(ptr), sh)));
                _mm256_storeu_ps(ptr, v);
                acc = _mm256_add_ps(acc, v);
            }
        }
        let mut tail = 0.0f32;
        for v in &mut row[8 * blocks..] {
            *v = factor * exp_lane::<true>(*v - shift);
            tail += *v;
        }
        // The portable tree: (j, j+4), then (j, j+2), then (0, 1).
        let q = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let h = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h))) + tail
    }
}

/// Views a `T` slice as `f32` when `T` is `f32`.
fn as_f32<T: Float>(x: &[T]) -> Option<&[f32]> {
    (T::DTYPE == crate::tensor::DType::F32).then(|| {
        // SAFETY: `T::DTYPE` says `T` is exactly `f32` (the trait is sealed), so the
        // reinterpretation is an identity on a valid, aligned slice of the same length.
        unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()) }
    })
}

/// Views a mutable `T` slice as `f32` when `T` is `f32`.
fn as_f32_mut<T: Float>(x: &mut [T]) -> Option<&mut [f32]> {
    (T::DTYPE == crate::tensor::DType::F32).then(|| {
        // SAFETY: as in `as_f32`; the borrow is exclusive and moves into the result.
        unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<f32>(), x.len()) }
    })
}

/// `out[i] = e^{x[i]}`, in parallel for large inputs. f32 uses the polynomial kernel (≤ 2 ulp,
/// `+∞` above ≈ 88.72, 0 below ≈ −103.97, NaN → NaN, −∞ → 0); f64 uses `f64::exp`.
pub fn exp<T: Float>(x: &[T], out: &mut [T]) {
    debug_assert_eq!(x.len(), out.len());
    let serial = |x: &[T], out: &mut [T]| match (as_f32(x), as_f32_mut(out)) {
        (Some(x), Some(out)) => exp_f32_serial(x, out),
        _ => map_serial(x, out, &|v: T| v.exp()),
    };
    if parallel(x.len()) {
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, x)| serial(x, o));
    } else {
        serial(x, out);
    }
}

/// `row[k] = e^{row[k] − shift}` in place, returning `Σ_k row[k]`: the inner step of a
/// log-sum-exp with the maximum `shift` subtracted. Serial (one row), fixed summation order.
pub fn exp_shifted_sum<T: Float>(row: &mut [T], shift: T) -> T {
    if let Some(r) = as_f32_mut(row) {
        return T::from_f64(f64::from(exp_shift_f32(r, shift.to_f64() as f32, 1.0)));
    }
    row.iter_mut().fold(T::ZERO, |s, v| {
        *v = (*v - shift).exp();
        s + *v
    })
}

/// `row[k] = factor·e^{row[k] − shift}` in place: softmax weights from a known log-sum-exp.
pub fn exp_shifted_scaled<T: Float>(row: &mut [T], shift: T, factor: T) {
    if let Some(r) = as_f32_mut(row) {
        exp_shift_f32(r, shift.to_f64() as f32, factor.to_f64() as f32);
        return;
    }
    row.iter_mut()
        .for_each(|v| *v = factor * (*v - shift).exp());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// |got − exact| in units of the f32 spacing at `exact` (subnormal spacing below
    /// f32::MIN_POSITIVE).
    fn ulps(got: f32, exact: f64) -> f64 {
        let spacing = if exact.abs() < f64::from(f32::MIN_POSITIVE) {
            2f64.powi(-149)
        } else {
            2f64.powi(exact.abs().log2().floor() as i32 - 23)
        };
        (f64::from(got) - exact).abs() / spacing
    }

    /// Every exp path on `x`: the dispatched kernel, the portable kernel, and the shifted forms.
    fn exp_paths(x: &[f32]) -> Vec<Vec<f32>> {
        let mut fast = vec![0.0; x.len()];
        exp(x, &mut fast);
        let mut portable = vec![0.0; x.len()];
        exp_f32_portable(x, &mut portable);
        let mut shifted = x.iter().map(|v| v + 1.0).collect::<Vec<f32>>();
        exp_shifted_scaled(&mut shifted, 1.0, 1.0);
        vec![fast, portable, shifted]
    }

    #[test]
    fn f32_exp_is_within_two_ulps_over_its_whole_range() {
        // 2^22 points over [−104, 89]: every binade of the output, subnormals and the overflow
        // edge included. The shifted path rounds x + 1 first, so it is compared at that point.
        let count = 1 << 22;
        let x: Vec<f32> = (0..count)
            .map(|i| (-104.0 + 193.0 * i as f64 / (count - 1) as f64) as f32)
            .collect();
        let paths = exp_paths(&x);
        let mut worst = [0.0f64; 3];
        for (p, got) in paths.iter().enumerate() {
            for (i, (&xi, &g)) in x.iter().zip(got).enumerate() {
                let at = if p == 2 {
                    f64::from(xi + 1.0) - 1.0
                } else {
                    f64::from(xi)
                };
                let exact = at.exp();
                if exact > f64::from(f32::MAX) * (1.0 + 1e-7) {
                    assert_eq!(g, f32::INFINITY, "path {p}: exp({at}) should overflow");
                } else if exact < f64::from(f32::MAX) {
                    let e = ulps(g, exact);
                    assert!(
                        e <= 2.0,
                        "path {p}: exp({at}) = {g}, exact {exact}: {e} ulp ({i})"
                    );
                    worst[p] = worst[p].max(e);
                }
            }
        }
        // The kernel is not a table lookup: it must be visibly approximate, yet accurate.
        assert!(worst[0] > 0.4 && worst[0] <= 2.0, "{worst:?}");
    }

    #[test]
    fn f32_exp_special_values() {
        let x = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            88.72283,  // the largest input with a finite result
            88.722_84, // the smallest that overflows
            1e30,
            -103.972_08, // rounds to the smallest subnormal
            -104.0,
            -1e30,
            1.0,
        ];
        for got in exp_paths(&x[..]).into_iter().take(2) {
            assert!(got[0].is_nan());
            assert_eq!(got[1], f32::INFINITY);
            assert_eq!(got[2], 0.0);
            assert_eq!(got[3], 1.0);
            assert_eq!(got[4], 1.0);
            assert!(got[5].is_finite() && got[5] > 3.4e38, "{}", got[5]);
            assert_eq!(got[6], f32::INFINITY);
            assert_eq!(got[7], f32::INFINITY);
            assert_eq!(got[8], f32::from_bits(1));
            assert_eq!(got[9], 0.0);
            assert_eq!(got[10], 0.0);
            assert!(ulps(got[11], 1f64.exp()) <= 1.0);
        }
    }

    #[test]
    fn avx2_exp_lanes_match_the_scalar_fma_arithmetic_and_sums_are_exact_to_rounding() {
        let x: Vec<f32> = (0..1003).map(|i| (i as f32 - 500.0) * 0.173).collect();
        let mut fast = vec![0.0; x.len()];
        exp(&x, &mut fast);
        if has_avx2_fma() {
            for (&xi, &g) in x.iter().zip(&fast) {
                assert_eq!(g.to_bits(), exp_lane::<true>(xi).to_bits(), "exp({xi})");
            }
        }
        // The shifted sum is the sum of what it stores (to f32 rounding of ≤ 1003 terms).
        let mut row: Vec<f32> = x.iter().map(|v| v * 0.1).collect();
        let sum = exp_shifted_sum(&mut row, 3.0);
        let direct: f64 = row.iter().map(|&v| f64::from(v)).sum();
        assert!(
            (f64::from(sum) - direct).abs() <= 1e-5 * direct,
            "{sum} vs {direct}"
        );
        // f64 uses the library exp exactly.
        let mut row64 = vec![0.5f64, -2.0, 7.0];
        let sum64 = exp_shifted_sum(&mut row64, 1.0);
        assert_eq!(row64, vec![(-0.5f64).exp(), (-3.0f64).exp(), 6f64.exp()]);
        assert_eq!(sum64, row64[0] + row64[1] + row64[2]);
    }
}
