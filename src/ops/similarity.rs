//! The fused log-sum-exp of a scaled similarity matrix, the core of every softmax-based
//! contrastive loss:
//!
//! `lse_i = log Σ_{k allowed for i} exp(scale · a_i·b_k)`, `a` (M, d), `b` (N, d) → (M).
//!
//! Gradients: with `p_ik = exp(scale·a_i·b_k − lse_i)` (zero where excluded) and `w_ik = g_i·p_ik·
//! scale`, `dA = W·B` and `dB = Wᵀ·A`.
//!
//! Two regimes, chosen by size. Up to [`MATERIALIZE_LIMIT`] entries the probabilities `P` are
//! kept for the backward pass (one GEMM forward, two backward). Above it the matrix is never
//! formed: the forward sweeps column blocks with an online log-sum-exp, and the backward
//! recomputes each block (once for `dA` by row blocks, once for `dB` by column blocks), so memory
//! grows as O((M + N)·d) whatever M and N. Each row (or column) block is owned by one task and
//! visits its partners in a fixed order, so results do not depend on the thread count. In f32
//! the exponentials use the backend's vectorised polynomial `exp` (≤ 2 ulp); f64 keeps
//! `f64::exp`, so f64 gradient checks stay exact.

use crate::autograd::{GradPair, Op};
use crate::backend::cpu::gemm::{MatRef, gemm};
use crate::backend::cpu::simd;
use crate::error::{Error, Result};
use crate::tensor::{Float, Shape, Tensor};
use rayon::prelude::*;

/// Which similarities are left out of each row's sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclude {
    /// Keep every entry.
    Nothing,
    /// Leave out `k = i` (self-similarity; needs M = N).
    Diagonal,
    /// Leave out every `k` whose label equals row `i`'s (and so `k = i` too when the rows and
    /// columns are the same samples): the negatives-only denominators.
    SameLabel { rows: Vec<i64>, cols: Vec<i64> },
}

impl Exclude {
    #[inline]
    fn excluded(&self, i: usize, k: usize) -> bool {
        match self {
            Exclude::Nothing => false,
            Exclude::Diagonal => i == k,
            Exclude::SameLabel { rows, cols } => rows[i] == cols[k],
        }
    }
}

/// How to run: keep the probability matrix, stream it, or decide by size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimilarityMode {
    Auto,
    Materialize,
    Stream,
}

/// Largest M·N for which [`SimilarityMode::Auto`] keeps the probabilities (16M entries: 64 MB
/// in f32).
pub const MATERIALIZE_LIMIT: usize = 1 << 24;
/// Rows per parallel task when the probabilities are materialised (row-wise work only).
const ROW_BLOCK: usize = 64;
/// Rows per block when streaming: each block's GEMMs pack a `(d, COL_BLOCK)` slice of `b` once
/// for all these rows, so taller blocks amortise the packing (64 rows spent a third of the
/// streamed pass packing; 256 rows keep the scratch block at 512 KB in f32).
const STREAM_ROWS: usize = 256;
/// Columns per block when streaming.
const COL_BLOCK: usize = 512;

/// What the forward pass leaves for the backward pass.
pub(crate) struct SimilaritySaved<T> {
    pub scale: f64,
    pub exclude: Exclude,
    /// `P` (M × N) when materialised.
    pub probs: Option<Vec<T>>,
}

/// `b` (N, d) rearranged for the GEMM: each column block `c0..c0+cols` (blocks of `width`, the
/// last one shorter) becomes a row-major `(d, cols)` matrix at offset `c0·d`. `matrixmultiply`
/// packs a right-hand operand fastest when its rows are contiguous; reading `bᵀ` through strides
/// instead took a sixth of the `ntxent` workload. O(N·d) extra memory.
fn transpose_blocks<T: Float>(b: &[T], n: usize, d: usize, width: usize) -> Vec<T> {
    /// Source rows per tile: their cache lines stay in L1 while the tile is written.
    const TILE: usize = 32;
    let mut out = vec![T::ZERO; n * d];
    if d == 0 {
        return out;
    }
    out.par_chunks_mut(width.max(1) * d)
        .enumerate()
        .for_each(|(blk, o)| {
            let (c0, cols) = (blk * width, o.len() / d);
            for j0 in (0..cols).step_by(TILE) {
                let tile = TILE.min(cols - j0);
                for k in 0..d {
                    for j in j0..j0 + tile {
                        o[k * cols + j] = b[(c0 + j) * d + k];
                    }
                }
            }
        });
    out
}

