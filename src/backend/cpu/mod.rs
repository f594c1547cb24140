//! CPU kernels: SIMD elementwise maps and reductions with runtime AVX2/FMA dispatch
//! ([`simd`]), GEMM through `matrixmultiply` ([`gemm`]), and im2col/col2im for convolutions
//! ([`im2col`]). Parallel work is split with `rayon` into pieces whose boundaries never depend on
//! the number of threads, so results are bitwise identical for any pool size.

pub mod gemm;
pub mod im2col;
pub mod probe;
pub mod simd;

/// Elements per parallel piece in elementwise maps and full reductions. Fixed, so that the
/// summation tree of a reduction does not depend on the thread count.
pub(crate) const CHUNK: usize = 1 << 14;

/// Number of threads in the current rayon pool.
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
