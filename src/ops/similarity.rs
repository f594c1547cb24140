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
//! visits its partners in a fixed order, so results do not depend on the thread count.

use crate::autograd::{GradPair, Op};
use crate::backend::cpu::gemm::{MatRef, gemm};
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
/// Rows per task, and columns per block when streaming.
const ROW_BLOCK: usize = 64;
const COL_BLOCK: usize = 512;

/// What the forward pass leaves for the backward pass.
pub(crate) struct SimilaritySaved<T> {
    pub scale: f64,
    pub exclude: Exclude,
    /// `P` (M × N) when materialised.
    pub probs: Option<Vec<T>>,
}

/// Scaled similarities of rows `r0..r0+rows` of `a` against columns `c0..c0+cols` of `b`, into
/// `out` (rows × cols), with excluded entries set to −∞.
#[allow(clippy::too_many_arguments)]
fn block<T: Float>(
    a: &[T],
    b: &[T],
    d: usize,
    (r0, rows): (usize, usize),
    (c0, cols): (usize, usize),
    scale: T,
    exclude: &Exclude,
    out: &mut [T],
) {
    // (rows, d) · (d, cols) → (rows, cols)
    let a_blk = MatRef::new(&a[r0 * d..(r0 + rows) * d], rows, d);
    let b_blk = MatRef::new(&b[c0 * d..(c0 + cols) * d], cols, d).t();
    gemm(a_blk, b_blk, out, false);
    for (i, row) in out.chunks_mut(cols).enumerate() {
        for (k, v) in row.iter_mut().enumerate() {
            *v = if exclude.excluded(r0 + i, c0 + k) {
                T::NEG_INFINITY
            } else {
                *v * scale
            };
        }
    }
}

/// Adds `exp(v − m)` over a row into an online (max, sum) pair.
fn online_lse<T: Float>(row: &[T], max: &mut T, sum: &mut T) {
    let m = row.iter().fold(*max, |m, &v| m.max(v));
    if m == T::NEG_INFINITY {
        return;
    }
    if *max != m {
        *sum *= (*max - m).exp();
        *max = m;
    }
    *sum += row.iter().map(|&v| (v - m).exp()).sum::<T>();
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
    if materialize {
        let mut probs = vec![T::ZERO; m * n];
        probs
            .par_chunks_mut(ROW_BLOCK * n.max(1))
            .zip(lse.par_chunks_mut(ROW_BLOCK))
            .enumerate()
            .for_each(|(blk, (p, l))| {
                let r0 = blk * ROW_BLOCK;
                block(a, b, d, (r0, l.len()), (0, n), scale, exclude, p);
                for (row, li) in p.chunks_mut(n.max(1)).zip(l.iter_mut()) {
                    let (mut mx, mut s) = (T::NEG_INFINITY, T::ZERO);
                    online_lse(row, &mut mx, &mut s);
                    *li = finish_lse(mx, s);
                    for v in row.iter_mut() {
                        *v = if *li == T::NEG_INFINITY {
                            T::ZERO
                        } else {
                            (*v - *li).exp()
                        };
                    }
                }
            });
        return (lse, Some(probs));
    }
    lse.par_chunks_mut(ROW_BLOCK)
        .enumerate()
        .for_each(|(blk, l)| {
            let r0 = blk * ROW_BLOCK;
            let mut s = vec![T::ZERO; l.len() * COL_BLOCK];
            let mut maxes = vec![T::NEG_INFINITY; l.len()];
            let mut sums = vec![T::ZERO; l.len()];
            for c0 in (0..n).step_by(COL_BLOCK) {
                let cols = COL_BLOCK.min(n - c0);
                let s = &mut s[..l.len() * cols];
                block(a, b, d, (r0, l.len()), (c0, cols), scale, exclude, s);
                for (i, row) in s.chunks(cols).enumerate() {
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
        for v in row.iter_mut() {
            *v = if l == T::NEG_INFINITY {
                T::ZERO
            } else {
                gi * (*v - l).exp()
            };
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
        // W = diag(g·scale)·P, then dA = W·B (M×N · N×d), dB = Wᵀ·A (N×M · M×d).
        let mut w = p.clone();
        for (row, &gi) in w.chunks_mut(n.max(1)).zip(g) {
            let f = gi * scale;
            row.iter_mut().for_each(|v| *v *= f);
        }
        if let Some(da) = da.as_mut() {
            gemm(MatRef::new(&w, m, n), MatRef::new(bv, n, d), da, false);
        }
        if let Some(db) = db.as_mut() {
            gemm(MatRef::new(&w, m, n).t(), MatRef::new(av, m, d), db, false);
        }
    } else {
        if let Some(da) = da.as_mut() {
            da.par_chunks_mut(ROW_BLOCK * d)
                .enumerate()
                .for_each(|(blk, da_blk)| {
                    let r0 = blk * ROW_BLOCK;
                    let rows = da_blk.len() / d;
                    let mut s = vec![T::ZERO; rows * COL_BLOCK];
                    for c0 in (0..n).step_by(COL_BLOCK) {
                        let cols = COL_BLOCK.min(n - c0);
                        let s = &mut s[..rows * cols];
                        block(av, bv, d, (r0, rows), (c0, cols), scale, &saved.exclude, s);
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
                    let mut s = vec![T::ZERO; ROW_BLOCK * cols];
                    for r0 in (0..m).step_by(ROW_BLOCK) {
                        let rows = ROW_BLOCK.min(m - r0);
                        let s = &mut s[..rows * cols];
                        block(av, bv, d, (r0, rows), (c0, cols), scale, &saved.exclude, s);
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
