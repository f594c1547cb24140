//! Batch normalisation layers (`torch.nn.BatchNorm1d` / `BatchNorm2d`): a learned scale γ
//! (`weight`) and shift β (`bias`), and running estimates of the per-channel mean and variance
//! kept as buffers (`running_mean`, `running_var`, `num_batches_tracked`, PyTorch's names), so
//! that a checkpoint carries them and evaluation after loading matches evaluation before saving.

use super::{Mode, Module, join};
use crate::error::{Error, Result};
use crate::ops::norm::{BatchNormMode, RunningStats};
use crate::tensor::{Float, Tensor};

/// Batch norm over every axis but the channels (axis 1). In [`Mode::Train`] it normalises with
/// the batch's statistics and updates the running ones (`r ← (1−m)·r + m·batch`, unbiased
/// variance); in [`Mode::Eval`] it normalises with the running statistics.
#[derive(Debug, Clone)]
pub struct BatchNorm<T: Float> {
    /// γ, `(C)`, initialised to 1.
    pub weight: Tensor<T>,
    /// β, `(C)`, initialised to 0.
    pub bias: Tensor<T>,
    /// `(C)`, initialised to 0.
    pub running_mean: Tensor<T>,
    /// `(C)`, initialised to 1.
    pub running_var: Tensor<T>,
    /// Rank 0: training batches seen (kept for PyTorch's `state_dict` layout).
    pub num_batches_tracked: Tensor<T>,
    /// Weight of the newest batch in the running averages (PyTorch's default 0.1).
    pub momentum: f64,
    /// Added to the variance under the square root (PyTorch's default 1e-5).
    pub eps: f64,
    /// 2-d (`(N, C, H, W)`) rather than 1-d (`(N, C)` or `(N, C, L)`).
    spatial: bool,
}

impl<T: Float> BatchNorm<T> {
    fn new(channels: usize, spatial: bool) -> Result<Self> {
        if channels == 0 {
            return Err(Error::invalid("BatchNorm", "channels must be positive"));
        }
        Ok(BatchNorm {
            weight: Tensor::ones([channels]).requires_grad_(),
            bias: Tensor::zeros([channels]).requires_grad_(),
            running_mean: Tensor::zeros([channels]),
            running_var: Tensor::ones([channels]),
            num_batches_tracked: Tensor::scalar(T::ZERO),
            momentum: 0.1,
            eps: 1e-5,
            spatial,
        })
    }

    /// `torch.nn.BatchNorm1d(channels)`: inputs `(N, C)` or `(N, C, L)`.
    pub fn new_1d(channels: usize) -> Result<Self> {
        Self::new(channels, false)
    }

    /// `torch.nn.BatchNorm2d(channels)`: inputs `(N, C, H, W)`.
    pub fn new_2d(channels: usize) -> Result<Self> {
        Self::new(channels, true)
    }

    pub fn channels(&self) -> usize {
        self.weight.numel()
    }
}

impl<T: Float> BatchNorm<T> {
    /// The forward pass, followed by a ReLU in the same op when `relu` is set.
    pub(crate) fn forward_with_relu(
        &mut self,
        x: &Tensor<T>,
        mode: Mode,
        relu: bool,
    ) -> Result<Tensor<T>> {
        let rank_ok = if self.spatial {
            x.rank() == 4
        } else {
            matches!(x.rank(), 2 | 3)
        };
        if !rank_ok {
            return Err(Error::BadRank {
                op: if self.spatial {
                    "BatchNorm2d"
                } else {
                    "BatchNorm1d"
                },
                expected: if self.spatial {
                    "(N, C, H, W)"
                } else {
                    "(N, C) or (N, C, L)"
                },
                shape: x.dims().to_vec(),
            });
        }
        let mut running = RunningStats {
            mean: self.running_mean.to_vec(),
            var: self.running_var.to_vec(),
            momentum: self.momentum,
        };
        let batch_norm = if relu {
            Tensor::batch_norm_relu
        } else {
            Tensor::batch_norm
        };
        let y = batch_norm(
            x,
            Some(&self.weight),
            Some(&self.bias),
            Some(&mut running),
            BatchNormMode {
                training: mode.is_train(),
                eps: self.eps,
            },
        )?;
        if mode.is_train() {
            self.running_mean.set_data(running.mean)?;
            self.running_var.set_data(running.var)?;
            let seen = self.num_batches_tracked.item()? + T::ONE;
            self.num_batches_tracked.set_data(vec![seen])?;
        }
        Ok(y)
    }
}

impl<T: Float> Module<T> for BatchNorm<T> {
    fn forward(&mut self, x: &Tensor<T>, mode: Mode) -> Result<Tensor<T>> {
        self.forward_with_relu(x, mode, false)
    }

    fn forward_relu(&mut self, x: &Tensor<T>, mode: Mode) -> Option<Result<Tensor<T>>> {
        Some(self.forward_with_relu(x, mode, true))
    }

    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<T>)) {
        f(&join(prefix, "weight"), &self.weight);
        f(&join(prefix, "bias"), &self.bias);
    }

    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, &'a mut Tensor<T>),
    ) {
        f(&join(prefix, "weight"), &mut self.weight);
        f(&join(prefix, "bias"), &mut self.bias);
    }

    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<T>)) {
        f(&join(prefix, "running_mean"), &self.running_mean);
        f(&join(prefix, "running_var"), &self.running_var);
        f(
            &join(prefix, "num_batches_tracked"),
            &self.num_batches_tracked,
        );
    }

    fn visit_buffers_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, &'a mut Tensor<T>),
    ) {
        f(&join(prefix, "running_mean"), &mut self.running_mean);
        f(&join(prefix, "running_var"), &mut self.running_var);
        f(
            &join(prefix, "num_batches_tracked"),
            &mut self.num_batches_tracked,
        );
    }
}
