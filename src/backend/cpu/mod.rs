//! CPU kernels: SIMD elementwise maps and reductions with runtime AVX2/FMA dispatch
//! ([`simd`], with the batch-norm reductions in [`norm`], the 2×2 max-pool in [`pool`], row maps
//! into unfilled buffers in [`rows`] and tiled transposes in [`transpose`]), GEMM through
//! `matrixmultiply` ([`gemm`]), and convolutions as im2col/col2im ([`im2col`]) + one GEMM per
//! group of images ([`conv`]). Parallel work is split with `rayon` into pieces whose boundaries
//! never depend on the number of threads, so results are bitwise identical for any pool size.
//! [`alloc`] tunes the C allocator for the large per-step buffers of training.

pub mod alloc;
pub mod conv;
pub mod gemm;
pub mod im2col;
pub mod norm;
pub mod pool;
pub mod probe;
pub mod rows;
pub mod simd;
pub mod transpose;

/// Elements per parallel piece in elementwise maps and full reductions. Fixed, so that the
/// summation tree of a reduction does not depend on the thread count.
pub(crate) const CHUNK: usize = 1 << 14;

/// Number of threads in the current rayon pool.
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
