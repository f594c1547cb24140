//! Nearest neighbours by cosine similarity: the weighted kNN classifier (the "kNN monitor" of
//! Wu et al. 2018, used by InfoNCE-style methods to track training) and retrieval recall@k.
//!
//! Both L2-normalise the rows, then compute similarities `Q·Bᵀ` with the engine's matmul in
//! blocks of query rows, keeping at most [`BLOCK_ELEMENTS`] similarities in memory at a time, and
//! select the k most similar bank rows of each query. Ties in similarity go to the lower bank
//! index, so the neighbour lists, and everything computed from them, are deterministic.

use super::{accuracy, argmax, check_labels, check_same_width, matrix_dims};
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use std::cmp::Ordering;
use std::fmt;

/// The most similarities held at once: a block of queries × the whole bank (16 MiB in `f32`).
pub const BLOCK_ELEMENTS: usize = 1 << 22;

/// How neighbours vote in [`knn_predict`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KnnWeighting {
    /// Each of the k neighbours adds 1 to its class.
    Uniform,
    /// A neighbour with cosine similarity s adds `e^{s/τ}` to its class (Wu et al. 2018).
    Exp { tau: f64 },
}

/// kNN settings. Defaults: k = 20, weights `e^{s/0.07}`.
///
/// Wu et al. use k = 200 on ImageNet; 20 keeps the same character on small banks such as the
/// 1,437 training digits (200 would be 14% of the bank, about all of a class).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnConfig {
    pub k: usize,
    pub weighting: KnnWeighting,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            k: 20,
            weighting: KnnWeighting::Exp { tau: 0.07 },
        }
    }
}

/// What [`knn_accuracy`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnReport {
    pub accuracy: f64,
    pub k: usize,
    pub weighting: KnnWeighting,
    pub num_queries: usize,
}

impl fmt::Display for KnnReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let weights = match self.weighting {
            KnnWeighting::Uniform => "uniform votes".to_string(),
            KnnWeighting::Exp { tau } => format!("weights e^(s/{tau})"),
        };
        write!(
            f,
            "kNN (cosine, k = {}, {weights}): accuracy {:.2}% on {} queries",
            self.k,
            100.0 * self.accuracy,
            self.num_queries
        )
    }
}

/// The class of each query row by a vote of its k most cosine-similar `bank` rows (the class
/// with the largest total weight; the lowest class index on ties).
pub fn knn_predict<T: Float>(
    bank: &Tensor<T>,
    bank_labels: &[usize],
    queries: &Tensor<T>,
    config: &KnnConfig,
) -> Result<Vec<usize>> {
    const OP: &str = "knn";
    let (n, _) = matrix_dims(OP, "the bank", bank, 1)?;
    matrix_dims(OP, "the queries", queries, 0)?;
    check_same_width(OP, bank, queries)?;
    let classes = check_labels(OP, "bank labels", bank_labels, n)?;
    if let KnnWeighting::Exp { tau } = config.weighting
        && !(tau.is_finite() && tau > 0.0)
    {
        return Err(Error::invalid(
            OP,
            format!("τ = {tau} must be finite and > 0"),
        ));
    }
    let neighbours = top_k_cosine(OP, bank, queries, config.k, false)?;
    let mut votes = vec![0.0; classes];
    Ok(neighbours
        .iter()
        .map(|list| {
            votes.iter_mut().for_each(|v| *v = 0.0);
            // Weights relative to the best neighbour: e^{(s − s₁)/τ} has the same argmax as
            // e^{s/τ} and cannot overflow however small τ is.
            let top = list.first().map_or(0.0, |&(_, s)| s);
            for &(j, s) in list {
                votes[bank_labels[j]] += match config.weighting {
                    KnnWeighting::Uniform => 1.0,
                    KnnWeighting::Exp { tau } => ((s - top) / tau).exp(),
                };
            }
            argmax(&votes)
        })
        .collect())
}

/// The accuracy of [`knn_predict`] on labelled queries (a held-out set against the training
/// bank).
pub fn knn_accuracy<T: Float>(
    bank: &Tensor<T>,
    bank_labels: &[usize],
    queries: &Tensor<T>,
    query_labels: &[usize],
    config: &KnnConfig,
) -> Result<KnnReport> {
    let (m, _) = matrix_dims("knn", "the queries", queries, 1)?;
    check_labels("knn", "query labels", query_labels, m)?;
    let predicted = knn_predict(bank, bank_labels, queries, config)?;
    Ok(KnnReport {
        accuracy: accuracy(&predicted, query_labels),
        k: config.k,
        weighting: config.weighting,
        num_queries: m,
    })
}

/// Retrieval recall@k for several k: the fraction of queries with at least one item of their
/// own class among their k nearest database items.
#[derive(Debug, Clone, PartialEq)]
pub struct RecallReport {
    /// The k values, as given.
    pub ks: Vec<usize>,
    /// `recall[i]` is recall@`ks[i]`.
    pub recall: Vec<f64>,
}

