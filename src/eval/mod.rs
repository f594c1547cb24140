//! # Evaluation of frozen embeddings
//!
//! What a representation has learned, measured without training it further. Every function
//! takes embeddings as an `(N, d)` [`Tensor`] of `f32` or `f64` (one row per sample) and, where
//! classes matter, labels `0..K` as `&[usize]` of length N; it returns plain `f64` numbers in a
//! small report struct that prints itself ([`std::fmt::Display`]). Nothing here records a
//! gradient graph, so every function also works inside [`crate::no_grad`].
//!
//! | what | function | file |
//! |---|---|---|
//! | linear probe (multinomial logistic regression, L-BFGS) | [`linear_probe`] | [`probe`] |
//! | weighted kNN classifier (cosine, `e^{s/τ}` votes) | [`knn_accuracy`], [`knn_predict`] | [`neighbors`] |
//! | retrieval recall@k (cosine) | [`recall_at_k`], [`recall_at_k_self`] | [`neighbors`] |
//! | alignment and uniformity (Wang & Isola 2020) | [`alignment`], [`uniformity`], [`align_uniform`] | [`geometry`] |
//! | class-collapse geometry (simplex ETF) | [`class_collapse`] | [`geometry`] |
//! | coarse-to-fine transfer | [`coarse_to_fine`], [`Coarsening`] | [`transfer`] |
//! | PCA to two dimensions, for scatter plots | [`Pca2`] | [`pca`] |
//!
//! Numerics: the probe, the geometry metrics and the PCA compute in `f64` whatever the input
//! type (they are small, and their tolerances are tighter than `f32` allows); the
//! nearest-neighbour searches compute similarities in the input type, block by block, because
//! they are the only quadratic-cost evaluations on large sets.
//!
//! Bad input is an [`Error`], never a panic: a label count that differs from N, a
//! tensor that is not `(N, d)`, non-finite values, `k = 0` or `k` above the number of
//! candidates, a class with no sample where every class needs one.
//!
//! ```
//! use contrastive::{Tensor, Result, eval};
//!
//! # fn main() -> Result<()> {
//! // Two classes, perfectly separated along the first axis.
//! let x = Tensor::<f32>::from_f64s(&[1.0, 0.1, 1.2, -0.1, -1.0, 0.2, -0.9, 0.0], [4, 2])?;
//! let y = [0, 0, 1, 1];
//! let report = eval::linear_probe(&x, &y, &x, &y, &eval::ProbeConfig::default())?;
//! assert_eq!(report.test_accuracy, 1.0);
//! let knn = eval::knn_accuracy(&x, &y, &x, &y, &eval::KnnConfig { k: 1, ..Default::default() })?;
//! assert_eq!(knn.accuracy, 1.0);
//! # Ok(())
//! # }
//! ```

mod lbfgs;

pub mod geometry;
pub mod neighbors;
pub mod pca;
pub mod probe;
pub mod transfer;

pub use geometry::{
    AlignUniform, CollapseReport, align_uniform, alignment, class_collapse, uniformity,
};
pub use neighbors::{
    KnnConfig, KnnReport, KnnWeighting, RecallReport, knn_accuracy, knn_predict, recall_at_k,
    recall_at_k_self,
};
pub use pca::Pca2;
pub use probe::{LinearProbe, ProbeConfig, ProbeReport, linear_probe};
pub use transfer::{Coarsening, TransferReport, coarse_to_fine};

use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};

/// Checks that `x` is an `(N, d)` matrix with `N ≥ min_rows`, `d ≥ 1` and finite values; returns
/// `(N, d)`. `what` names the argument in the error message.
pub(crate) fn matrix_dims<T: Float>(
    op: &'static str,
    what: &str,
    x: &Tensor<T>,
    min_rows: usize,
) -> Result<(usize, usize)> {
    let dims = x.dims();
    if dims.len() != 2 || dims[1] == 0 {
        return Err(Error::BadRank {
            op,
            expected: "an (N, d) matrix of embeddings with d ≥ 1",
            shape: dims.to_vec(),
        });
    }
    if dims[0] < min_rows {
        return Err(Error::invalid(
            op,
            format!(
                "{what} needs at least {min_rows} rows, got shape {dims:?} (N = {})",
                dims[0]
            ),
        ));
    }
    if !x.all_finite() {
        return Err(Error::invalid(
            op,
            format!("{what} of shape {dims:?} contains NaN or infinite values"),
        ));
    }
    Ok((dims[0], dims[1]))
}

/// Checks that there is one label per row; returns the number of classes `max + 1`.
pub(crate) fn check_labels(
    op: &'static str,
    what: &str,
    labels: &[usize],
    n: usize,
) -> Result<usize> {
    if labels.len() != n {
        return Err(Error::invalid(
            op,
            format!(
                "{} {what} for {n} embeddings (one label per row)",
                labels.len()
            ),
        ));
    }
    Ok(labels.iter().max().map_or(0, |&m| m + 1))
}

/// Checks that every class `0..k` has at least one sample in `labels`.
pub(crate) fn check_no_empty_class(
    op: &'static str,
    what: &str,
    labels: &[usize],
    k: usize,
) -> Result<()> {
    let mut seen = vec![false; k];
    for &l in labels {
        if l < k {
            seen[l] = true;
        }
    }
    match seen.iter().position(|s| !s) {
        Some(c) => Err(Error::invalid(
            op,
            format!("class {c} of 0..{k} has no sample in {what}; every class needs one"),
        )),
        None => Ok(()),
    }
}

/// Checks that two embedding matrices have the same width d.
pub(crate) fn check_same_width<T: Float>(
    op: &'static str,
    lhs: &Tensor<T>,
    rhs: &Tensor<T>,
) -> Result<()> {
    if lhs.dims()[1] != rhs.dims()[1] {
        return Err(Error::ShapeMismatch {
            op,
            lhs: lhs.dims().to_vec(),
            rhs: rhs.dims().to_vec(),
        });
    }
    Ok(())
}

/// The rows of an `(N, d)` matrix scaled to unit L2 norm, as `f64`, row-major. A zero row stays
/// zero (the norm is floored, as in [`Tensor::normalize`]).
pub(crate) fn unit_rows_f64<T: Float>(x: &Tensor<T>, d: usize) -> Vec<f64> {
    let mut out = x.to_f64_vec();
    for row in out.chunks_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-150);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    out
}

/// The fraction of equal pairs in two equally long label lists (0 when empty).
pub(crate) fn accuracy(predicted: &[usize], truth: &[usize]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let hits = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
    hits as f64 / truth.len() as f64
}

/// The index of the largest value, the first one on ties (a deterministic vote).
pub(crate) fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}
