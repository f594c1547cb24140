//! Label-aware contrastive losses, where an anchor can have many positives: [`supcon`]
//! (Khosla et al.'s supervised contrastive loss, with a choice of [`Denominator`]), [`spread`]
//! (SupCon plus class-conditional InfoNCE, "Perfectly Balanced", Chen et al. 2022) and
//! [`tabi`] (TABi's type-aware loss, Leszczynski et al. 2022).
//!
//! All three share one masked core over the `(R, R)` similarity matrix. Anchors with no positive
//! are left out of the mean; a batch where no anchor has a positive is an error, never a NaN or a
//! silent 0.

use super::common::{
    Views, check_features, check_labels, check_positive, check_range, class_sums_per_row, constant,
    masked_logsumexp, partner, pick, row_labels, rows, similarities,
};
use crate::error::{Error, Result};
use crate::ops::similarity::{Exclude, SimilarityMode};
use crate::tensor::{Float, Tensor};
use std::collections::HashMap;

/// Which rows the log-sum-exp of a SupCon term runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Denominator {
    /// Every row but the anchor, other positives included: `log Σ_{k≠i} e^{s_ik}` (Khosla et
    /// al.'s `L_out`, SupContrast, pytorch-metric-learning's `SupConLoss`).
    #[default]
    All,
    /// Only the current positive and the rows with another label:
    /// `log(e^{s_ip} + Σ_{y_k≠y_i} e^{s_ik})` (TABi, thanos, pytorch-metric-learning's
    /// `NTXentLoss` with labels).
    Negatives,
}

impl Denominator {
    /// The parameter value naming this choice: `"all"` or `"negatives"`.
    pub fn name(self) -> &'static str {
        match self {
            Denominator::All => "all",
            Denominator::Negatives => "negatives",
        }
    }

    /// Parses `"all"` or `"negatives"`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "all" => Some(Denominator::All),
            "negatives" => Some(Denominator::Negatives),
            _ => None,
        }
    }
}

/// Per row: |P(i)|, the number of rows with another label, and the anchors (rows with a
/// positive).
struct Anchors {
    positives: Vec<usize>,
    negatives: Vec<usize>,
    anchors: Vec<usize>,
}

/// Counts positives and negatives per row; an error if no row has a positive.
fn anchors(loss: &'static str, labels: &[i64], what: &str, shape: &[usize]) -> Result<Anchors> {
    let r = labels.len();
    let mut class_size: HashMap<i64, usize> = HashMap::new();
    for &y in labels {
        *class_size.entry(y).or_default() += 1;
    }
    let positives: Vec<usize> = labels.iter().map(|y| class_size[y] - 1).collect();
    let negatives: Vec<usize> = labels.iter().map(|y| r - class_size[y]).collect();
    let anchors: Vec<usize> = (0..r).filter(|&i| positives[i] > 0).collect();
    if anchors.is_empty() {
        return Err(Error::invalid(
            loss,
            format!(
                "no anchor has a positive: the {r} {what} of features {shape:?} are all \
                 distinct, so the loss is undefined (use V ≥ 2 views or repeated labels)"
            ),
        ));
    }
    Ok(Anchors {
        positives,
        negatives,
        anchors,
    })
}