/// Scaled similarities of rows `r0..r0+rows` of `a` against columns `c0..c0+cols` of `b`, into
/// `out` (rows × cols), with excluded entries set to −∞. `bt` is `b` laid out by
/// [`transpose_blocks`] with blocks that start at `c0` and hold `cols` columns.
#[allow(clippy::too_many_arguments)]
fn block<T: Float>(
    a: &[T],
    bt: &[T],
    d: usize,
    rows: (usize, usize),
    cols: (usize, usize),
    scale: T,
    exclude: &Exclude,
    out: &mut [T],
) {
    let ((r0, m), (c0, n)) = (rows, cols);
    // (m, d) · (d, n) → (m, n)
    let a_blk = MatRef::new(&a[r0 * d..(r0 + m) * d], m, d);
    let b_blk = MatRef::new(&bt[c0 * d..(c0 + n) * d], d, n);
    gemm(a_blk, b_blk, out, false);
    scale_and_exclude(out, rows, cols, scale, exclude);
}

/// Multiplies a block of raw similarities by `scale` and sets its excluded entries to −∞.
fn scale_and_exclude<T: Float>(
    out: &mut [T],
    (r0, rows): (usize, usize),
    (c0, cols): (usize, usize),
    scale: T,
    exclude: &Exclude,
) {
    simd::scale_in_place(out, scale);
    // The exclusions are written afterwards, touching only the entries they name, so the
    // scaling above stays one vectorised pass.
    match exclude {
        Exclude::Nothing => {}
        Exclude::Diagonal => {
            for i in 0..rows {
                let k = r0 + i;
                if (c0..c0 + cols).contains(&k) {
                    out[i * cols + (k - c0)] = T::NEG_INFINITY;
                }
            }
        }
        Exclude::SameLabel { .. } => {
            for (i, row) in out.chunks_mut(cols).enumerate() {
                for (k, v) in row.iter_mut().enumerate() {
                    if exclude.excluded(r0 + i, c0 + k) {
                        *v = T::NEG_INFINITY;
                    }
                }
            }
        }
    }
}

/// Adds `exp(v − m)` over a row into an online (max, sum) pair. Overwrites the row (scratch).
fn online_lse<T: Float>(row: &mut [T], max: &mut T, sum: &mut T) {
    let m = simd::max_row(row).max(*max);
    if m == T::NEG_INFINITY {
        return;
    }
    if *max != m {
        *sum *= (*max - m).exp();
        *max = m;
    }
    *sum += simd::exp_shifted_sum(row, m);
}

fn finish_lse<T: Float>(max: T, sum: T) -> T {
    if max == T::NEG_INFINITY {
        T::NEG_INFINITY
    } else {
        max + sum.ln()
    }
}

fn forward<T: Float>(
    a: &[T],
    b: &[T],
    (m, n, d): (usize, usize, usize),
    scale: T,
    exclude: &Exclude,
    materialize: bool,
) -> (Vec<T>, Option<Vec<T>>) {
    let mut lse = vec![T::ZERO; m];
    let bt = transpose_blocks(b, n, d, if materialize { n } else { COL_BLOCK });
    if materialize {
        // One GEMM over all rows (it splits the rows over the threads itself): the right-hand
        // operand is packed once per thread, not once per row block.
        let mut probs = vec![T::ZERO; m * n];
        gemm(
            MatRef::new(a, m, d),
            MatRef::new(&bt, d, n),
            &mut probs,
            false,
        ); // (M, N)
        probs
            .par_chunks_mut(ROW_BLOCK * n.max(1))
            .zip(lse.par_chunks_mut(ROW_BLOCK))
            .enumerate()
            .for_each(|(blk, (p, l))| {
                let r0 = blk * ROW_BLOCK;
                scale_and_exclude(p, (r0, l.len()), (0, n), scale, exclude);
                for (row, li) in p.chunks_mut(n.max(1)).zip(l.iter_mut()) {
                    // The row becomes e^{s − max}, then P = e^{s − max}/Σ = e^{s − lse}: one
                    // exponential per entry.
                    let (mut mx, mut s) = (T::NEG_INFINITY, T::ZERO);
                    online_lse(row, &mut mx, &mut s);
                    *li = finish_lse(mx, s);
                    if *li == T::NEG_INFINITY {
                        row.fill(T::ZERO);
                    } else {
                        simd::scale_in_place(row, T::ONE / s);
                    }
                }
            });
        return (lse, Some(probs));
    }
    lse.par_chunks_mut(STREAM_ROWS)
        .enumerate()
        .for_each(|(blk, l)| {
            let r0 = blk * STREAM_ROWS;
            let mut s = vec![T::ZERO; l.len() * COL_BLOCK];
            let mut maxes = vec![T::NEG_INFINITY; l.len()];
            let mut sums = vec![T::ZERO; l.len()];
            for c0 in (0..n).step_by(COL_BLOCK) {
                let cols = COL_BLOCK.min(n - c0);
                let s = &mut s[..l.len() * cols];
                block(a, &bt, d, (r0, l.len()), (c0, cols), scale, exclude, s);
                for (i, row) in s.chunks_mut(cols).enumerate() {
                    online_lse(row, &mut maxes[i], &mut sums[i]);
                }
            }
            for (i, li) in l.iter_mut().enumerate() {
                *li = finish_lse(maxes[i], sums[i]);
            }
        });
    (lse, None)
}

