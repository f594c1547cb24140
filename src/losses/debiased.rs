//! Losses that correct the InfoNCE negative term for sampling bias: [`dcl`] (debiased
//! contrastive loss, Chuang et al. 2020) and [`hcl`] (hard-negative contrastive loss, Robinson et
//! al. 2021).
//!
//! Both subtract an estimate of the positives hidden among the negatives and clamp the result at
//! its theoretical minimum `n·e^{−1/τ}`. The reference code forms `e^{s}` directly, which
//! overflows for small τ; here every quantity is a logarithm:
//!
//! - `log Σ_neg e^{s}` is a masked log-sum-exp;
//! - `log(Σ_neg − τ⁺·n·pos) = lneg + log(1 − e^{r})` with `r = log(τ⁺n) + s_pos − lneg`, used
//!   only where `r < 0` (elsewhere the estimate is not positive and the clamp applies);
//! - the clamp floor is `log n − 1/τ`, and the max of the two is taken in log space;
//! - `−log(pos/(pos + Ng)) = softplus(log Ng − s_pos)`.

use super::common::{
    Views, check_features, check_finite, check_positive, check_range, constant, masked_logsumexp,
    partner, pick, rows, similarities,
};
use crate::error::Result;
use crate::tensor::{Float, Tensor};

/// Debiased contrastive loss (Chuang et al. 2020; `chingyaoc/DCL`).
///
/// Features `(N, 2, d)`, `N ≥ 2`, rows and `s_ij = z_i·z_j/τ` as in
/// [`nt_xent`](super::nt_xent). For each of the 2N anchors i, with p(i) its other view,
/// `pos = e^{s_{i,p(i)}}` and the `n = 2N − 2` negatives k ∉ {i, p(i)}:
///
/// `Ng = max((−τ⁺·n·pos + Σ_neg e^{s_ik}) / (1 − τ⁺), n·e^{−1/τ})`,
/// `ℓ_i = −log(pos / (pos + Ng))`, loss `mean_i ℓ_i`.
///
/// `τ⁺ ∈ [0, 1)` is the class prior of a false negative; τ⁺ = 0 gives NT-Xent. Where the clamp is
/// active its gradient is 0. Defaults τ = 0.5, τ⁺ = 0.1.
pub fn dcl<T: Float>(features: &Tensor<T>, tau: f64, tau_plus: f64) -> Result<Tensor<T>> {
    const LOSS: &str = "dcl";
    check_positive(LOSS, "tau", tau)?;
    check_range(LOSS, "tau_plus", tau_plus, 0.0, 1.0, true)?;
    debiased(LOSS, features, tau, tau_plus, None)
}

/// Hard-negative contrastive loss (Robinson et al. 2021; `joshr17/HCL`).
///
/// As [`dcl`], with the negative sum replaced by an importance-weighted one:
/// `Σ_neg e^{s_ik}` → `n·Σ_neg w_k e^{s_ik} / Σ_neg w_k`, `w_k = e^{β s_ik}`.
///
/// β concentrates the weight on hard (similar) negatives; the weights are not detached, so
/// gradients flow through them as in the reference code. β = 0 gives [`dcl`]; β = 0 and τ⁺ = 0
/// give NT-Xent. Defaults τ = 0.5, τ⁺ = 0.1, β = 1.
pub fn hcl<T: Float>(
    features: &Tensor<T>,
    tau: f64,
    tau_plus: f64,
    beta: f64,
) -> Result<Tensor<T>> {
    const LOSS: &str = "hcl";
    check_positive(LOSS, "tau", tau)?;
    check_range(LOSS, "tau_plus", tau_plus, 0.0, 1.0, true)?;
    check_finite(LOSS, "beta", beta)?;
    debiased(LOSS, features, tau, tau_plus, Some(beta))
}

fn debiased<T: Float>(
    loss: &'static str,
    features: &Tensor<T>,
    tau: f64,
    tau_plus: f64,
    beta: Option<f64>,
) -> Result<Tensor<T>> {
    let dims = check_features(loss, features, Views::Exactly(2), 2, "features (N, 2, d)")?;
    let r = 2 * dims.n;
    let n_neg = (r - 2) as f64;
    let z = rows(features, dims)?.normalize(1)?;
    let s = similarities(&z, tau)?;
    let other = partner(dims.n);
    let keep: Vec<bool> = (0..r * r)
        .map(|ik| {
            let (i, k) = (ik / r, ik % r);
            k != i && k != other[i]
        })
        .collect();
    let lp = pick(&s, &other)?;
    // log Σ_neg e^{s}, or for HCL log(n·Σ w e^{s} / Σ w) with w = e^{βs}.
    let lneg = match beta {
        None => masked_logsumexp(&s, &keep)?,
        Some(beta) => masked_logsumexp(&s.mul_scalar(1.0 + beta), &keep)?
            .sub(&masked_logsumexp(&s.mul_scalar(beta), &keep)?)?
            .add_scalar(n_neg.ln()),
    };
    let floor = n_neg.ln() - 1.0 / tau;
    // log of the debiased estimate (before the clamp), where it is positive.
    let estimate = if tau_plus == 0.0 {
        lneg
    } else {
        let r_log = lp.add_scalar((tau_plus * n_neg).ln()).sub(&lneg)?;
        // Where r ≥ −4ε the estimate is ≤ 0 (or within rounding of it): the clamp applies. The
        // replacement −1 only keeps the unused branch finite (its gradient is multiplied by 0).
        let tiny = -4.0 * T::EPSILON.to_f64();
        let usable: Vec<bool> = r_log.data().iter().map(|v| v.to_f64() < tiny).collect();
        let r_safe = Tensor::where_cond(&usable, &r_log, &Tensor::scalar(T::from_f64(-1.0)))?;
        let one_minus = r_safe.exp().neg().add_scalar(1.0);
        let est = lneg
            .add(&one_minus.log())?
            .add_scalar(-(1.0 - tau_plus).ln());
        let neg_inf = Tensor::scalar(T::NEG_INFINITY);
        Tensor::where_cond(&usable, &est, &neg_inf)?
    };
    // max(estimate, floor) in log space: the floor is a constant, so its branch has no gradient.
    let above: Vec<bool> = estimate.data().iter().map(|v| v.to_f64() > floor).collect();
    let floor_t = constant::<T>(&[floor], &[])?;
    let log_ng = Tensor::where_cond(&above, &estimate, &floor_t)?;
    log_ng.sub(&lp)?.softplus().mean_all()
}
