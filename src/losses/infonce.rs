//! The InfoNCE family, one softmax over similarities per anchor with exactly one positive:
//! [`nt_xent`] (SimCLR), [`clip`] (symmetric cross-modal InfoNCE), [`npair`] (Sohn's N-pair loss
//! on raw features) and [`moco`] (InfoNCE against a queue of keys).
//!
//! Everything is computed in log space (log-sum-exp with the row maximum subtracted), so no
//! temperature makes an exponential overflow. [`nt_xent`] and [`clip`] take their log-sum-exps
//! from the fused [`Tensor::similarity_logsumexp`], so their memory grows as O(N·d); the
//! composed N² forms are in [`plain`](super::plain).

use super::common::{Dims, Views, check_features, check_positive, rows, view};
use crate::error::{Error, Result};
use crate::ops::similarity::{Exclude, SimilarityMode};
use crate::tensor::{Float, Tensor};

/// The features shape NT-Xent takes, as its errors name it.
pub(crate) const NT_XENT_SHAPE: &str = "features (N, V, d), V ≥ 2";

/// SimCLR's NT-Xent (normalised temperature-scaled cross-entropy, InfoNCE over the VN rows).
///
/// Features `(N, V, d)`, `N ≥ 2`, `V ≥ 2` views (SimCLR: 2). With z the L2-normalised rows in
/// view-major order and `s_ij = z_i·z_j/τ`, for each of the VN anchors i with P(i) the other
/// V − 1 views of its sample:
///
/// `ℓ_i = −(1/(V−1)) Σ_{p∈P(i)} s_ip + log Σ_{k≠i} e^{s_ik}`, and the loss is `mean_i ℓ_i`.
///
/// With V = 2 that is SimCLR's `ℓ_i = −s_{i,p(i)} + log Σ_{k≠i} e^{s_ik}`: the denominator holds
/// the positive and the 2N − 2 negatives, never the anchor itself. The loss is not 0 for
/// identical views (4 orthonormal samples at τ = 0.5 give 0.594438). This is SimCLR's paper `L`;
/// the TF2 code reports twice this, SupContrast `τ/0.07` times this. With more views it is
/// SupContrast's `SupConLoss` without labels (every sample its own class, `L_out`), the
/// multi-view SimCLR of multi-crop training. Default τ = 0.5.
///
/// Memory is O(N·d): the log-sum-exp terms come from the fused
/// [`Tensor::similarity_logsumexp`], which streams the similarity matrix past
/// [`MATERIALIZE_LIMIT`](crate::ops::similarity::MATERIALIZE_LIMIT) entries, and the positives
/// are V(V−1)/2 · N dot products. [`plain::nt_xent`](super::plain::nt_xent) is the composed N²
/// form.
pub fn nt_xent<T: Float>(features: &Tensor<T>, tau: f64) -> Result<Tensor<T>> {
    nt_xent_with(features, tau, SimilarityMode::Auto)
}

/// [`nt_xent`] with the similarity regime chosen explicitly (tests force
/// [`SimilarityMode::Stream`] at small sizes; `Auto` picks by size).
pub fn nt_xent_with<T: Float>(
    features: &Tensor<T>,
    tau: f64,
    mode: SimilarityMode,
) -> Result<Tensor<T>> {
    const LOSS: &str = "nt_xent";
    check_positive(LOSS, "tau", tau)?;
    let dims = check_features(LOSS, features, Views::AtLeast(2), 2, NT_XENT_SHAPE)?;
    let (n, v) = (dims.n, dims.v);
    let z = rows(features, dims)?.normalize(1)?; // (VN, d)
    let lse = z.similarity_logsumexp_with(&z, 1.0 / tau, Exclude::Diagonal, mode)?; // (VN)
    // The mean over the VN anchors of their mean positive similarity: every pair of views (a, b)
    // of a sample appears twice, so 2 Σ_{a<b} Σ_j z_aj·z_bj / (VN(V−1)τ) (V = 2: Σ_j z0_j·z1_j/(Nτ)).
    let view = |a: usize| z.narrow(0, a * n, n);
    // The pair (0, 1) starts the sum; the loop adds every other pair a < b.
    let mut pairs = view(0)?.mul(&view(1)?)?.sum_all()?;
    for a in 0..v {
        for b in (a + 1).max(2)..v {
            pairs = pairs.add(&view(a)?.mul(&view(b)?)?.sum_all()?)?;
        }
    }
    let pos = pairs.mul_scalar(2.0 / ((v * n * (v - 1)) as f64 * tau));
    lse.mean_all()?.sub(&pos)
}