/// Turns a block of scaled similarities into `w_ik = g_i·scale·exp(s_ik − lse_i)` in place.
fn weights<T: Float>(s: &mut [T], cols: usize, r0: usize, lse: &[T], g: &[T], scale: T) {
    for (i, row) in s.chunks_mut(cols).enumerate() {
        let (l, gi) = (lse[r0 + i], g[r0 + i] * scale);
        if l == T::NEG_INFINITY {
            row.fill(T::ZERO);
        } else {
            simd::exp_shifted_scaled(row, l, gi);
        }
    }
}

/// `lse` is the forward output (the op's own result).
pub(crate) fn backward<T: Float>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    saved: &SimilaritySaved<T>,
    lse: &Tensor<T>,
    grad: &Tensor<T>,
    need_a: bool,
    need_b: bool,
) -> Result<GradPair<T>> {
    let (m, d) = (a.dims()[0], a.dims()[1]);
    let n = b.dims()[0];
    let scale = T::from_f64(saved.scale);
    let (av, bv, g, lse) = (a.data(), b.data(), grad.data(), lse.data());
    let mut da = need_a.then(|| vec![T::ZERO; m * d]);
    let mut db = need_b.then(|| vec![T::ZERO; n * d]);
    if let Some(p) = &saved.probs {
        // With W = diag(g·scale)·P: dA = W·B = diag(g·scale)·(P·B) (M×N · N×d) and
        // dB = Wᵀ·A = Pᵀ·(diag(g·scale)·A) (N×M · M×d). The diagonal scaling is applied to the
        // (M, d) factors, so the (M, N) matrix is never copied.
        let row_factor = |i: usize| g[i] * scale;
        if let Some(da) = da.as_mut() {
            gemm(MatRef::new(p, m, n), MatRef::new(bv, n, d), da, false);
            for (i, row) in da.chunks_mut(d.max(1)).enumerate() {
                simd::scale_in_place(row, row_factor(i));
            }
        }
        if let Some(db) = db.as_mut() {
            let mut a_scaled = av.to_vec();
            for (i, row) in a_scaled.chunks_mut(d.max(1)).enumerate() {
                simd::scale_in_place(row, row_factor(i));
            }
            gemm(
                MatRef::new(p, m, n).t(),
                MatRef::new(&a_scaled, m, d),
                db,
                false,
            );
        }
    } else {
        let bt = transpose_blocks(bv, n, d, COL_BLOCK);
        if let Some(da) = da.as_mut() {
            da.par_chunks_mut(STREAM_ROWS * d)
                .enumerate()
                .for_each(|(blk, da_blk)| {
                    let r0 = blk * STREAM_ROWS;
                    let rows = da_blk.len() / d;
                    let mut s = vec![T::ZERO; rows * COL_BLOCK];
                    for c0 in (0..n).step_by(COL_BLOCK) {
                        let cols = COL_BLOCK.min(n - c0);
                        let s = &mut s[..rows * cols];
                        block(av, &bt, d, (r0, rows), (c0, cols), scale, &saved.exclude, s);
                        weights(s, cols, r0, lse, g, scale);
                        // (rows, cols) · (cols, d) accumulated into dA's rows
                        let b_blk = MatRef::new(&bv[c0 * d..(c0 + cols) * d], cols, d);
                        gemm(MatRef::new(s, rows, cols), b_blk, da_blk, true);
                    }
                });
        }
        if let Some(db) = db.as_mut() {
            db.par_chunks_mut(COL_BLOCK * d)
                .enumerate()
                .for_each(|(blk, db_blk)| {
                    let c0 = blk * COL_BLOCK;
                    let cols = db_blk.len() / d;
                    let mut s = vec![T::ZERO; STREAM_ROWS * cols];
                    for r0 in (0..m).step_by(STREAM_ROWS) {
                        let rows = STREAM_ROWS.min(m - r0);
                        let s = &mut s[..rows * cols];
                        block(av, &bt, d, (r0, rows), (c0, cols), scale, &saved.exclude, s);
                        weights(s, cols, r0, lse, g, scale);
                        // (cols, rows) · (rows, d) accumulated into dB's rows
                        let a_blk = MatRef::new(&av[r0 * d..(r0 + rows) * d], rows, d);
                        gemm(MatRef::new(s, rows, cols).t(), a_blk, db_blk, true);
                    }
                });
        }
    }
    let da = da
        .map(|v| Tensor::from_vec(v, a.shape().clone()))
        .transpose()?;
    let db = db
        .map(|v| Tensor::from_vec(v, b.shape().clone()))
        .transpose()?;
    Ok((da, db))
}

