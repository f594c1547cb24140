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
        let norm = self
            .square()
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
        let mut bshape = vec![1; self.rank()];
        bshape[1] = c;
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
        let axes: Vec<isize> = (0..self.rank() as isize).filter(|&a| a != 1).collect();
        let count = self.numel() / c.max(1);
        let normalised = if mode.training {
            if count < 2 {
                return Err(Error::invalid(
                    "batch_norm",
                    format!(
                        "training needs more than one value per channel, got shape {:?}",
                        self.shape()
                    ),
                ));
            }
            let mean = self.mean(&axes, true)?;
            let var = self.var(&axes, true, 0)?;
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
            self.sub(&mean)?.div(&var.add_scalar(mode.eps).sqrt())?
        } else {
            let r = running.ok_or_else(|| {
                Error::invalid("batch_norm", "evaluation mode needs running statistics")
            })?;
            let mean = Tensor::from_vec(r.mean.clone(), bshape.clone())?;
            let inv_std: Vec<T> = r
                .var
                .iter()
                .map(|&v| T::ONE / (v + T::from_f64(mode.eps)).sqrt())
                .collect();
            self.sub(&mean)?
                .mul(&Tensor::from_vec(inv_std, bshape.clone())?)?
        };
        let scaled = match gamma {
            Some(g) => normalised.mul(&g.reshape(&bshape)?)?,
            None => normalised,
        };
        match beta {
            Some(b) => scaled.add(&b.reshape(&bshape)?),
            None => Ok(scaled),
        }
    }
}
