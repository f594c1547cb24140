//! The differentiable all-gather, [`Tensor::all_gather_rows`]: each rank's `(n, …)` rows become
//! the `(K·n, …)` rows of the whole group, rank-major, on every rank.
//!
//! Gradient: rank `r`'s rows reach the output of *every* rank, so the gradient of `Σ_s L_s`
//! (the per-rank losses summed over the group) with respect to rank `r`'s input is
//! `Σ_s (∂L_s/∂Y)[rows of r]`: the incoming gradient all-reduced over the ranks, then this rank's
//! slice. When every rank computes the same global loss `L`, that sum is `K·∂L/∂Y`; the
//! data-parallel step backpropagates `L/K` to get exactly `∂L/∂Y` (see `data_parallel`).

use super::collective::Collective;
use crate::autograd::Op;
use crate::error::{Error, Result};
use crate::tensor::{Float, Shape, Tensor};
use std::sync::Arc;

impl<T: Float> Tensor<T> {
    /// All-gather along dim 0: `(n, …)` on each of the `K` ranks of `comm` → `(K·n, …)`, rows
    /// `r·n .. (r+1)·n` from rank `r`. Every rank must pass the same shape (the element counts
    /// are checked). `∂/∂x_r = (Σ_ranks ∂Y)[r·n .. (r+1)·n]`: gradient all-reduce, then slice.
    ///
    /// A collective: every rank calls it, and — when it records a graph — every rank's backward
    /// reaches it, in the same order.
    pub fn all_gather_rows(&self, comm: &Arc<dyn Collective<T>>) -> Result<Tensor<T>> {
        if self.rank() == 0 {
            return Err(Error::BadRank {
                op: "all_gather_rows",
                expected: "a tensor of rank ≥ 1 (rows to gather)",
                shape: self.dims().to_vec(),
            });
        }
        if self.is_cuda() {
            // The collectives exchange host buffers: gather on the host, with the moves
            // recorded so that the gradient comes back to the GPU.
            let host = self.to_device(&crate::tensor::Device::Cpu)?;
            return host.all_gather_rows(comm)?.to_device(&self.device());
        }
        let data = comm.all_gather(self.data())?;
        let mut dims = self.dims().to_vec();
        dims[0] *= comm.size();
        Ok(Tensor::from_op(
            data,
            Shape::new(dims),
            Op::AllGatherRows {
                input: self.clone(),
                comm: Arc::clone(comm),
            },
        ))
    }
}

/// The backward of [`Tensor::all_gather_rows`]: `grad` `(K·n, …)` summed over the ranks, then
/// this rank's `n` rows.
pub(crate) fn all_gather_rows_backward<T: Float>(
    grad: &Tensor<T>,
    input: &Tensor<T>,
    comm: &Arc<dyn Collective<T>>,
) -> Result<Tensor<T>> {
    let mut summed = grad.data().to_vec();
    comm.all_reduce_sum(&mut summed)?;
    let n = input.numel();
    let start = comm.rank() * n;
    let mine = summed.get(start..start + n).ok_or_else(|| {
        Error::invalid(
            "all_gather_rows backward",
            format!(
                "gradient of {} values has no rows for rank {}",
                summed.len(),
                comm.rank()
            ),
        )
    })?;
    Tensor::from_vec(mine.to_vec(), input.shape().clone())
}
