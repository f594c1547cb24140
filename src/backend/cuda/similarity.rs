//! The streamed `similarity_logsumexp` on the GPU: `lse_i = log Σ_k exp(scale·a_i·b_k)` over
//! the allowed k, computed in row blocks. Each block's raw similarities come from one cuBLAS
//! GEMM into an `(R, N)` scratch matrix, which a kernel scales and masks and another reduces
//! row by row; memory stays O(R·N + (M + N)·d) whatever M is. The backward recomputes each
//! block, turns it into the weights `w_ik = g_i·scale·exp(s_ik − lse_i)` and accumulates
//! `dA = W·B` and `dB = Wᵀ·A` with two more GEMMs.

use super::blas::gemm_one;
use super::{Buffer, Gpu, buf, grid, launch, per_row};
use crate::autograd::{GradPair, Op};
use crate::error::Result;
use crate::ops::similarity::{Exclude, SimilaritySaved};
use crate::tensor::{Float, Shape, Tensor};
use cudarc::driver::CudaSlice;
use std::sync::Arc;

/// Entries of the scratch similarity block (R·N ≤ this, R ≥ 1): 64 MB in f32.
const BLOCK_ENTRIES: usize = 1 << 24;

/// The exclusion as the kernel's mode and label buffers.
struct Mask {
    mode: i32,
    rows: CudaSlice<i64>,
    cols: CudaSlice<i64>,
}

fn mask(gpu: &Gpu, exclude: &Exclude) -> Result<Mask> {
    let (mode, rows, cols): (i32, &[i64], &[i64]) = match exclude {
        Exclude::Nothing => (0, &[], &[]),
        Exclude::Diagonal => (1, &[], &[]),
        Exclude::SameLabel { rows, cols } => (2, rows, cols),
    };
    Ok(Mask {
        mode,
        rows: gpu.upload_raw(rows)?,
        cols: gpu.upload_raw(cols)?,
    })
}

/// Scaled, masked similarities of rows `r0..r0+rows` of `a` against every row of `b`, into `s`.
#[allow(clippy::too_many_arguments)]
fn block<T: Float>(
    gpu: &Arc<Gpu>,
    a: &Buffer<T>,
    b: &Buffer<T>,
    (n, d): (usize, usize),
    (r0, rows): (usize, usize),
    scale: T,
    m: &Mask,
    s: &mut Buffer<T>,
) -> Result<()> {
    // (rows, d) · (N, d)ᵀ → (rows, N)
    gemm_one(
        gpu,
        (a.slice(), r0 * d, (rows, d), false),
        (b.slice(), 0, (n, d), true),
        s.slice_mut(),
        T::ZERO,
    )?;
    let (rows64, n64, r064) = (rows as i64, n as i64, r0 as i64);
    launch!(
        gpu,
        T,
        "sim_scale_mask",
        grid(rows * n),
        s.slice_mut(),
        &rows64,
        &n64,
        &r064,
        &scale,
        &m.mode,
        &m.rows,
        &m.cols
    )
}

fn rows_per_block(m: usize, n: usize) -> usize {
    (BLOCK_ENTRIES / n.max(1)).clamp(1, m.max(1))
}

pub(crate) fn forward<T: Float>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    scale: f64,
    exclude: Exclude,
) -> Result<Tensor<T>> {
    let (m, d, n) = (a.dims()[0], a.dims()[1], b.dims()[0]);
    let gpu = buf(a)?.gpu().clone();
    let mk = mask(&gpu, &exclude)?;
    let r = rows_per_block(m, n);
    let mut s = gpu.zeros::<T>(r * n)?;
    let mut lse = gpu.zeros::<T>(m)?;
    let sc = T::from_f64(scale);
    for r0 in (0..m).step_by(r) {
        let rows = r.min(m - r0);
        block(&gpu, buf(a)?, buf(b)?, (n, d), (r0, rows), sc, &mk, &mut s)?;
        let (rows64, n64, r064) = (rows as i64, n as i64, r0 as i64);
        launch!(
            gpu,
            T,
            "lse_rows",
            per_row(rows),
            s.slice(),
            lse.slice_mut(),
            &rows64,
            &n64,
            &r064
        )?;
    }
    let op = Op::SimilarityLse {
        a: a.clone(),
        b: b.clone(),
        saved: Box::new(SimilaritySaved {
            scale,
            exclude,
            probs: None,
        }),
    };
    Ok(Tensor::from_op_cuda(lse, Shape::new([m]), op))
}

pub(crate) fn backward<T: Float>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    saved: &SimilaritySaved<T>,
    lse: &Tensor<T>,
    grad: &Tensor<T>,
    need: (bool, bool),
) -> Result<GradPair<T>> {
    let (m, d, n) = (a.dims()[0], a.dims()[1], b.dims()[0]);
    let gpu = buf(a)?.gpu().clone();
    let mk = mask(&gpu, &saved.exclude)?;
    let r = rows_per_block(m, n);
    let sc = T::from_f64(saved.scale);
    let mut s = gpu.zeros::<T>(r * n)?;
    let mut da = gpu.zeros::<T>(m * d)?;
    let mut db = gpu.zeros::<T>(n * d)?;
    let (ab, bb) = (buf(a)?, buf(b)?);
    for (i, r0) in (0..m).step_by(r).enumerate() {
        let rows = r.min(m - r0);
        block(&gpu, ab, bb, (n, d), (r0, rows), sc, &mk, &mut s)?;
        let (rows64, n64, r064) = (rows as i64, n as i64, r0 as i64);
        launch!(
            gpu,
            T,
            "sim_weights",
            grid(rows * n),
            s.slice_mut(),
            &rows64,
            &n64,
            &r064,
            buf(lse)?.slice(),
            buf(grad)?.slice(),
            &sc
        )?;
        if need.0 {
            // (rows, N) · (N, d) → dA's rows r0..r0+rows: written at an offset, so through a
            // scratch buffer the size of the block.
            let mut blk = gpu.zeros::<T>(rows * d)?;
            gemm_one(
                &gpu,
                (s.slice(), 0, (rows, n), false),
                (bb.slice(), 0, (n, d), false),
                blk.slice_mut(),
                T::ZERO,
            )?;
            gpu.stream
                .memcpy_dtod(
                    &blk.slice().slice(0..rows * d),
                    &mut da.slice_mut().slice_mut(r0 * d..(r0 + rows) * d),
                )
                .map_err(super::cuda_err("cuda copy"))?;
        }
        if need.1 {
            // (rows, N)ᵀ · (rows, d) → (N, d), accumulated over the blocks
            let beta = if i == 0 { T::ZERO } else { T::ONE };
            gemm_one(
                &gpu,
                (s.slice(), 0, (rows, n), true),
                (ab.slice(), r0 * d, (rows, d), false),
                db.slice_mut(),
                beta,
            )?;
        }
    }
    let da = need.0.then(|| Tensor::from_cuda(da, a.shape().clone()));
    let db = need.1.then(|| Tensor::from_cuda(db, b.shape().clone()));
    Ok((da, db))
}
