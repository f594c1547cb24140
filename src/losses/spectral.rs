//! HaoChen et al.'s (2021) spectral contrastive loss, on raw (unnormalised) features: it has
//! no softmax and no temperature, and its minimiser is a spectral decomposition of the
//! augmentation graph.

use super::common::{Views, check_features, view};
use crate::error::Result;
use crate::tensor::{Float, Tensor};

/// Spectral contrastive loss on raw features:
///
/// `loss = −2·mean_i f₀ᵢ·f₁ᵢ + mean_{i≠j} (f₀ᵢ·f₁ⱼ)²`
///
/// Features `(N, 2, d)`, `N ≥ 2`; f₀, f₁ the two views, unnormalised. The second mean runs over
/// the N(N−1) ordered pairs of view-0 rows against view-1 columns (as in the reference code);
/// the reference's optional projection into a ball of radius √μ is not applied. Identical
/// orthonormal views give −2.
pub fn spectral<T: Float>(features: &Tensor<T>) -> Result<Tensor<T>> {
    const LOSS: &str = "spectral";
    let dims = check_features(LOSS, features, Views::Exactly(2), 2, "features (N, 2, d)")?;
    let n = dims.n;
    let f0 = view(features, dims, 0)?;
    let f1 = view(features, dims, 1)?;
    let diag = f0.mul(&f1)?.sum_all()?.mul_scalar(-2.0 / n as f64);
    let diagonal: Vec<bool> = (0..n * n).map(|ij| ij / n == ij % n).collect();
    let cross = f0
        .matmul(&f1.t()?)?
        .square()
        .masked_fill(&diagonal, 0.0)?
        .sum_all()?
        .mul_scalar(1.0 / (n * (n - 1)) as f64);
    diag.add(&cross)
}
