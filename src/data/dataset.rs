//! [`Dataset`]: labelled items of one shape, held in memory as `f32`.
//!
//! Every loader returns one, so the rest of the crate (batching, evaluation, training) sees a
//! single type whatever the source. An item is an image `(C, H, W)` or a vector `(D,)`; its
//! label is a class index. A dataset may also carry a second, finer labelling (the subclasses of
//! the synthetic generator, or the original digits after [`Dataset::coarsen`]) so that a model
//! trained on coarse labels can be probed on fine ones.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Labelled items of a common shape, stored contiguously (item `i` is
/// `data[i * item_numel .. (i + 1) * item_numel]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    data: Vec<f32>,
    item_shape: Vec<usize>,
    labels: Vec<usize>,
    num_classes: usize,
    fine: Option<(Vec<usize>, usize)>,
}

impl Dataset {
    /// A dataset from a flat buffer (items one after another), the shape of one item, a label per
    /// item and the number of classes. Fails when the sizes disagree or a label is out of range.
    pub fn new(
        data: Vec<f32>,
        item_shape: Vec<usize>,
        labels: Vec<usize>,
        num_classes: usize,
    ) -> Result<Dataset> {
        let numel: usize = item_shape.iter().product();
        if item_shape.is_empty() || numel == 0 {
            let msg = format!("item shape {item_shape:?} must be non-empty with no zero dimension");
            return Err(Error::invalid("Dataset::new", msg));
        }
        if data.len() != labels.len() * numel {
            let msg = format!(
                "{} values do not make {} items of shape {item_shape:?}",
                data.len(),
                labels.len()
            );
            return Err(Error::invalid("Dataset::new", msg));
        }
        check_labels("Dataset::new", &labels, num_classes)?;
        Ok(Dataset {
            data,
            item_shape,
            labels,
            num_classes,
            fine: None,
        })
    }

    /// Attaches a finer labelling (one label per item, each below `num_fine_classes`).
    pub fn with_fine_labels(mut self, fine: Vec<usize>, num_fine_classes: usize) -> Result<Self> {
        if fine.len() != self.len() {
            let msg = format!("{} fine labels for {} items", fine.len(), self.len());
            return Err(Error::invalid("Dataset::with_fine_labels", msg));
        }
        check_labels("Dataset::with_fine_labels", &fine, num_fine_classes)?;
        self.fine = Some((fine, num_fine_classes));
        Ok(self)
    }

    /// The same items viewed under another shape with the same number of elements (for
    /// example `[1, 8, 8]` to `[64]` for an MLP).
    pub fn with_item_shape(mut self, item_shape: Vec<usize>) -> Result<Self> {
        if item_shape.iter().product::<usize>() != self.item_numel() || item_shape.is_empty() {
            return Err(Error::ShapeMismatch {
                op: "Dataset::with_item_shape",
                lhs: self.item_shape,
                rhs: item_shape,
            });
        }
        self.item_shape = item_shape;
        Ok(self)
    }

    /// Relabels through `map` (`new = map[old]`, e.g. digit → digit ≥ 5) and keeps the old labels
    /// as the fine labels (or keeps the existing fine labels, if there are some).
    pub fn coarsen(&self, map: &[usize]) -> Result<Dataset> {
        if map.len() != self.num_classes {
            let msg = format!(
                "map has {} entries for {} classes",
                map.len(),
                self.num_classes
            );
            return Err(Error::invalid("Dataset::coarsen", msg));
        }
        let num_coarse = map.iter().max().map_or(0, |&m| m + 1);
        let labels = self.labels.iter().map(|&l| map[l]).collect();
        let fine = self
            .fine
            .clone()
            .unwrap_or_else(|| (self.labels.clone(), self.num_classes));
        Ok(Dataset {
            labels,
            num_classes: num_coarse,
            fine: Some(fine),
            ..self.clone()
        })
    }

    /// The same items labelled by their fine labels (which become the only labels).
    pub fn fine_dataset(&self) -> Result<Dataset> {
        let (labels, num_classes) = self.fine.clone().ok_or_else(|| {
            Error::invalid("Dataset::fine_dataset", "the dataset has no fine labels")
        })?;
        Ok(Dataset {
            labels,
            num_classes,
            fine: None,
            data: self.data.clone(),
            item_shape: self.item_shape.clone(),
        })
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// The shape of one item, e.g. `[1, 8, 8]`, `[3, 32, 32]` or `[d]`.
    pub fn item_shape(&self) -> &[usize] {
        &self.item_shape
    }
    /// The number of values in one item.
    pub fn item_numel(&self) -> usize {
        self.item_shape.iter().product()
    }
    /// All values, item after item.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// Item `i`'s values; panics if `i >= len()` like slice indexing.
    pub fn item(&self, i: usize) -> &[f32] {
        let n = self.item_numel();
        &self.data[i * n..(i + 1) * n]
    }
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }
    /// The fine labels (subclasses), when the dataset has them.
    pub fn fine_labels(&self) -> Option<&[usize]> {
        self.fine.as_ref().map(|(l, _)| l.as_slice())
    }
    /// The number of fine classes (0 when there are no fine labels).
    pub fn num_fine_classes(&self) -> usize {
        self.fine.as_ref().map_or(0, |(_, k)| *k)
    }

