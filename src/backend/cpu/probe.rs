//! Measures this core's peak f32 FMA throughput, the reference for GEMM efficiency figures:
//! independent chains of fused multiply-adds (more than latency × pipes, so the pipes never
//! wait, and few enough to stay in registers: 14 of AVX2's 16 ymm, 16 of AVX-512's 32 zmm).

use std::time::Instant;

/// Peak single-thread f32 GFLOP/s measured with `width`-bit FMAs (512 or 256), or `None` when the
/// processor lacks that instruction set.
pub fn fma_peak_gflops(width: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        const ITERS: usize = 20_000_000;
        let (lanes, chains, run): (usize, usize, unsafe fn(usize) -> f32) = match width {
            512 if is_x86_feature_detected!("avx512f") => (16, 16, fma_chains_512),
            256 if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") => {
                (8, 12, fma_chains_256)
            }
            _ => return None,
        };
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = Instant::now();
            // SAFETY: the instruction set `run` needs was detected just above.
            std::hint::black_box(unsafe { run(ITERS) });
            best = best.min(t.elapsed().as_secs_f64());
        }
        Some((ITERS * chains * lanes * 2) as f64 / best / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = width;
        None
    }
}

macro_rules! fma_chains {
    ($name:ident, $feature:literal, $chains:literal, $vec:ty, $set1:ident, $fmadd:ident, $add:ident, $reduce:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name(iters: usize) -> f32 {
            use std::arch::x86_64::*;
            let a: $vec = $set1(0.999_999);
            let b: $vec = $set1(1e-7);
            let mut acc: [$vec; $chains] = [$set1(1.0); $chains];
            for _ in 0..iters {
                for v in acc.iter_mut() {
                    *v = $fmadd(*v, a, b);
                }
            }
            let mut total = acc[0];
            for v in &acc[1..] {
                total = $add(total, *v);
            }
            $reduce(total)
        }
    };
}

fma_chains!(
    fma_chains_512,
    "avx512f",
    16,
    __m512,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    |v| { _mm512_reduce_add_ps(v) }
);
fma_chains!(
    fma_chains_256,
    "avx2,fma",
    12,
    __m256,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    |v: __m256| {
        // SAFETY: `out` holds exactly the 8 floats the store writes.
        let out: [f32; 8] = unsafe { std::mem::transmute(v) };
        out.iter().sum::<f32>()
    }
);
