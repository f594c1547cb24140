//! The composed, N²-memory forms of the losses that also have a streaming form: [`nt_xent`],
//! [`supcon`] and [`clip`], built from the engine's ops over the full `(R, R)` similarity
//! matrix exactly as the formulas read. They are the reference the fused forms in
//! [`infonce`](super::infonce) and [`supcon`](mod@super::supcon) are tested against (to 1e-10 in
//! f64, value and gradient), and a readable statement of each loss. Same validation, same
//! errors, same conventions (see the [module docs](super)).

use super::common::{
    Views, check_features, check_labels, check_positive, masked_logsumexp, pick, row_labels, rows,
    similarities, view,
};
use super::infonce::NT_XENT_SHAPE;
use super::supcon::{Denominator, supcon_core};
use crate::error::Result;
use crate::tensor::{Float, Tensor};

/// NT-Xent over the materialised `(VN, VN)` matrix:
/// `mean_i [−(1/(V−1)) Σ_{p∈P(i)} s_ip + log Σ_{k≠i} e^{s_ik}]`, P(i) the other views of i's
/// sample (V = 2: the one partner). See [`super::nt_xent`].
pub fn nt_xent<T: Float>(features: &Tensor<T>, tau: f64) -> Result<Tensor<T>> {
    const LOSS: &str = "nt_xent";
    check_positive(LOSS, "tau", tau)?;
    let dims = check_features(LOSS, features, Views::AtLeast(2), 2, NT_XENT_SHAPE)?;
    let z = rows(features, dims)?.normalize(1)?;
    let s = similarities(&z, tau)?;
    let (n, r) = (dims.n, dims.v * dims.n);
    let keep: Vec<bool> = (0..r * r).map(|ik| ik / r != ik % r).collect();
    let lse = masked_logsumexp(&s, &keep)?;
    // Row i's positives sit at i + n, i + 2n, … (mod VN); V = 2: the one partner.
    let positive = |offset: usize| -> Vec<usize> { (0..r).map(|i| (i + offset * n) % r).collect() };
    let mut pos = pick(&s, &positive(1))?;
    for offset in 2..dims.v {
        pos = pos.add(&pick(&s, &positive(offset))?)?;
    }
    if dims.v > 2 {
        pos = pos.div_scalar((dims.v - 1) as f64);
    }
    lse.sub(&pos)?.mean_all()
}

/// SupCon over the materialised `(VN, VN)` matrix, either denominator. See
/// [`supcon`](fn@super::supcon).
pub fn supcon<T: Float>(
    features: &Tensor<T>,
    labels: &[i64],
    tau: f64,
    denominator: Denominator,
) -> Result<Tensor<T>> {
    const LOSS: &str = "supcon";
    check_positive(LOSS, "tau", tau)?;
    let dims = check_features(LOSS, features, Views::AtLeast(1), 1, "features (N, V, d)")?;
    check_labels(LOSS, "labels", labels, features.dims())?;
    let z = rows(features, dims)?.normalize(1)?;
    let s = similarities(&z, tau)?;
    supcon_core(
        LOSS,
        &s,
        &row_labels(labels, dims.v),
        denominator,
        "labels",
        features.dims(),
    )
}

/// CLIP through two cross-entropies of the materialised `(N, N)` logits:
/// `½[CE(Z₀Z₁ᵀ/τ, I) + CE(Z₁Z₀ᵀ/τ, I)]`. See [`super::clip`].
pub fn clip<T: Float>(features: &Tensor<T>, tau: f64) -> Result<Tensor<T>> {
    const LOSS: &str = "clip";
    check_positive(LOSS, "tau", tau)?;
    let dims = check_features(LOSS, features, Views::Exactly(2), 2, "features (N, 2, d)")?;
    let z0 = view(features, dims, 0)?.normalize(1)?;
    let z1 = view(features, dims, 1)?.normalize(1)?;
    let logits = z0.matmul(&z1.t()?)?.div_scalar(tau);
    let targets: Vec<usize> = (0..dims.n).collect();
    let a = logits.cross_entropy(&targets)?;
    let b = logits.t()?.cross_entropy(&targets)?;
    Ok(a.add(&b)?.mul_scalar(0.5))
}
