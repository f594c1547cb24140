//! Redundancy-reduction losses on the cross- or auto-covariance of two views' raw embeddings:
//! [`barlow_twins`] (Zbontar et al. 2021) and [`vicreg`] (Bardes et al. 2022). Neither uses
//! negatives or a softmax; both need `N ≥ 2` samples for batch statistics.

use super::common::{Dims, Views, check_features, check_finite, constant, view};
use crate::error::Result;
use crate::tensor::{Float, Tensor};

/// Barlow Twins' batch-norm epsilon (PyTorch's `BatchNorm1d` default, as in the reference).
const BARLOW_BN_EPS: f64 = 1e-5;
/// VICReg's epsilon inside the standard deviation.
const VICREG_EPS: f64 = 1e-4;

fn off_diagonal_mask<T: Float>(d: usize) -> Result<Tensor<T>> {
    let m: Vec<f64> = (0..d * d)
        .map(|ij| if ij / d == ij % d { 0.0 } else { 1.0 })
        .collect();
    constant(&m, &[d, d])
}

fn identity<T: Float>(d: usize) -> Result<Tensor<T>> {
    let m: Vec<f64> = (0..d * d)
        .map(|ij| if ij / d == ij % d { 1.0 } else { 0.0 })
        .collect();
    constant(&m, &[d, d])
}

fn views<T: Float>(
    loss: &'static str,
    features: &Tensor<T>,
) -> Result<(Dims, Tensor<T>, Tensor<T>)> {
    let dims = check_features(loss, features, Views::Exactly(2), 2, "features (N, 2, d)")?;
    Ok((dims, view(features, dims, 0)?, view(features, dims, 1)?))
}

/// Barlow Twins on raw embeddings.
///
/// Features `(N, 2, d)`, `N ≥ 2`. Each view is standardised per dimension over the batch,
/// `ẑ = (z − mean)/√(var + 1e-5)` (biased variance: `BatchNorm1d(affine=False)` in training),
/// then `C = ẑ₀ᵀẑ₁ / N` (d × d) and
///
/// `loss = Σ_i (1 − C_ii)² + λ·Σ_{i≠j} C_ij²`.
///
/// Default λ = 5e-3 (the paper; the reference script uses 0.0051).
pub fn barlow_twins<T: Float>(features: &Tensor<T>, lambda: f64) -> Result<Tensor<T>> {
    const LOSS: &str = "barlow_twins";
    check_finite(LOSS, "lambda", lambda)?;
    let (dims, z0, z1) = views(LOSS, features)?;
    let standardise = |z: &Tensor<T>| -> Result<Tensor<T>> {
        let mean = z.mean(&[0], true)?;
        let var = z.var(&[0], true, 0)?;
        z.sub(&mean)?.div(&var.add_scalar(BARLOW_BN_EPS).sqrt())
    };
    let c = standardise(&z0)?
        .t()?
        .matmul(&standardise(&z1)?)?
        .div_scalar(dims.n as f64);
    let d = dims.d;
    let on = c
        .sub(&identity(d)?)?
        .square()
        .mul(&identity(d)?)?
        .sum_all()?;
    let off = c.square().mul(&off_diagonal_mask(d)?)?.sum_all()?;
    on.add(&off.mul_scalar(lambda))
}

/// VICReg on raw embeddings: `λ·invariance + μ·variance + ν·covariance`.
///
/// Features `(N, 2, d)`, `N ≥ 2`; x, y the two views.
/// - invariance `= mean over N·d of (x − y)²`;
/// - variance `= ½[mean_j max(0, γ − σ_j(x)) + mean_j max(0, γ − σ_j(y))]`,
///   `σ_j = √(Var_j + 1e-4)` with the unbiased variance and γ = 1;
/// - covariance `= Σ_{i≠j} Cov(x)_ij²/d + Σ_{i≠j} Cov(y)_ij²/d`, `Cov(x) = x̄ᵀx̄/(N − 1)` on the
///   centred embeddings.
///
/// Defaults λ = 25, μ = 25, ν = 1 (the paper's and reference code's).
pub fn vicreg<T: Float>(features: &Tensor<T>, lambda: f64, mu: f64, nu: f64) -> Result<Tensor<T>> {
    const LOSS: &str = "vicreg";
    check_finite(LOSS, "lambda", lambda)?;
    check_finite(LOSS, "mu", mu)?;
    check_finite(LOSS, "nu", nu)?;
    let (dims, x, y) = views(LOSS, features)?;
    let (n, d) = (dims.n, dims.d);
    let invariance = x.sub(&y)?.square().mean_all()?;
    let off = off_diagonal_mask::<T>(d)?;
    // Variance hinge and off-diagonal covariance of one view.
    let terms = |z: &Tensor<T>| -> Result<(Tensor<T>, Tensor<T>)> {
        let centred = z.sub(&z.mean(&[0], true)?)?;
        let std = centred
            .square()
            .sum(&[0], false)?
            .div_scalar((n - 1) as f64)
            .add_scalar(VICREG_EPS)
            .sqrt();
        let v = std.neg().add_scalar(1.0).relu().mean_all()?.mul_scalar(0.5);
        let cov = centred.t()?.matmul(&centred)?.div_scalar((n - 1) as f64);
        let c = cov.square().mul(&off)?.sum_all()?.div_scalar(d as f64);
        Ok((v, c))
    };
    let (vx, cx) = terms(&x)?;
    let (vy, cy) = terms(&y)?;
    let variance = vx.add(&vy)?;
    let covariance = cx.add(&cy)?;
    invariance
        .mul_scalar(lambda)
        .add(&variance.mul_scalar(mu))?
        .add(&covariance.mul_scalar(nu))
}
