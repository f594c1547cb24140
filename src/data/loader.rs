//! Multi-view batching: a [`Loader`] turns a dataset into epochs of [`Batch`]es holding `V`
//! augmented views of `B` items, optionally prepared on a background thread ([`Prefetcher`]).
//!
//! Reproducibility is by construction, not by luck of scheduling. An epoch's order is a function
//! of `(seed, epoch)` alone, so a run resumed at `(epoch, step)` sees exactly the batches the
//! uninterrupted run would have; and each view of each sample gets its own generator, seeded from
//! `(seed, epoch, step, sample, view)`, so the augmented pixels do not depend on which thread
//! computes them or in what order. The prefetcher therefore yields bit-identical batches to the
//! synchronous path while overlapping data preparation with the training step.

use super::{Augment, Dataset};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

/// How many prepared batches the prefetch channel holds.
const PREFETCH_DEPTH: usize = 2;
/// Domain tags that keep the order and augmentation seed streams apart.
const TAG_ORDER: u64 = 0x006f_7264_6572; // "order"
const TAG_AUGMENT: u64 = 0x6175_6720; // "aug "

/// How an epoch's items are chosen and ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sampler {
    /// Every item once, in dataset order (evaluation).
    Sequential,
    /// Every item once, in a fresh seeded permutation each epoch.
    #[default]
    Shuffle,
    /// Batches with (as nearly as possible) equal counts of each class present: within a class,
    /// items come in seeded permutations, reshuffled whenever the class runs out, so small
    /// classes repeat. An epoch has as many batches as with [`Sampler::Shuffle`].
    ClassBalanced,
}

/// The loader's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    /// `B`, the number of distinct items per batch.
    pub batch_size: usize,
    /// `V`, the number of augmented views of each item (2 for SimCLR, 1 for supervised).
    pub views: usize,
    pub sampler: Sampler,
    /// Drop the last, smaller batch of an epoch (contrastive losses prefer a fixed `B`).
    pub drop_last: bool,
    /// Seeds the order and the augmentations.
    pub seed: u64,
    pub augment: Augment,
    /// `(height, width)` of the views when they differ from the images' own size (see
    /// [`Augment::apply_sized`]); `None` keeps the item's size.
    pub view_size: Option<(usize, usize)>,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 256,
            views: 2,
            sampler: Sampler::Shuffle,
            drop_last: false,
            seed: 0,
            augment: Augment::default(),
            view_size: None,
        }
    }
}

impl LoaderConfig {
    /// The shape of one view of an item of `item_shape`: the item's own, or with `view_size`
    /// in place of its height and width. Errors if `view_size` is set for items that are not
    /// images `(C, H, W)` / `(H, W)`, or has a zero side.
    pub fn view_shape(&self, item_shape: &[usize]) -> Result<Vec<usize>> {
        let Some((h, w)) = self.view_size else {
            return Ok(item_shape.to_vec());
        };
        let rank = item_shape.len();
        if !(2..=3).contains(&rank) || h == 0 || w == 0 {
            let msg = format!(
                "view size ({h}, {w}) needs image items (C, H, W) or (H, W), got {item_shape:?}, \
                 and sides ≥ 1"
            );
            return Err(Error::invalid("LoaderConfig", msg));
        }
        let mut shape = item_shape.to_vec();
        shape[rank - 2..].copy_from_slice(&[h, w]);
        Ok(shape)
    }
}

/// One training step's data.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `(V·B, item...)`, view-major: rows `v·B .. (v+1)·B` are view `v` of the `B` items.
    pub views: Tensor<f32>,
    /// The `B` items' labels.
    pub labels: Vec<usize>,
    /// The `B` items' indices in the dataset.
    pub indices: Vec<usize>,
    pub num_views: usize,
    pub epoch: u64,
    /// The batch's position in its epoch.
    pub step: usize,
}

impl Batch {
    /// `B`, the number of distinct items.
    pub fn batch_size(&self) -> usize {
        self.indices.len()
    }
    /// View `v` of every item: `(B, item...)`.
    pub fn view(&self, v: usize) -> Result<Tensor<f32>> {
        let b = self.batch_size();
        self.views.narrow(0, v * b, b)
    }
}

/// A batch as the worker thread builds it: plain buffers, turned into a [`Batch`] by the
/// consumer (so nothing but vectors crosses threads).
struct RawBatch {
    data: Vec<f32>,
    shape: Vec<usize>,
    labels: Vec<usize>,
    indices: Vec<usize>,
    views: usize,
    epoch: u64,
    step: usize,
}

