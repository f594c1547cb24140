//! Margin losses on raw (unnormalised) triples `(anchor, positive, negative)`: [`triplet`]
//! (Euclidean triplet margin loss) and Arora et al.'s (2019) [`arora_logistic`] and
//! [`arora_hinge`] on inner products.

use super::common::{Views, check_features, check_finite, view};
use crate::error::Result;
use crate::tensor::{Float, Tensor};

const TRIPLE: &str = "features (N, 3, d) = (anchor, positive, negative)";

/// The three `(N, d)` views of a validated triple.
type Triple<T> = (Tensor<T>, Tensor<T>, Tensor<T>);

fn triple<T: Float>(loss: &'static str, features: &Tensor<T>) -> Result<Triple<T>> {
    let dims = check_features(loss, features, Views::Exactly(3), 1, TRIPLE)?;
    Ok((
        view(features, dims, 0)?,
        view(features, dims, 1)?,
        view(features, dims, 2)?,
    ))
}

/// `‖a − b‖` per row, with the squared distance floored at the dtype's `NORM_EPS²` so that a
/// zero distance has a finite (zero) gradient.
fn distance<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    let eps = T::NORM_EPS.to_f64();
    Ok(a.sub(b)?
        .square()
        .sum(&[1], false)?
        .clamp(eps * eps, f64::INFINITY)
        .sqrt())
}

/// Triplet margin loss on raw features: `mean_i max(0, ‖aᵢ − pᵢ‖ − ‖aᵢ − nᵢ‖ + m)`.
///
/// Features `(N, 3, d)` = (anchor, positive, negative), `N ≥ 1`. Distances are Euclidean, not
/// squared (PyTorch's `TripletMarginLoss`, without its `eps` offset); the mean counts every
/// triplet, including the zero ones. Default margin m = 1.
pub fn triplet<T: Float>(features: &Tensor<T>, margin: f64) -> Result<Tensor<T>> {
    const LOSS: &str = "triplet";
    check_finite(LOSS, "margin", margin)?;
    let (a, p, n) = triple(LOSS, features)?;
    distance(&a, &p)?
        .sub(&distance(&a, &n)?)?
        .add_scalar(margin)
        .relu()
        .mean_all()
}

/// `vᵢ = fᵢ·(f⁺ᵢ − f⁻ᵢ)` for each triple.
fn margins<T: Float>(loss: &'static str, features: &Tensor<T>) -> Result<Tensor<T>> {
    let (f, fp, fm) = triple(loss, features)?;
    f.mul(&fp.sub(&fm)?)?.sum(&[1], false)
}

/// Arora et al.'s logistic contrastive loss on raw features: `mean_i log(1 + e^{−vᵢ})`,
/// `vᵢ = fᵢ·(f⁺ᵢ − f⁻ᵢ)`, with one negative per anchor.
///
/// Features `(N, 3, d)` = (x, x⁺, x⁻), `N ≥ 1`. Natural logarithm (the paper's analysis uses
/// log₂, a factor 1/ln 2), computed as a stable softplus.
pub fn arora_logistic<T: Float>(features: &Tensor<T>) -> Result<Tensor<T>> {
    margins("arora_logistic", features)?
        .neg()
        .softplus()
        .mean_all()
}

/// Arora et al.'s hinge contrastive loss on raw features: `mean_i max(0, 1 − vᵢ)`,
/// `vᵢ = fᵢ·(f⁺ᵢ − f⁻ᵢ)`, with one negative per anchor.
///
/// Features `(N, 3, d)` = (x, x⁺, x⁻), `N ≥ 1`.
pub fn arora_hinge<T: Float>(features: &Tensor<T>) -> Result<Tensor<T>> {
    margins("arora_hinge", features)?
        .neg()
        .add_scalar(1.0)
        .relu()
        .mean_all()
}
