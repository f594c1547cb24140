//! Coarse-to-fine transfer: an encoder trained with coarse labels (digit < 5 vs ≥ 5, or the five
//! pairs {0,1}, {2,3}, …) is probed on the fine labels it never saw. A representation that has
//! collapsed each coarse class to a point cannot separate the fine classes inside it; one that
//! keeps the subclass structure can. [`Coarsening`] builds the coarse labels; [`coarse_to_fine`]
//! runs the [linear probe](super::linear_probe) on both labelings.

use super::probe::{ProbeConfig, ProbeReport, linear_probe};
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use std::fmt;

/// A map from fine to coarse labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coarsening {
    /// Digits 0–4 → 0, 5–9 → 1 (fine labels must be < 10).
    Halves,
    /// {0,1} → 0, {2,3} → 1, …, {8,9} → 4 (fine labels must be < 10).
    Pairs,
    /// Fine label l → `map[l]` (fine labels must be < `map.len()`).
    Map(Vec<usize>),
}

impl Coarsening {
    /// A short name for reports: `halves`, `pairs` or `map`.
    pub fn name(&self) -> &'static str {
        match self {
            Coarsening::Halves => "halves",
            Coarsening::Pairs => "pairs",
            Coarsening::Map(_) => "map",
        }
    }

    /// The coarse label of each fine label.
    pub fn apply(&self, fine: &[usize]) -> Result<Vec<usize>> {
        let (limit, what) = match self {
            Coarsening::Halves | Coarsening::Pairs => (10, "a digit coarsening"),
            Coarsening::Map(map) => (map.len(), "the coarsening map"),
        };
        if let Some(&bad) = fine.iter().find(|&&l| l >= limit) {
            return Err(Error::invalid(
                "coarsening",
                format!("fine label {bad} is outside 0..{limit} covered by {what}"),
            ));
        }
        Ok(fine
            .iter()
            .map(|&l| match self {
                Coarsening::Halves => usize::from(l >= 5),
                Coarsening::Pairs => l / 2,
                Coarsening::Map(map) => map[l],
            })
            .collect())
    }
}

/// Linear probes of the same embeddings on coarse and on fine labels.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferReport {
    pub coarsening: Coarsening,
    /// The probe on the coarse labels (what the encoder was trained to separate).
    pub coarse: ProbeReport,
    /// The probe on the fine labels (what transfer measures).
    pub fine: ProbeReport,
}

impl fmt::Display for TransferReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "coarse-to-fine ({}): coarse test {:.2}% (K = {}), fine test {:.2}% (K = {})",
            self.coarsening.name(),
            100.0 * self.coarse.test_accuracy,
            self.coarse.num_classes,
            100.0 * self.fine.test_accuracy,
            self.fine.num_classes
        )
    }
}

/// Probes `train`/`test` embeddings (from an encoder trained on `coarsening` of the labels) on
/// the coarse labels and on the fine labels; the fine probe is the transfer measurement.
pub fn coarse_to_fine<T: Float>(
    train: &Tensor<T>,
    train_fine: &[usize],
    test: &Tensor<T>,
    test_fine: &[usize],
    coarsening: &Coarsening,
    config: &ProbeConfig,
) -> Result<TransferReport> {
    let train_coarse = coarsening.apply(train_fine)?;
    let test_coarse = coarsening.apply(test_fine)?;
    Ok(TransferReport {
        coarsening: coarsening.clone(),
        coarse: linear_probe(train, &train_coarse, test, &test_coarse, config)?,
        fine: linear_probe(train, train_fine, test, test_fine, config)?,
    })
}
