//! Composite functions used by models and losses: cross-entropy with integer targets, and
//! seeded dropout.

use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use rand::{Rng, RngExt};

impl<T: Float> Tensor<T> {
    /// Mean cross-entropy of `(N, K)` logits against integer class `targets` (length N):
    /// `mean_i [logsumexp(xᵢ) − xᵢ,tᵢ]`. Stable for any finite logits; gradient
    /// `(softmax(xᵢ) − onehot(tᵢ))/N`.
    pub fn cross_entropy(&self, targets: &[usize]) -> Result<Self> {
        if self.rank() != 2 {
            return Err(Error::BadRank {
                op: "cross_entropy",
                expected: "(N, K) logits",
                shape: self.dims().to_vec(),
            });
        }
        let (n, k) = (self.dims()[0], self.dims()[1]);
        if targets.len() != n {
            return Err(Error::invalid(
                "cross_entropy",
                format!(
                    "{} targets for {n} rows of logits {:?}",
                    targets.len(),
                    self.shape()
                ),
            ));
        }
        if let Some(&bad) = targets.iter().find(|&&t| t >= k) {
            return Err(Error::IndexOutOfRange {
                op: "cross_entropy",
                index: bad as i64,
                size: k,
            });
        }
        Ok(self
            .log_softmax(1)?
            .gather(1, targets, &[n, 1])?
            .mean_all()?
            .neg())
    }

    /// Inverted dropout: in training, each element is zeroed with probability `p` and the rest
    /// scaled by `1/(1 − p)`, drawing from `rng`; otherwise the identity.
    pub fn dropout(&self, p: f64, training: bool, rng: &mut impl Rng) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout",
                format!("probability {p} is outside [0, 1]"),
            ));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
        let mask: Vec<T> = (0..self.numel())
            .map(|_| T::from_f64(if rng.random::<f64>() < p { 0.0 } else { scale }))
            .collect();
        self.mul(&Tensor::from_vec(mask, self.shape().clone())?.to_device(&self.device())?)
    }
}