/// The SupCon core over a precomputed `(R, R)` similarity matrix `s` (already divided by τ) and
/// one label per row. `what` names the rows and labels in error messages; `shape` is the caller's
/// feature shape.
pub(crate) fn supcon_core<T: Float>(
    loss: &'static str,
    s: &Tensor<T>,
    labels: &[i64],
    denominator: Denominator,
    what: &str,
    shape: &[usize],
) -> Result<Tensor<T>> {
    let r = labels.len();
    let Anchors {
        positives,
        negatives,
        anchors,
    } = anchors(loss, labels, what, shape)?;
    let a = anchors.len();
    let sa = s.index_select(0, &anchors)?;
    // `not_positive[ai·R + j]`: row j is not a positive of anchor `anchors[ai]`.
    let not_positive = |rows: &[usize]| -> Vec<bool> {
        rows.iter()
            .flat_map(|&i| (0..r).map(move |j| j == i || labels[j] != labels[i]))
            .collect()
    };
    // 1/|P(i)| per anchor, as an (rows, 1) column.
    let inv_count = |rows: &[usize]| -> Result<Tensor<T>> {
        let v: Vec<f64> = rows.iter().map(|&i| 1.0 / positives[i] as f64).collect();
        constant(&v, &[rows.len(), 1])
    };
    match denominator {
        Denominator::All => {
            let keep: Vec<bool> = anchors
                .iter()
                .flat_map(|&i| (0..r).map(move |j| j != i))
                .collect();
            let lse = masked_logsumexp(&sa, &keep)?;
            let mean_pos = sa
                .masked_fill(&not_positive(&anchors), 0.0)?
                .sum(&[1], true)?
                .mul(&inv_count(&anchors)?)?
                .reshape(&[a])?;
            lse.sub(&mean_pos)?.mean_all()
        }
        Denominator::Negatives => {
            // Anchors without a negative contribute exactly 0 (every term is log(e^s/e^s)) but
            // still count in the mean, as in TABi.
            let with_neg: Vec<usize> = (0..a).filter(|&ai| negatives[anchors[ai]] > 0).collect();
            if with_neg.is_empty() {
                return Err(Error::invalid(
                    loss,
                    format!(
                        "no anchor has a negative: all {r} {what} of features {shape:?} are \
                         equal, so with denominator = negatives the loss is identically 0"
                    ),
                ));
            }
            let rows: Vec<usize> = with_neg.iter().map(|&ai| anchors[ai]).collect();
            let b = rows.len();
            let sb = sa.index_select(0, &with_neg)?;
            let keep: Vec<bool> = rows
                .iter()
                .flat_map(|&i| (0..r).map(move |j| labels[j] != labels[i]))
                .collect();
            let lneg = masked_logsumexp(&sb, &keep)?.reshape(&[b, 1])?;
            // −s_ip + log(e^{s_ip} + e^{lneg_i}) = softplus(lneg_i − s_ip), computed stably.
            let terms = lneg.sub(&sb)?.softplus();
            Ok(terms
                .masked_fill(&not_positive(&rows), 0.0)?
                .sum(&[1], true)?
                .mul(&inv_count(&rows)?)?
                .sum_all()?
                .div_scalar(a as f64))
        }
    }
}

/// Supervised contrastive loss (Khosla et al. 2020, `L_out`).
///
/// Features `(N, V, d)` with `V ≥ 1`, one label per sample (`labels.len() == N`). Rows are the
/// V·N L2-normalised feature rows in view-major order; row `v·N + i` has label `labels[i]`;
/// `s_ij = z_i·z_j/τ`; `P(i)` = the rows other than i with i's label. For each anchor with
/// `P(i) ≠ ∅`:
///
/// `ℓ_i = −(1/|P(i)|) Σ_{p∈P(i)} [s_ip − log Σ_{k≠i} e^{s_ik}]` ([`Denominator::All`]), or
/// `ℓ_i = −(1/|P(i)|) Σ_{p∈P(i)} [s_ip − log(e^{s_ip} + Σ_{y_k≠y_i} e^{s_ik})]`
/// ([`Denominator::Negatives`]).
///
/// The loss is the mean of `ℓ_i` over the anchors with a positive; anchors without one are left
/// out (not counted as 0, as SupContrast does). If no anchor has a positive (e.g. V = 1 and all
/// labels distinct) this returns an error; with `Negatives`, so does a batch with a single label
/// (the loss would be identically 0). There is no `τ/τ_base` factor. Default τ = 0.1.
///
/// Memory: with `All`, O(N·d) — the log-sum-exp comes from the fused
/// [`Tensor::similarity_logsumexp`] and `Σ_{p∈P(i)} s_ip = z_i·(c_{y_i} − z_i)/τ` from the class
/// sums `c_y`. With `Negatives` the matrix is formed ([`plain::supcon`](super::plain::supcon)):
/// each positive pair enters its own softplus `log(1 + e^{lneg_i − s_ip})`, a function of every
/// individual `s_ip`, so it needs all Σ_y n_y² positive similarities — Θ(N²) with few classes.
pub fn supcon<T: Float>(
    features: &Tensor<T>,
    labels: &[i64],
    tau: f64,
    denominator: Denominator,
) -> Result<Tensor<T>> {
    supcon_with(features, labels, tau, denominator, SimilarityMode::Auto)
}