impl RawBatch {
    fn into_batch(self) -> Result<Batch> {
        Ok(Batch {
            views: Tensor::from_vec(self.data, self.shape)?,
            labels: self.labels,
            indices: self.indices,
            num_views: self.views,
            epoch: self.epoch,
            step: self.step,
        })
    }
}

/// Yields the epochs of a dataset as multi-view batches.
#[derive(Debug, Clone)]
pub struct Loader {
    dataset: Arc<Dataset>,
    config: LoaderConfig,
}

impl Loader {
    /// Checks the settings against the dataset (non-empty, `B ≥ 1`, `V ≥ 1`, augmentations that
    /// fit the item shape).
    pub fn new(dataset: impl Into<Arc<Dataset>>, config: LoaderConfig) -> Result<Self> {
        let dataset = dataset.into();
        if dataset.is_empty() || config.batch_size == 0 || config.views == 0 {
            let msg = format!(
                "need a non-empty dataset (got {} items), batch_size ≥ 1 (got {}) and views ≥ 1 (got {})",
                dataset.len(),
                config.batch_size,
                config.views
            );
            return Err(Error::invalid("Loader::new", msg));
        }
        config.augment.check(dataset.item_shape())?;
        config.view_shape(dataset.item_shape())?;
        Ok(Loader { dataset, config })
    }

    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// The number of batches in every epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The dataset indices of every batch of `epoch`, a function of `(seed, epoch)` only.
    pub fn epoch_indices(&self, epoch: u64) -> Vec<Vec<usize>> {
        let n = self.dataset.len();
        let b = self.config.batch_size;
        let mut rng = StdRng::seed_from_u64(seed_for(&[self.config.seed, TAG_ORDER, epoch]));
        let sizes = (0..self.batches_per_epoch()).map(|k| b.min(n - k * b));
        match self.config.sampler {
            Sampler::Sequential | Sampler::Shuffle => {
                let mut order: Vec<usize> = (0..n).collect();
                if self.config.sampler == Sampler::Shuffle {
                    order.shuffle(&mut rng);
                }
                let mut at = 0;
                sizes
                    .map(|m| {
                        at += m;
                        order[at - m..at].to_vec()
                    })
                    .collect()
            }
            Sampler::ClassBalanced => balanced(&self.dataset, sizes, &mut rng),
        }
    }

    /// Builds batch `step` of `epoch` from the items at `indices` (as given by
    /// [`Loader::epoch_indices`]).
    pub fn make_batch(&self, epoch: u64, step: usize, indices: &[usize]) -> Result<Batch> {
        build(&self.dataset, &self.config, epoch, step, indices.to_vec())?.into_batch()
    }

    /// The batches of `epoch`, computed on the calling thread.
    pub fn epoch(&self, epoch: u64) -> impl Iterator<Item = Result<Batch>> + '_ {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from batch `start_step` on (to resume a run mid-epoch).
    pub fn epoch_from(
        &self,
        epoch: u64,
        start_step: usize,
    ) -> impl Iterator<Item = Result<Batch>> + '_ {
        let plan = self.epoch_indices(epoch);
        plan.into_iter()
            .enumerate()
            .skip(start_step)
            .map(move |(step, idx)| {
                build(&self.dataset, &self.config, epoch, step, idx)?.into_batch()
            })
    }

    /// The same batches as [`Loader::epoch_from`], prepared on a background thread up to
    /// two batches ahead of the consumer (a bounded channel of depth 2).
    pub fn prefetch(&self, epoch: u64, start_step: usize) -> Prefetcher {
        let plan = self.epoch_indices(epoch);
        let remaining = plan.len().saturating_sub(start_step);
        let (tx, rx) = sync_channel(PREFETCH_DEPTH);
        let (dataset, config) = (Arc::clone(&self.dataset), self.config.clone());
        let handle = std::thread::spawn(move || {
            for (step, idx) in plan.into_iter().enumerate().skip(start_step) {
                let raw = build(&dataset, &config, epoch, step, idx);
                let failed = raw.is_err();
                // A send fails only when the consumer has dropped the prefetcher: stop quietly.
                if tx.send(raw).is_err() || failed {
                    break;
                }
            }
        });
        Prefetcher {
            rx: Some(rx),
            handle: Some(handle),
            remaining,
        }
    }
}

