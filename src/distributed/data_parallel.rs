//! The data-parallel training step over a [`Collective`] of `K` ranks, generic over `T`.
//!
//! Every rank builds the same global batch of `B` samples (same seed, same loader), takes its
//! share — samples `r·B/K .. (r+1)·B/K` of every view — and encodes it. The projector outputs
//! are all-gathered *with gradient* ([`Tensor::all_gather_rows`]) and rearranged into the
//! `(B, V, p)` features of the whole batch, in the single-process sample order, so the loss sees
//! all `K` shares as negatives and every rank computes the same global loss `L`.
//!
//! **Gradient scaling.** Each rank backpropagates `L/K`. The gather's backward sums the incoming
//! gradient over the ranks, `Σ_s (1/K)·∂L/∂Y = ∂L/∂Y` (every rank holds the same `∂L/∂Y`), and
//! keeps this rank's rows, so rank `r`'s parameter gradient is exactly the part of `∂L/∂θ` that
//! flows through its share. Summing those over the ranks ([`DataParallel::backward`]) gives
//! `∂L/∂θ` — the single-process gradient — once, not `K` times. With `K` a power of two the
//! scaling is exact in floating point.
//!
//! **Batch norm** sees only the local share (`V·B/K` rows): its batch statistics are per rank,
//! as in PyTorch DDP without `SyncBatchNorm`, so a model with batch norm does not reproduce the
//! single-process run exactly. Its running statistics are averaged over the ranks after every
//! step ([`DataParallel::sync_buffers`]), which keeps the replicas identical (the running mean
//! is then exactly the single-process one; the running variance misses the between-share part).
//! Dropout masks are drawn per rank for its share, so they differ from one process's too.
//!
//! **Replicas** start from the same seed and apply the same summed gradients, so they stay
//! bitwise identical; [`DataParallel::check_replicas`] compares an FNV-1a hash of every
//! parameter and buffer across the ranks and fails on every rank, naming the step, if not.

use super::collective::{Collective, CommTimes, Timed};
use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::nn::{Mode, Module};
use crate::optim::{GradientSource, Optimizer};
use crate::tensor::{Float, Tensor, TensorId};
use std::collections::HashMap;
use std::sync::Arc;

/// Steps between replica checks in `contrastive train` (a hash of a few hundred thousand
/// parameters costs well under a millisecond; the check itself is one tiny all-gather).
pub const DEFAULT_CHECK_EVERY: usize = 50;

/// Parameter gradients summed over the ranks: what the optimiser steps with.
#[derive(Debug, Clone)]
pub struct SyncedGradients<T: Float> {
    map: HashMap<TensorId, Tensor<T>>,
}

impl<T: Float> GradientSource<T> for SyncedGradients<T> {
    fn gradient(&self, param: &Tensor<T>) -> Option<&Tensor<T>> {
        self.map.get(&param.id())
    }
}

/// The data-parallel hooks of a training loop over one group of ranks.
#[derive(Debug, Clone)]
pub struct DataParallel<T: Float> {
    comm: Arc<dyn Collective<T>>,
    timed: Arc<Timed<T>>,
    check_every: usize,
}

impl<T: Float> DataParallel<T> {
    /// Trains over `comm`, comparing the replicas every `check_every` steps (0: never).
    pub fn new(comm: Arc<dyn Collective<T>>, check_every: usize) -> Self {
        let timed = Arc::new(Timed::new(comm));
        DataParallel {
            comm: Arc::clone(&timed) as Arc<dyn Collective<T>>,
            timed,
            check_every,
        }
    }