/// [`supcon`](fn@supcon) with the similarity regime chosen explicitly (for
/// [`Denominator::All`]; `Negatives` always forms the matrix).
pub fn supcon_with<T: Float>(
    features: &Tensor<T>,
    labels: &[i64],
    tau: f64,
    denominator: Denominator,
    mode: SimilarityMode,
) -> Result<Tensor<T>> {
    const LOSS: &str = "supcon";
    if denominator == Denominator::Negatives {
        return super::plain::supcon(features, labels, tau, denominator);
    }
    check_positive(LOSS, "tau", tau)?;
    let dims = check_features(LOSS, features, Views::AtLeast(1), 1, "features (N, V, d)")?;
    check_labels(LOSS, "labels", labels, features.dims())?;
    let y = row_labels(labels, dims.v);
    let r = y.len();
    let Anchors {
        positives, anchors, ..
    } = anchors(LOSS, &y, "labels", features.dims())?;
    let z = rows(features, dims)?.normalize(1)?; // (R, d)
    let lse = z.similarity_logsumexp_with(&z, 1.0 / tau, Exclude::Diagonal, mode)?; // (R)
    let others = class_sums_per_row(&z, &y)?.sub(&z)?; // Σ_{p∈P(i)} z_p, (R, d)
    // (1/|P(i)|)·Σ_{p∈P(i)} s_ip; rows without a positive get weight 0 and are dropped below.
    let weight: Vec<f64> = positives
        .iter()
        .map(|&p| if p > 0 { 1.0 / (p as f64 * tau) } else { 0.0 })
        .collect();
    let mean_pos = z
        .mul(&others)?
        .sum(&[1], false)?
        .mul(&constant(&weight, &[r])?)?; // (R)
    let terms = lse.sub(&mean_pos)?;
    let terms = if anchors.len() == r {
        terms
    } else {
        terms.index_select(0, &anchors)?
    };
    terms.mean_all()
}

/// L_spread: SupCon mixed with class-conditional InfoNCE (Chen, Fu et al. 2022, "Perfectly
/// Balanced").
///
/// Features `(N, 2, d)`, `N ≥ 2`, one label per sample. With the rows, `s` and `P(i)` of
/// [`supcon`] (every anchor has a positive: its other view p(i)):
///
/// `ℓ_i = (1−α)·supcon_i + α·cNCE_i`, `cNCE_i = −s_{i,p(i)} + log Σ_{k≠i, y_k=y_i} e^{s_ik}`;
/// the loss is `mean_i ℓ_i`.
///
/// cNCE's positive is the anchor's own other view and its negatives are the other rows of the
/// same class, which spreads each class out instead of collapsing it. `denominator` selects the
/// SupCon term's log-sum-exp (the thanos reference code uses `Negatives`). Defaults τ = 0.5,
/// α = 0.5, denominator = all.
pub fn spread<T: Float>(
    features: &Tensor<T>,
    labels: &[i64],
    tau: f64,
    alpha: f64,
    denominator: Denominator,
) -> Result<Tensor<T>> {
    const LOSS: &str = "spread";
    check_positive(LOSS, "tau", tau)?;
    check_range(LOSS, "alpha", alpha, 0.0, 1.0, false)?;
    let dims = check_features(LOSS, features, Views::Exactly(2), 2, "features (N, 2, d)")?;
    check_labels(LOSS, "labels", labels, features.dims())?;
    let y = row_labels(labels, 2);
    let z = rows(features, dims)?.normalize(1)?;
    let s = similarities(&z, tau)?;
    let sup = supcon_core(LOSS, &s, &y, denominator, "labels", features.dims())?;
    let r = 2 * dims.n;
    let keep: Vec<bool> = (0..r * r)
        .map(|ik| {
            let (i, k) = (ik / r, ik % r);
            i != k && y[i] == y[k]
        })
        .collect();
    let cnce = masked_logsumexp(&s, &keep)?
        .sub(&pick(&s, &partner(dims.n))?)?
        .mean_all()?;
    sup.mul_scalar(1.0 - alpha).add(&cnce.mul_scalar(alpha))
}