impl<T: Float> Tensor<T> {
    /// `lse_i = log Σ_k exp(scale · a_i·b_k)` over the rows `b_k` of `b` not excluded for row
    /// `a_i` of `self`: `(M, d), (N, d) → (M)`. A row with every entry excluded gives −∞ (and
    /// no gradient). Memory stays O((M + N)·d) past [`MATERIALIZE_LIMIT`] entries.
    pub fn similarity_logsumexp(
        &self,
        b: &Tensor<T>,
        scale: f64,
        exclude: Exclude,
    ) -> Result<Self> {
        self.similarity_logsumexp_with(b, scale, exclude, SimilarityMode::Auto)
    }

    /// [`Tensor::similarity_logsumexp`] with the regime chosen explicitly.
    pub fn similarity_logsumexp_with(
        &self,
        b: &Tensor<T>,
        scale: f64,
        exclude: Exclude,
        mode: SimilarityMode,
    ) -> Result<Self> {
        const OP: &str = "similarity_logsumexp";
        if self.rank() != 2 || b.rank() != 2 || self.dims()[1] != b.dims()[1] {
            return Err(Error::ShapeMismatch {
                op: "similarity_logsumexp (need (M, d) and (N, d))",
                lhs: self.dims().to_vec(),
                rhs: b.dims().to_vec(),
            });
        }
        let (m, d, n) = (self.dims()[0], self.dims()[1], b.dims()[0]);
        match &exclude {
            Exclude::Diagonal if m != n => {
                return Err(Error::invalid(
                    OP,
                    format!("excluding the diagonal needs M = N, got {m} and {n}"),
                ));
            }
            Exclude::SameLabel { rows, cols } if rows.len() != m || cols.len() != n => {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "{} row and {} column labels for a {m}×{n} similarity matrix",
                        rows.len(),
                        cols.len()
                    ),
                ));
            }
            _ => {}
        }
        if !scale.is_finite() {
            return Err(Error::invalid(OP, format!("scale {scale} is not finite")));
        }
        crate::backend::on_cuda!(OP, [self, b], |_dev| {
            crate::backend::cuda::similarity::forward(self, b, scale, exclude)
        });
        let materialize = match mode {
            SimilarityMode::Materialize => true,
            SimilarityMode::Stream => false,
            SimilarityMode::Auto => m.saturating_mul(n) <= MATERIALIZE_LIMIT,
        };
        let (lse, probs) = forward(
            self.data(),
            b.data(),
            (m, n, d),
            T::from_f64(scale),
            &exclude,
            materialize,
        );
        Ok(Tensor::from_op(
            lse,
            Shape::new([m]),
            Op::SimilarityLse {
                a: self.clone(),
                b: b.clone(),
                saved: Box::new(SimilaritySaved {
                    scale,
                    exclude,
                    probs,
                }),
            },
        ))
    }
}
