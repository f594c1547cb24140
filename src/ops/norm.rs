//! Normalisation: L2 normalisation along an axis, and batch normalisation (1-d over `(N, C)` or
//! `(N, C, L)`, 2-d over `(N, C, H, W)`) with running statistics. Both are composed from
//! primitives, so their gradients are exact by construction (and gradient-checked).

use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};

/// Running estimates of per-channel mean and variance, updated by batch norm in training mode
/// and used in evaluation mode.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningStats<T: Float> {
    pub mean: Vec<T>,
    pub var: Vec<T>,
    /// Weight of the newest batch in the exponential moving average (PyTorch's `momentum`).
    pub momentum: f64,
}

impl<T: Float> RunningStats<T> {
    /// Mean 0, variance 1, momentum 0.1 (PyTorch's defaults).
    pub fn new(channels: usize) -> Self {
        RunningStats {
            mean: vec![T::ZERO; channels],
            var: vec![T::ONE; channels],
            momentum: 0.1,
        }
    }
}

/// Batch-norm options: `eps` is added to the variance under the square root.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormMode {
    pub training: bool,
    pub eps: f64,
}

impl<T: Float> Tensor<T> {
    /// `x / max(‖x‖₂, eps)` along `axis`, computed as `x / √max(Σx², eps²)` with the dtype's
    /// [`Float::NORM_EPS`]: no division by zero and no infinite gradient for a zero vector.
    pub fn normalize(&self, axis: isize) -> Result<Self> {
        let eps = T::NORM_EPS.to_f64();
        // `x·x` rather than `square()`: the same value and gradient without a `powf` per element.
        let norm = self
            .mul(self)?
            .sum(&[axis], true)?
            .clamp(eps * eps, f64::INFINITY)
            .sqrt();
        self.div(&norm)
    }

    /// Batch normalisation over every axis but 1 (the channels):
    /// `y = γ·(x − μ)/√(σ² + eps) + β`. In training, μ and σ² are the batch's (biased variance)
    /// and `running` is updated with the unbiased variance, as PyTorch does; in evaluation the
    /// running statistics are used as constants. `gamma` and `beta` have shape `(C)`.
    pub fn batch_norm(
        &self,
        gamma: Option<&Tensor<T>>,
        beta: Option<&Tensor<T>>,
        running: Option<&mut RunningStats<T>>,
        mode: BatchNormMode,
    ) -> Result<Self> {
        if !(2..=4).contains(&self.rank()) {
            return Err(Error::BadRank {
                op: "batch_norm",
                expected: "(N, C), (N, C, L) or (N, C, H, W)",
                shape: self.dims().to_vec(),
            });
        }
        let c = self.dims()[1];
        for p in [gamma, beta].into_iter().flatten() {
            if p.dims() != [c] {
                return Err(Error::ShapeMismatch {
                    op: "batch_norm (gamma and beta must be (C))",
                    lhs: self.dims().to_vec(),
                    rhs: p.dims().to_vec(),
                });
            }
        }
        if let Some(r) = running.as_deref()
            && (r.mean.len() != c || r.var.len() != c)
        {
            return Err(Error::invalid(
                "batch_norm",
                format!(
                    "running statistics hold {} channels, input {:?} has {c}",
                    r.mean.len(),
                    self.shape()
                ),
            ));
        }
        // Everything is computed on the `(N, C, L)` view (L = H·W, or 1), with per-channel
        // values of shape `(1, C, 1)`. Two choices keep the step fast (measured on the
        // `cnn_step` workload): every reduction is split into two over contiguous axes (L, then
        // N) instead of one over the non-adjacent axes {0, 2}, which would copy the whole input
        // into a permuted layout; and per-channel values are spread to `(N, C, 1)` before they
        // meet the full tensor, so the gradient of each broadcast is a sum over L (contiguous
        // rows, in parallel over the N·C rows) followed by a small one over N.
        let dims = self.dims().to_vec();
        let n = dims[0];
        let l = self.numel() / (n * c).max(1);
        let count = n * l;
        let x = self.reshape(&[n, c, l])?;
        let spread = |t: &Tensor<T>| t.broadcast_to(&[n, c, 1]);
        let (centred, scale) = if mode.training {
            if count < 2 {
                return Err(Error::invalid(
                    "batch_norm",
                    format!(
                        "training needs more than one value per channel, got shape {:?}",
                        self.shape()
                    ),
                ));
            }
            let mean = channel_mean(&x)?;
            let centred = x.sub(&spread(&mean)?)?;
            // Biased variance; `centred·centred` rather than `square()` avoids a `powf` per element.
            let var = channel_mean(&centred.mul(&centred)?)?;
            if let Some(r) = running {
                no_grad(|| {
                    let m = T::from_f64(r.momentum);
                    let unbias = T::from_f64(count as f64 / (count - 1) as f64);
                    for ch in 0..c {
                        r.mean[ch] = (T::ONE - m) * r.mean[ch] + m * mean.data()[ch];
                        r.var[ch] = (T::ONE - m) * r.var[ch] + m * var.data()[ch] * unbias;
                    }
                });
            }
            // 1/√(σ² + eps), per channel: C values, so the `powf` here costs nothing.
            (centred, var.add_scalar(mode.eps).powf(-0.5))
        } else {
            let r = running.ok_or_else(|| {
                Error::invalid("batch_norm", "evaluation mode needs running statistics")
            })?;
            let mean = Tensor::from_vec(r.mean.clone(), [1, c, 1])?;
            let inv_std: Vec<T> = r
                .var
                .iter()
                .map(|&v| T::ONE / (v + T::from_f64(mode.eps)).sqrt())
                .collect();
            (
                x.sub(&spread(&mean)?)?,
                Tensor::from_vec(inv_std, [1, c, 1])?,
            )
        };
        // γ folds into the per-channel scale, so the full tensor is multiplied once.
        let scale = match gamma {
            Some(g) => scale.mul(&g.reshape(&[1, c, 1])?)?,
            None => scale,
        };
        let y = centred.mul(&spread(&scale)?)?; // (N, C, L)
        let y = match beta {
            Some(b) => y.add(&spread(&b.reshape(&[1, c, 1])?)?)?,
            None => y,
        };
        y.reshape(&dims)
    }
}

/// The per-channel mean of `(N, C, L)` as `(1, C, 1)`: a sum over L (contiguous rows), then over
/// N (contiguous blocks of C), so no permuted copy of the input is made.
fn channel_mean<T: Float>(x: &Tensor<T>) -> Result<Tensor<T>> {
    let count = x.dims()[0] * x.dims()[2];
    Ok(x.sum(&[2], true)?
        .sum(&[0], true)?
        .mul_scalar(1.0 / count as f64))
}