/// TABi's type-aware contrastive loss (Leszczynski et al. 2022).
///
/// Features `(N, 2, d)` = (query, entity), one entity id per sample, and (when α > 0) one type
/// id per query, `−1` meaning untyped. Both terms are [`supcon`] with
/// [`Denominator::Negatives`] on L2-normalised rows:
///
/// - `L_ent` over the 2N rows (queries then entities) labelled by entity id: a query's positives
///   are its entity and every other query or entity with the same id;
/// - `L_type` over the N query rows labelled by type id; untyped queries are removed entirely
///   (neither anchor nor contrast).
///
/// `loss = τ·[α·L_type + (1−α)·L_ent]` (TABi scales by τ). A term with weight 0 is not computed,
/// so `types` may be `None` when α = 0. If no two typed queries share a type, `L_type` has no
/// anchor and this is an error (set α = 0 to train on `L_ent` alone). Defaults τ = 0.05, α = 0.1.
pub fn tabi<T: Float>(
    features: &Tensor<T>,
    entity_ids: &[i64],
    type_ids: Option<&[i64]>,
    tau: f64,
    alpha: f64,
) -> Result<Tensor<T>> {
    const LOSS: &str = "tabi";
    check_positive(LOSS, "tau", tau)?;
    check_range(LOSS, "alpha", alpha, 0.0, 1.0, false)?;
    let dims = check_features(
        LOSS,
        features,
        Views::Exactly(2),
        1,
        "features (N, 2, d) = (query, entity)",
    )?;
    check_labels(LOSS, "entity ids", entity_ids, features.dims())?;
    let typed: Option<Vec<usize>> = match (alpha > 0.0, type_ids) {
        (false, _) => None,
        (true, None) => {
            return Err(Error::invalid(
                LOSS,
                format!("alpha = {alpha} > 0 needs type ids (one per query, −1 = untyped)"),
            ));
        }
        (true, Some(types)) => {
            check_labels(LOSS, "type ids", types, features.dims())?;
            if let Some(&bad) = types.iter().find(|&&t| t < -1) {
                return Err(Error::invalid(
                    LOSS,
                    format!("type id {bad} is invalid: type ids are ≥ 0, or −1 for untyped"),
                ));
            }
            Some((0..dims.n).filter(|&i| types[i] != -1).collect())
        }
    };
    let z = rows(features, dims)?.normalize(1)?;
    let s = similarities(&z, tau)?;
    let l_ent = if alpha < 1.0 {
        let y = row_labels(entity_ids, 2);
        let l = supcon_core(
            LOSS,
            &s,
            &y,
            Denominator::Negatives,
            "entity ids",
            features.dims(),
        )?;
        Some(l.mul_scalar(1.0 - alpha))
    } else {
        None
    };
    let l_type = match (typed, type_ids) {
        (Some(typed), Some(types)) => {
            if typed.is_empty() {
                return Err(Error::invalid(
                    LOSS,
                    format!(
                        "every query of features {:?} is untyped (type −1), so L_type has no \
                         anchor; set alpha = 0 to use L_ent alone",
                        features.dims()
                    ),
                ));
            }
            let labels: Vec<i64> = typed.iter().map(|&i| types[i]).collect();
            let sq = s.index_select(0, &typed)?.index_select(1, &typed)?;
            let l = supcon_core(
                LOSS,
                &sq,
                &labels,
                Denominator::Negatives,
                "type ids of the typed queries",
                features.dims(),
            )?;
            Some(l.mul_scalar(alpha))
        }
        _ => None,
    };
    let total = match (l_ent, l_type) {
        (Some(e), Some(t)) => e.add(&t)?,
        (Some(e), None) => e,
        (None, Some(t)) => t,
        // α ∈ [0, 1]: α < 1 computes L_ent and α > 0 computes L_type.
        (None, None) => unreachable!("tabi: alpha = {alpha} selects neither term"),
    };
    Ok(total.mul_scalar(tau))
}