/// An iterator over batches prepared by a background thread; dropping it stops the thread.
#[derive(Debug)]
pub struct Prefetcher {
    rx: Option<Receiver<Result<RawBatch>>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
}

impl std::fmt::Debug for RawBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawBatch(epoch {}, step {})", self.epoch, self.step)
    }
}

impl Iterator for Prefetcher {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.remaining == 0 {
            return None;
        }
        let received = self.rx.as_ref()?.recv();
        match received {
            Ok(Ok(raw)) => {
                self.remaining -= 1;
                Some(raw.into_batch())
            }
            Ok(Err(e)) => {
                self.remaining = 0;
                Some(Err(e))
            }
            Err(_) => {
                self.remaining = 0;
                let msg = "the prefetch thread stopped before the end of the epoch (it panicked)";
                Some(Err(Error::invalid("Loader::prefetch", msg)))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Disconnect first so a worker blocked on a full channel wakes up and exits.
        self.rx.take();
        if let Some(handle) = self.handle.take() {
            // A panic in the worker was already reported through `next`; nothing more to do.
            let _ = handle.join();
        }
    }
}

/// Assembles the `V` views of the items at `indices`, view-major, each view of each sample
/// augmented with its own generator.
fn build(
    dataset: &Dataset,
    config: &LoaderConfig,
    epoch: u64,
    step: usize,
    indices: Vec<usize>,
) -> Result<RawBatch> {
    let (b, v) = (indices.len(), config.views);
    let item_shape = dataset.item_shape();
    let view_shape = config.view_shape(item_shape)?;
    let resize_to = config.view_size.filter(|_| view_shape != item_shape);
    let numel: usize = view_shape.iter().product();
    let mut data = Vec::with_capacity(v * b * numel);
    for view in 0..v {
        for (sample, &i) in indices.iter().enumerate() {
            if config.augment.is_identity() && resize_to.is_none() {
                data.extend_from_slice(dataset.item(i));
                continue;
            }
            let parts = [
                config.seed,
                TAG_AUGMENT,
                epoch,
                step as u64,
                sample as u64,
                view as u64,
            ];
            let mut rng = StdRng::seed_from_u64(seed_for(&parts));
            if let Some(size) = resize_to {
                let augmented =
                    config
                        .augment
                        .apply_sized(dataset.item(i), item_shape, size, &mut rng)?;
                data.extend_from_slice(&augmented);
            } else {
                let start = data.len();
                data.extend_from_slice(dataset.item(i));
                config
                    .augment
                    .apply(&mut data[start..], item_shape, &mut rng)?;
            }
        }
    }
    let mut shape = vec![v * b];
    shape.extend_from_slice(&view_shape);
    let labels = indices.iter().map(|&i| dataset.labels()[i]).collect();
    Ok(RawBatch {
        data,
        shape,
        labels,
        indices,
        views: v,
        epoch,
        step,
    })
}

/// The class-balanced plan: for each batch of size `m`, `m / K` items of each of the `K` classes
/// present, the remainder given to classes chosen at random, positions shuffled.
fn balanced(
    dataset: &Dataset,
    sizes: impl Iterator<Item = usize>,
    rng: &mut StdRng,
) -> Vec<Vec<usize>> {
    let mut pools: Vec<Vec<usize>> = vec![Vec::new(); dataset.num_classes()];
    for (i, &l) in dataset.labels().iter().enumerate() {
        pools[l].push(i);
    }
    pools.retain(|p| !p.is_empty());
    let mut cursors = vec![usize::MAX; pools.len()]; // MAX: shuffle before first use
    let k = pools.len();
    let mut classes: Vec<usize> = (0..k).collect();
    sizes
        .map(|m| {
            classes.shuffle(rng);
            let mut batch = Vec::with_capacity(m);
            for (rank, &c) in classes.iter().enumerate() {
                let take = m / k + usize::from(rank < m % k);
                for _ in 0..take {
                    if cursors[c] >= pools[c].len() {
                        pools[c].shuffle(rng);
                        cursors[c] = 0;
                    }
                    batch.push(pools[c][cursors[c]]);
                    cursors[c] += 1;
                }
            }
            batch.shuffle(rng);
            batch
        })
        .collect()
}

/// Mixes a list of integers into one seed (SplitMix64 steps), so that nearby inputs such as
/// consecutive epochs or samples give unrelated generators.
fn seed_for(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x9e37_79b9_7f4a_7c15, |h, &p| splitmix64(h ^ p))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