    /// How many items carry each label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// The items at `indices` (in that order, repeats allowed) as a new dataset.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::IndexOutOfRange {
                op: "Dataset::subset",
                index: bad as i64,
                size: self.len(),
            });
        }
        Ok(self.gather(indices))
    }

    /// [`Dataset::subset`] for indices known to be in range.
    fn gather(&self, indices: &[usize]) -> Dataset {
        let n = self.item_numel();
        let mut data = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            data.extend_from_slice(self.item(i));
        }
        let pick = |labels: &[usize]| indices.iter().map(|&i| labels[i]).collect::<Vec<_>>();
        Dataset {
            data,
            item_shape: self.item_shape.clone(),
            labels: pick(&self.labels),
            num_classes: self.num_classes,
            fine: self.fine.as_ref().map(|(l, k)| (pick(l), *k)),
        }
    }

    /// Splits by item index: `(rest, chosen)` where `chosen` holds the items with
    /// `is_test(index)` true, both in their original order. The digits split is
    /// `split(|i| i % 5 == 0)`.
    pub fn split(&self, is_test: impl Fn(usize) -> bool) -> (Dataset, Dataset) {
        let (test, train): (Vec<usize>, Vec<usize>) = (0..self.len()).partition(|&i| is_test(i));
        (self.gather(&train), self.gather(&test))
    }

    /// A seeded random split: `round(test_fraction · len)` items, chosen uniformly, form the
    /// second part; both parts keep the original order.
    pub fn split_random(&self, test_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(0.0..=1.0).contains(&test_fraction) {
            let msg = format!("test fraction {test_fraction} is not in [0, 1]");
            return Err(Error::invalid("Dataset::split_random", msg));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let n_test = (test_fraction * self.len() as f64).round() as usize;
        let mut is_test = vec![false; self.len()];
        for &i in &order[..n_test] {
            is_test[i] = true;
        }
        Ok(self.split(|i| is_test[i]))
    }

    /// The items at `indices` stacked into one tensor of shape `(len(indices), item...)`.
    pub fn batch_tensor(&self, indices: &[usize]) -> Result<Tensor<f32>> {
        let sub = self.subset(indices)?;
        let mut shape = vec![indices.len()];
        shape.extend_from_slice(&self.item_shape);
        Tensor::from_vec(sub.data, shape)
    }

    /// All items as one tensor of shape `(len, item...)`.
    pub fn to_tensor(&self) -> Result<Tensor<f32>> {
        let mut shape = vec![self.len()];
        shape.extend_from_slice(&self.item_shape);
        Tensor::from_vec(self.data.clone(), shape)
    }

    /// Per-channel mean and standard deviation (population), the channel being the first item
    /// dimension; for standardising images with [`Dataset::normalize_channels`].
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let c = self.item_shape[0];
        let per = self.item_numel() / c;
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        for item in self.data.chunks(self.item_numel()) {
            for (ch, plane) in item.chunks(per).enumerate() {
                sum[ch] += plane.iter().map(|&v| f64::from(v)).sum::<f64>();
                sq[ch] += plane
                    .iter()
                    .map(|&v| f64::from(v) * f64::from(v))
                    .sum::<f64>();
            }
        }
        let n = (self.len() * per).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / n - m * m).max(0.0)).sqrt() as f32);
        (mean.iter().map(|&m| m as f32).collect(), std.collect())
    }

    /// Standardises each channel in place: `x ← (x − mean[c]) / std[c]`.
    pub fn normalize_channels(&mut self, mean: &[f32], std: &[f32]) -> Result<()> {
        let c = self.item_shape[0];
        if mean.len() != c || std.len() != c || std.iter().any(|&s| s.is_nan() || s <= 0.0) {
            let msg = format!("need {c} means and {c} positive standard deviations");
            return Err(Error::invalid("Dataset::normalize_channels", msg));
        }
        let per = self.item_numel() / c;
        for (k, plane) in self.data.chunks_mut(per).enumerate() {
            let ch = k % c;
            plane
                .iter_mut()
                .for_each(|v| *v = (*v - mean[ch]) / std[ch]);
        }
        Ok(())
    }
}

fn check_labels(op: &'static str, labels: &[usize], num_classes: usize) -> Result<()> {
    match labels.iter().find(|&&l| l >= num_classes) {
        Some(&bad) => Err(Error::IndexOutOfRange {
            op,
            index: bad as i64,
            size: num_classes,
        }),
        None => Ok(()),
    }
}
