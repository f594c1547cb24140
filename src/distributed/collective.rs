//! The [`Collective`] trait: the handful of operations data-parallel training needs from a group
//! of `K` ranks (gather, all-reduce, broadcast, barrier), with [`Solo`] (one rank, the identity)
//! as its simplest implementation and [`Timed`] as a wrapper that measures the time spent in it.
//!
//! Every reduction is deterministic: [`Collective::all_reduce_sum`] gathers every rank's buffer
//! and adds them in rank order, `((x₀ + x₁) + x₂) + …`, on every rank. A tree or ring reduction
//! would move less data, but its summation order depends on the implementation (and, in MPI, on
//! the message sizes and timing), so ranks could end up with parameters that differ in the last
//! bit and drift apart. With gather-and-sum every rank computes the same bits.

use crate::error::{Error, Result};
use crate::tensor::Float;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A group of `size()` ranks that call the same collective operations in the same order.
///
/// Each method is a collective: every rank of the group must call it, in the same sequence, or
/// the group deadlocks (MPI) or returns an error (a [`crate::distributed::ThreadGroup`] whose
/// member left). Implementations are `Send + Sync` so that a handle can live inside the autograd
/// graph (the gradient of [`crate::Tensor::all_gather_rows`] all-reduces).
pub trait Collective<T: Float>: Send + Sync + fmt::Debug {
    /// This rank, `0..size()`.
    fn rank(&self) -> usize;

    /// The number of ranks `K`.
    fn size(&self) -> usize;

    /// Every rank's `local`, concatenated in rank order (`K·len` values). All ranks must pass
    /// the same number of values; a mismatch is an error on every rank.
    fn all_gather(&self, local: &[T]) -> Result<Vec<T>>;

    /// Replaces `values` on every rank with rank `root`'s `values` (same length everywhere).
    fn broadcast(&self, values: &mut [T], root: usize) -> Result<()>;

    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;

    /// `values ← Σ_ranks values`, elementwise, on every rank: gathered, then added in rank order
    /// so that every rank gets bitwise the same sums (see the module docs).
    fn all_reduce_sum(&self, values: &mut [T]) -> Result<()> {
        let all = self.all_gather(values)?;
        sum_in_rank_order(&all, values);
        Ok(())
    }
}

/// `out ← Σ_r all[r·n .. (r+1)·n]` with `n = out.len()`, adding rank by rank.
pub(crate) fn sum_in_rank_order<T: Float>(all: &[T], out: &mut [T]) {
    let n = out.len();
    if n == 0 {
        return;
    }
    let mut parts = all.chunks_exact(n);
    if let Some(first) = parts.next() {
        out.copy_from_slice(first);
    }
    for part in parts {
        for (o, v) in out.iter_mut().zip(part) {
            *o += *v;
        }
    }
}

/// Checks that `root` names a rank of a group of `size`.
pub(crate) fn check_root(op: &'static str, root: usize, size: usize) -> Result<()> {
    if root >= size {
        return Err(Error::invalid(
            op,
            format!("root rank {root} is outside the group of {size} ranks"),
        ));
    }
    Ok(())
}

/// One rank alone: every collective is the identity. What a single process uses, so that the
/// data-parallel code path is the only code path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Solo;

impl<T: Float> Collective<T> for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_gather(&self, local: &[T]) -> Result<Vec<T>> {
        Ok(local.to_vec())
    }
    fn broadcast(&self, _values: &mut [T], root: usize) -> Result<()> {
        check_root("broadcast", root, 1)
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum(&self, _values: &mut [T]) -> Result<()> {
        Ok(())
    }
}

/// A shared [`Solo`] handle, ready for [`crate::Tensor::all_gather_rows`].
pub fn solo<T: Float>() -> Arc<dyn Collective<T>> {
    Arc::new(Solo)
}

/// Time spent in the collectives of a [`Timed`] group, in seconds, by kind. The time includes
/// waiting for the slowest rank to arrive, which is the real cost to the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommTimes {
    pub all_gather: f64,
    pub all_reduce: f64,
    /// Broadcasts and barriers.
    pub other: f64,
    /// Number of calls of any kind.
    pub calls: u64,
}

impl CommTimes {
    pub fn total(&self) -> f64 {
        self.all_gather + self.all_reduce + self.other
    }
}

/// Wraps a collective and accumulates the wall time of each call ([`Timed::times`]).
pub struct Timed<T: Float> {
    inner: Arc<dyn Collective<T>>,
    times: Mutex<CommTimes>,
}

impl<T: Float> fmt::Debug for Timed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timed").field("inner", &self.inner).finish()
    }
}

impl<T: Float> Timed<T> {
    pub fn new(inner: Arc<dyn Collective<T>>) -> Self {
        Timed {
            inner,
            times: Mutex::new(CommTimes::default()),
        }
    }

    /// The accumulated times so far.
    pub fn times(&self) -> CommTimes {
        self.times.lock().map(|t| *t).unwrap_or_default()
    }

    fn record<R>(&self, slot: fn(&mut CommTimes) -> &mut f64, f: impl FnOnce() -> R) -> R {
        let started = Instant::now();
        let out = f();
        let seconds = started.elapsed().as_secs_f64();
        // A poisoned lock only loses a timing sample; never fail a collective for it.
        if let Ok(mut t) = self.times.lock() {
            *slot(&mut t) += seconds;
            t.calls += 1;
        }
        out
    }
}

impl<T: Float> Collective<T> for Timed<T> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn all_gather(&self, local: &[T]) -> Result<Vec<T>> {
        self.record(|t| &mut t.all_gather, || self.inner.all_gather(local))
    }
    fn broadcast(&self, values: &mut [T], root: usize) -> Result<()> {
        self.record(|t| &mut t.other, || self.inner.broadcast(values, root))
    }
    fn barrier(&self) -> Result<()> {
        self.record(|t| &mut t.other, || self.inner.barrier())
    }
    fn all_reduce_sum(&self, values: &mut [T]) -> Result<()> {
        self.record(|t| &mut t.all_reduce, || self.inner.all_reduce_sum(values))
    }
}
