//! Wang & Isola's (2020) geometric losses on the unit hypersphere: [`align`] (positive pairs
//! close) and [`uniform`] (all points spread out). Both L2-normalise the features first.

use super::common::{Views, check_features, check_positive, masked_logsumexp, rows, view};
use crate::error::Result;
use crate::tensor::{Float, Tensor};

/// Alignment: `mean_i ‖z₀ᵢ − z₁ᵢ‖^α` over the N positive pairs.
///
/// Features `(N, 2, d)`, `N ≥ 1`; z₀, z₁ the L2-normalised views. For unit vectors and α = 2
/// this is `2 − 2·mean cos`. For α ≠ 2 the squared distance is floored at the dtype's
/// `NORM_EPS²` before `^(α/2)`, so identical pairs have a finite (zero) gradient. Default α = 2.
pub fn align<T: Float>(features: &Tensor<T>, alpha: f64) -> Result<Tensor<T>> {
    const LOSS: &str = "align";
    check_positive(LOSS, "alpha", alpha)?;
    let dims = check_features(LOSS, features, Views::Exactly(2), 1, "features (N, 2, d)")?;
    let z0 = view(features, dims, 0)?.normalize(1)?;
    let z1 = view(features, dims, 1)?.normalize(1)?;
    let sq = z0.sub(&z1)?.square().sum(&[1], false)?;
    let per_pair = if alpha == 2.0 {
        sq
    } else {
        let eps = T::NORM_EPS.to_f64();
        sq.clamp(eps * eps, f64::INFINITY).powf(alpha / 2.0)
    };
    per_pair.mean_all()
}

/// Uniformity: for each view, `log mean_{i<j} e^{−t‖zᵢ − zⱼ‖²}` over the N(N−1)/2 pairs of
/// L2-normalised samples; the loss is the mean over the views.
///
/// Features `(N, V, d)`, `V ≥ 1`, `N ≥ 2`. Computed as a log-sum-exp over the pairs (no
/// underflow for large t), with `‖zᵢ − zⱼ‖² = ‖zᵢ‖² + ‖zⱼ‖² − 2zᵢ·zⱼ` from the Gram matrix.
/// Self pairs are excluded. A regular 4-point simplex gives −16/3 at t = 2. Default t = 2.
pub fn uniform<T: Float>(features: &Tensor<T>, t: f64) -> Result<Tensor<T>> {
    const LOSS: &str = "uniform";
    check_positive(LOSS, "t", t)?;
    let dims = check_features(LOSS, features, Views::AtLeast(1), 2, "features (N, V, d)")?;
    let n = dims.n;
    // Upper triangle i < j of each view's N × N block.
    let keep: Vec<bool> = (0..n * n).map(|ij| ij / n < ij % n).collect();
    let pairs = (n * (n - 1) / 2) as f64;
    let z = rows(features, dims)?.normalize(1)?;
    let mut per_view = Vec::with_capacity(dims.v);
    for v in 0..dims.v {
        let zv = z.narrow(0, v * n, n)?;
        let sq = zv.square().sum(&[1], true)?;
        let dist = sq
            .add(&sq.t()?)?
            .sub(&zv.matmul(&zv.t()?)?.mul_scalar(2.0))?;
        let lse = masked_logsumexp(&dist.mul_scalar(-t).reshape(&[1, n * n])?, &keep)?;
        per_view.push(lse.add_scalar(-pairs.ln()));
    }
    Tensor::concat(&per_view, 0)?.mean_all()
}