/// CLIP's symmetric InfoNCE between two modalities (view 0 and view 1).
///
/// Features `(N, 2, d)`, `N ≥ 2`. With Z₀, Z₁ the L2-normalised views (N × d) and
/// `L = Z₀Z₁ᵀ/τ`:
///
/// `loss = ½ [CE(L, I) + CE(Lᵀ, I)]`, each cross-entropy the mean over its N rows with target
/// the matching sample. There are no same-modality negatives. Default τ = 0.07 (CLIP's initial
/// temperature; here it is a fixed parameter, not learned).
///
/// Computed as `½ mean_i [lse_i(L) + lse_i(Lᵀ)] − mean_i L_ii` with two fused row log-sum-exps
/// (O(N·d) memory; [`plain::clip`](super::plain::clip) is the composed N² form).
pub fn clip<T: Float>(features: &Tensor<T>, tau: f64) -> Result<Tensor<T>> {
    clip_with(features, tau, SimilarityMode::Auto)
}

/// [`clip`] with the similarity regime chosen explicitly.
pub fn clip_with<T: Float>(
    features: &Tensor<T>,
    tau: f64,
    mode: SimilarityMode,
) -> Result<Tensor<T>> {
    const LOSS: &str = "clip";
    check_positive(LOSS, "tau", tau)?;
    let dims = check_features(LOSS, features, Views::Exactly(2), 2, "features (N, 2, d)")?;
    let z0 = view(features, dims, 0)?.normalize(1)?; // (N, d)
    let z1 = view(features, dims, 1)?.normalize(1)?; // (N, d)
    let by_row = z0.similarity_logsumexp_with(&z1, 1.0 / tau, Exclude::Nothing, mode)?; // (N)
    let by_col = z1.similarity_logsumexp_with(&z0, 1.0 / tau, Exclude::Nothing, mode)?; // (N)
    let pos = z0
        .mul(&z1)?
        .sum_all()?
        .mul_scalar(1.0 / (dims.n as f64 * tau));
    by_row.add(&by_col)?.mean_all()?.mul_scalar(0.5).sub(&pos)
}

/// Sohn's N-pair loss on raw (unnormalised) features.
///
/// Features `(N, 2, d)` = (anchor, positive), `N ≥ 2`. With A, P the two views (N × d):
///
/// `loss = CE(A Pᵀ, I) = mean_i [−a_i·p_i + log Σ_j e^{a_i·p_j}]`.
///
/// No temperature and no normalisation; Sohn's L2 penalty on the embedding norms is not
/// included (add it separately if wanted).
pub fn npair<T: Float>(features: &Tensor<T>) -> Result<Tensor<T>> {
    const LOSS: &str = "npair";
    let dims = check_features(LOSS, features, Views::Exactly(2), 2, "features (N, 2, d)")?;
    let a = view(features, dims, 0)?;
    let p = view(features, dims, 1)?;
    let targets: Vec<usize> = (0..dims.n).collect();
    a.matmul(&p.t()?)?.cross_entropy(&targets)
}

/// MoCo's InfoNCE of queries against their keys and a queue of negative keys.
///
/// Features `(N, 2, d)` = (query, key), `N ≥ 1`; `queue` is `(K, d)` with `K ≥ 1`. With q, k
/// the L2-normalised query and key rows and Q the L2-normalised queue rows:
///
/// `ℓ_i = −q_i·k_i/τ + log(e^{q_i·k_i/τ} + Σ_j e^{q_i·Q_j/τ})`, loss `mean_i ℓ_i`
/// (= `CE([q·k, q·Qᵀ]/τ, 0)`).
///
/// Keys and queue are constants: no gradient flows to view 1 of `features` or to `queue` (in
/// MoCo they come from the momentum encoder). Default τ = 0.2 (MoCo v2; v1 used 0.07).
pub fn moco<T: Float>(features: &Tensor<T>, queue: &Tensor<T>, tau: f64) -> Result<Tensor<T>> {
    const LOSS: &str = "moco";
    check_positive(LOSS, "tau", tau)?;
    let dims = check_features(
        LOSS,
        features,
        Views::Exactly(2),
        1,
        "features (N, 2, d) = (query, key)",
    )?;
    check_queue(LOSS, features, queue, dims)?;
    let q = view(features, dims, 0)?.normalize(1)?;
    let k = view(features, dims, 1)?.detach().normalize(1)?;
    let queue = queue.detach().normalize(1)?;
    let l_pos = q.mul(&k)?.sum(&[1], true)?;
    let l_neg = q.matmul(&queue.t()?)?;
    let logits = Tensor::concat(&[l_pos, l_neg], 1)?.div_scalar(tau);
    logits.cross_entropy(&vec![0; dims.n])
}

fn check_queue<T: Float>(
    loss: &'static str,
    features: &Tensor<T>,
    queue: &Tensor<T>,
    dims: Dims,
) -> Result<()> {
    let qd = queue.dims();
    if qd.len() != 2 || qd[1] != dims.d || qd[0] == 0 {
        return Err(Error::invalid(
            loss,
            format!(
                "queue of shape {qd:?} does not fit features of shape {:?}: expected (K, {}) with K ≥ 1",
                features.dims(),
                dims.d
            ),
        ));
    }
    if !queue.all_finite() {
        return Err(Error::invalid(
            loss,
            format!("queue of shape {qd:?} contains NaN or infinite values"),
        ));
    }
    Ok(())
}