impl RecallReport {
    /// Recall@k for one of the requested k, if it was computed.
    pub fn at(&self, k: usize) -> Option<f64> {
        self.ks.iter().position(|&x| x == k).map(|i| self.recall[i])
    }
}

impl fmt::Display for RecallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retrieval (cosine):")?;
        for (k, r) in self.ks.iter().zip(&self.recall) {
            write!(f, " recall@{k} {:.2}%", 100.0 * r)?;
        }
        Ok(())
    }
}

/// Recall@k of `queries` against a separate `database` (e.g. test queries, training database).
pub fn recall_at_k<T: Float>(
    database: &Tensor<T>,
    database_labels: &[usize],
    queries: &Tensor<T>,
    query_labels: &[usize],
    ks: &[usize],
) -> Result<RecallReport> {
    recall(database, database_labels, queries, query_labels, ks, false)
}

/// Recall@k with every row as a query against all the others (the query itself is excluded),
/// as in the metric-learning benchmarks. Needs `k ≤ N − 1`.
pub fn recall_at_k_self<T: Float>(
    embeddings: &Tensor<T>,
    labels: &[usize],
    ks: &[usize],
) -> Result<RecallReport> {
    recall(embeddings, labels, embeddings, labels, ks, true)
}

fn recall<T: Float>(
    database: &Tensor<T>,
    database_labels: &[usize],
    queries: &Tensor<T>,
    query_labels: &[usize],
    ks: &[usize],
    exclude_self: bool,
) -> Result<RecallReport> {
    const OP: &str = "recall_at_k";
    let (n, _) = matrix_dims(OP, "the database", database, 1)?;
    let (m, _) = matrix_dims(OP, "the queries", queries, 1)?;
    check_same_width(OP, database, queries)?;
    check_labels(OP, "database labels", database_labels, n)?;
    check_labels(OP, "query labels", query_labels, m)?;
    if ks.is_empty() || ks.contains(&0) {
        return Err(Error::invalid(
            OP,
            format!("every k must be ≥ 1, got {ks:?}"),
        ));
    }
    let k_max = ks.iter().copied().max().unwrap_or(1);
    let neighbours = top_k_cosine(OP, database, queries, k_max, exclude_self)?;
    let recall = ks
        .iter()
        .map(|&k| {
            let hits = neighbours
                .iter()
                .zip(query_labels)
                .filter(|&(list, &y)| list[..k].iter().any(|&(j, _)| database_labels[j] == y))
                .count();
            hits as f64 / m as f64
        })
        .collect();
    Ok(RecallReport {
        ks: ks.to_vec(),
        recall,
    })
}

/// For each query row, its k most cosine-similar bank rows as `(bank index, similarity)`, most
/// similar first. With `exclude_self` (queries and bank are the same rows), row i is never its
/// own neighbour. Errors when k = 0 or k exceeds the candidates (N, or N − 1 without self).
pub(crate) fn top_k_cosine<T: Float>(
    op: &'static str,
    bank: &Tensor<T>,
    queries: &Tensor<T>,
    k: usize,
    exclude_self: bool,
) -> Result<Vec<Vec<(usize, f64)>>> {
    let n = bank.dims()[0];
    let m = queries.dims()[0];
    let candidates = n - usize::from(exclude_self);
    if k == 0 || k > candidates {
        return Err(Error::invalid(
            op,
            format!("k = {k} must be in 1..={candidates} (the neighbours each query can have)"),
        ));
    }
    let bank_t = bank.normalize(1)?.t()?; // (d, N)
    let queries = queries.normalize(1)?; // (M, d)
    let rows_per_block = (BLOCK_ELEMENTS / n).max(1);
    let mut out = Vec::with_capacity(m);
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for start in (0..m).step_by(rows_per_block) {
        let rows = rows_per_block.min(m - start);
        let sims = queries.narrow(0, start, rows)?.matmul(&bank_t)?; // (rows, N)
        for (r, row) in sims.data().chunks(n).enumerate() {
            let own = exclude_self.then_some(start + r);
            // Most similar first, then the lower index: a total order, so the result does
            // not depend on how the selection permutes equal keys.
            let by_rank = |a: &usize, b: &usize| {
                row[*b]
                    .partial_cmp(&row[*a])
                    .unwrap_or(Ordering::Equal)
                    .then(a.cmp(b))
            };
            order.clear();
            order.extend((0..n).filter(|&j| Some(j) != own));
            if k < order.len() {
                order.select_nth_unstable_by(k - 1, by_rank);
                order.truncate(k);
            }
            order.sort_unstable_by(by_rank);
            out.push(order.iter().map(|&j| (j, row[j].to_f64())).collect());
        }
    }
    Ok(out)
}