    /// The group (timed: every call through it counts in [`DataParallel::comm_times`]).
    pub fn comm(&self) -> &Arc<dyn Collective<T>> {
        &self.comm
    }
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }
    pub fn size(&self) -> usize {
        self.comm.size()
    }
    /// Rank 0 alone writes checkpoints, metrics and reports.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }
    /// The time spent in collectives so far.
    pub fn comm_times(&self) -> CommTimes {
        self.timed.times()
    }

    /// `B/K`, the samples per rank; an error unless `K` divides the global batch `B`.
    pub fn local_batch(&self, global: usize) -> Result<usize> {
        let k = self.size();
        if global == 0 || !global.is_multiple_of(k) {
            return Err(Error::invalid(
                "data-parallel",
                format!(
                    "the batch of {global} samples does not split evenly over {k} ranks; \
                     set train.batch_size to a multiple of {k}"
                ),
            ));
        }
        Ok(global / k)
    }

    /// This rank's rows of a view-major batch: `(V·B, …)` → `(V·B/K, …)`, rows
    /// `v·B + r·b .. v·B + (r+1)·b` of each view `v` (`b = B/K`), still view-major.
    pub fn local_views(&self, views: &Tensor<T>, num_views: usize) -> Result<Tensor<T>> {
        let rows = views.dims().first().copied().unwrap_or(0);
        if num_views == 0 || !rows.is_multiple_of(num_views) {
            return Err(Error::invalid(
                "data-parallel",
                format!("{rows} rows are not {num_views} views of a batch"),
            ));
        }
        if self.size() == 1 {
            return Ok(views.clone());
        }
        let global = rows / num_views;
        let b = self.local_batch(global)?;
        let start = self.rank() * b;
        let picked: Vec<usize> = (0..num_views)
            .flat_map(|v| (v * global + start)..(v * global + start + b))
            .collect();
        views.index_select(0, &picked)
    }

    /// The features of the whole batch from this rank's projector output: `(V·b, p)`
    /// view-major → `(B, V, p)`, samples in the order of the single-process batch. Records the
    /// all-gather in the graph, so the loss's gradient reaches every rank's share.
    pub fn global_features(&self, z_local: &Tensor<T>, num_views: usize) -> Result<Tensor<T>> {
        if z_local.rank() != 2 || num_views == 0 || !z_local.dims()[0].is_multiple_of(num_views) {
            return Err(Error::BadRank {
                op: "data-parallel features",
                expected: "(V·b, p) projector outputs, view-major",
                shape: z_local.dims().to_vec(),
            });
        }
        let (k, p) = (self.size(), z_local.dims()[1]);
        let b = z_local.dims()[0] / num_views;
        let z = if k == 1 {
            z_local.clone()
        } else {
            // (K·V·b, p), rank-major → (K, V, b, p) → (V, K, b, p) → (V·K·b, p): view-major
            // rows of the global batch, samples r·b.. of each view from rank r.
            z_local
                .all_gather_rows(&self.comm)?
                .reshape(&[k, num_views, b, p])?
                .permute(&[1, 0, 2, 3])?
        };
        z.reshape(&[num_views, k * b, p])?.permute(&[1, 0, 2]) // (B, V, p)
    }

    /// Backpropagates the global `loss` scaled by `1/K` (see the module docs) and sums the
    /// gradients of `params` over the ranks in one all-reduce. `stop` is this rank's request to
    /// stop after this step; the returned flag is true when any rank made one, so all ranks stop
    /// at the same step.
    pub fn backward(
        &self,
        loss: &Tensor<T>,
        params: &[(String, &mut Tensor<T>)],
        stop: bool,
    ) -> Result<(SyncedGradients<T>, bool)> {
        let k = self.size();
        let scale = T::from_f64(1.0 / k as f64);
        let grads: Gradients<T> = loss.backward_with(&Tensor::full(loss.shape().clone(), scale))?;
        // One buffer: every gradient in parameter order (zeros where the loss does not reach a
        // parameter — on every rank alike, the graphs being the same), then the stop flag.
        let total: usize = params.iter().map(|(_, p)| p.numel()).sum();
        let mut flat = Vec::with_capacity(total + 1);
        for (_, p) in params {
            match grads.get(p) {
                Some(g) => flat.extend_from_slice(g.data()),
                None => flat.extend(std::iter::repeat_n(T::ZERO, p.numel())),
            }
        }
        flat.push(if stop { T::ONE } else { T::ZERO });
        if k > 1 {
            self.comm.all_reduce_sum(&mut flat)?;
        }
        let mut map = HashMap::with_capacity(params.len());
        let mut at = 0;
        for (_, p) in params {
            let n = p.numel();
            if grads.get(p).is_some() {
                let g = Tensor::from_vec(flat[at..at + n].to_vec(), p.shape().clone())?;
                map.insert(p.id(), g);
            }
            at += n;
        }
        let any_stop = flat[at] > T::ZERO;
        Ok((SyncedGradients { map }, any_stop))
    }

    /// Averages the model's buffers (batch-norm running statistics) over the ranks, so every
    /// replica keeps the same state. Nothing to do for one rank or a model without buffers.
    pub fn sync_buffers<M: Module<T> + ?Sized>(&self, model: &mut M) -> Result<()> {
        let k = self.size();
        let mut buffers: Vec<&mut Tensor<T>> = Vec::new();
        model.visit_buffers_mut("", &mut |_, t| buffers.push(t));
        if k == 1 || buffers.is_empty() {
            return Ok(());
        }
        let mut flat: Vec<T> = buffers.iter().flat_map(|t| t.data().to_vec()).collect();
        self.comm.all_reduce_sum(&mut flat)?;
        let inv = T::from_f64(1.0 / k as f64);
        let mut at = 0;
        for t in buffers {
            let n = t.numel();
            t.set_data(flat[at..at + n].iter().map(|&v| v * inv).collect())?;
            at += n;
        }
        Ok(())
    }

    /// True when the replicas are due for a check after `step` steps.
    pub fn check_due(&self, step: usize) -> bool {
        self.check_every > 0 && self.size() > 1 && step.is_multiple_of(self.check_every)
    }

    /// Fails, on every rank, unless all ranks hold the same parameters and buffers (compared by
    /// an FNV-1a hash of their names and values). `step` is named in the error.
    pub fn check_replicas<M: Module<T> + ?Sized>(&self, step: usize, model: &M) -> Result<()> {
        self.check_same(
            &format!("the model parameters at step {step}"),
            state_hash(model),
        )
    }

    /// Fails on every rank unless all ranks start alike: the same configuration (`config_id`),
    /// resume position (`global_step`) and initial parameters. Catches ranks launched with
    /// different settings, or one that could not read the checkpoint it should resume from.
    pub fn check_start<M: Module<T> + ?Sized>(
        &self,
        config_id: &str,
        global_step: usize,
        model: &M,
    ) -> Result<()> {
        let mut h = Fnv1a::new();
        h.write(config_id.as_bytes());
        h.write(&(global_step as u64).to_le_bytes());
        h.write(&state_hash(model).to_le_bytes());
        self.check_same(
            "the configuration, resume position or initial parameters",
            h.finish(),
        )
    }

    /// One line for the log: steps per second over `seconds` of `steps` training steps, and
    /// the share of that time spent in collectives (waiting for the slowest rank included).
    pub fn summary(&self, steps: usize, seconds: f64) -> String {
        let t = self.comm_times();
        let seconds = seconds.max(1e-9);
        format!(
            "data-parallel over {} ranks: {steps} steps in {seconds:.2} s ({:.2} steps/s); \
             collectives {:.3} s ({:.1}% of it): all-gather {:.3} s, all-reduce {:.3} s",
            self.size(),
            steps as f64 / seconds,
            t.total(),
            100.0 * t.total() / seconds,
            t.all_gather,
            t.all_reduce
        )
    }

    /// Fails on every rank unless every rank passed the same `hash`; `what` names it.
    pub fn check_same(&self, what: &str, hash: u64) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        // Four 16-bit pieces: exact in f32 as well as f64.
        let pieces: Vec<T> = (0..4)
            .map(|i| T::from_f64(((hash >> (16 * i)) & 0xffff) as f64))
            .collect();
        let all = self.comm.all_gather(&pieces)?;
        let hashes: Vec<u64> = all
            .chunks_exact(4)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u64, |h, (i, v)| h | ((v.to_f64() as u64) << (16 * i)))
            })
            .collect();
        if hashes.iter().any(|&h| h != hashes[0]) {
            let listed: Vec<String> = hashes
                .iter()
                .enumerate()
                .map(|(r, h)| format!("rank {r}: {h:016x}"))
                .collect();
            return Err(Error::invalid(
                "data-parallel",
                format!(
                    "the ranks diverged: {what} differ ({}); every rank must run the same \
                     configuration, and the replicas must see the same gradients",
                    listed.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// One data-parallel step on the global view-major batch `views` `(V·B, …)`: this rank's
    /// share through `model`, the gathered `(B, V, p)` features through `loss`, the summed
    /// gradients into `optimizer`, buffers averaged, replicas checked when due after
    /// `step + 1` steps. Returns the global loss (the same on every rank).
    pub fn train_step<M: Module<T> + ?Sized>(
        &self,
        model: &mut M,
        optimizer: &mut dyn Optimizer<T>,
        views: &Tensor<T>,
        num_views: usize,
        loss: &dyn Fn(&Tensor<T>) -> Result<Tensor<T>>,
        step: usize,
    ) -> Result<f64> {
        let local = self.local_views(views, num_views)?;
        let z = model.forward(&local, Mode::Train)?;
        let features = self.global_features(&z, num_views)?;
        let l = loss(&features)?;
        let value = l.item()?.to_f64();
        let mut params = model.parameters_mut();
        let (grads, _) = self.backward(&l, &params, false)?;
        optimizer.step(&mut params, &grads)?;
        drop(params);
        self.sync_buffers(model)?;
        if self.check_due(step + 1) {
            self.check_replicas(step + 1, model)?;
        }
        Ok(value)
    }
}

/// FNV-1a (64-bit) of every parameter and buffer: names, then the bits of each value.
pub fn state_hash<T: Float, M: Module<T> + ?Sized>(model: &M) -> u64 {
    let mut h = Fnv1a::new();
    for (name, t) in model.state_tensors() {
        h.write(name.as_bytes());
        for v in t.data() {
            h.write(&v.to_f64().to_bits().to_le_bytes());
        }
    }
    h.finish()
}

/// The 64-bit FNV-1a hash.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Fnv1a {
    pub fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Self::new()
    }
}
