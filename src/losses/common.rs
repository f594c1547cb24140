//! Shared pieces of the loss implementations: input and parameter validation (every error names
//! the loss and the offending shapes or values), the view-major row layout, and the log-space
//! helpers that keep every loss finite.

use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use std::collections::BTreeMap;

/// The sizes of a validated `(N, V, d)` feature tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    pub n: usize,
    pub v: usize,
    pub d: usize,
}

/// How many views a loss accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Views {
    Exactly(usize),
    AtLeast(usize),
}

/// Checks that `features` is `(N, V, d)` with the view count `views`, at least `min_n` samples,
/// `d ≥ 1`, and finite values. `expected` describes the shape in the error message.
pub(crate) fn check_features<T: Float>(
    loss: &'static str,
    features: &Tensor<T>,
    views: Views,
    min_n: usize,
    expected: &'static str,
) -> Result<Dims> {
    let dims = features.dims();
    let bad_rank = || Error::BadRank {
        op: loss,
        expected,
        shape: dims.to_vec(),
    };
    if dims.len() != 3 {
        return Err(bad_rank());
    }
    let (n, v, d) = (dims[0], dims[1], dims[2]);
    let views_ok = match views {
        Views::Exactly(k) => v == k,
        Views::AtLeast(k) => v >= k,
    };
    if !views_ok || d == 0 {
        return Err(bad_rank());
    }
    if n < min_n {
        return Err(Error::invalid(
            loss,
            format!("needs at least {min_n} samples, got features of shape {dims:?} (N = {n})"),
        ));
    }
    if !features.all_finite() {
        return Err(Error::invalid(
            loss,
            format!("features of shape {dims:?} contain NaN or infinite values"),
        ));
    }
    Ok(Dims { n, v, d })
}

/// Checks that a per-sample label vector has one entry per sample.
pub(crate) fn check_labels(
    loss: &'static str,
    what: &str,
    labels: &[i64],
    features: &[usize],
) -> Result<()> {
    if labels.len() != features[0] {
        return Err(Error::invalid(
            loss,
            format!(
                "{} {what} for features of shape {features:?} (N = {}); expected one per sample",
                labels.len(),
                features[0]
            ),
        ));
    }
    Ok(())
}

/// A parameter that must be finite and strictly positive (a temperature, `t`).
pub(crate) fn check_positive(loss: &'static str, name: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        return Err(Error::invalid(
            loss,
            format!("parameter {name} = {value} must be finite and > 0"),
        ));
    }
    Ok(())
}

/// A parameter that must lie in `[lo, hi]` (or `[lo, hi)` when `hi_open`).
pub(crate) fn check_range(
    loss: &'static str,
    name: &str,
    value: f64,
    lo: f64,
    hi: f64,
    hi_open: bool,
) -> Result<()> {
    let ok = value >= lo && if hi_open { value < hi } else { value <= hi };
    if !ok {
        let close = if hi_open { ')' } else { ']' };
        return Err(Error::invalid(
            loss,
            format!("parameter {name} = {value} must lie in [{lo}, {hi}{close}"),
        ));
    }
    Ok(())
}

/// A parameter that must be finite (a margin, a weight, β).
pub(crate) fn check_finite(loss: &'static str, name: &str, value: f64) -> Result<()> {
    if !value.is_finite() {
        return Err(Error::invalid(
            loss,
            format!("parameter {name} = {value} must be finite"),
        ));
    }
    Ok(())
}

/// The `V·N` rows of `(N, V, d)` features in view-major order, as a `(V·N, d)` matrix: row
/// `v·N + i` is sample `i` of view `v`.
pub(crate) fn rows<T: Float>(features: &Tensor<T>, dims: Dims) -> Result<Tensor<T>> {
    features
        .transpose(0, 1)?
        .reshape(&[dims.v * dims.n, dims.d])
}

/// View `k` of `(N, V, d)` features, as an `(N, d)` matrix.
pub(crate) fn view<T: Float>(features: &Tensor<T>, dims: Dims, k: usize) -> Result<Tensor<T>> {
    features.narrow(1, k, 1)?.reshape(&[dims.n, dims.d])
}

/// The label of every row in view-major order: `labels[r mod N]`.
pub(crate) fn row_labels(labels: &[i64], v: usize) -> Vec<i64> {
    let mut out = Vec::with_capacity(labels.len() * v);
    for _ in 0..v {
        out.extend_from_slice(labels);
    }
    out
}

/// `Z Zᵀ / τ` for L2-normalised rows `z`.
pub(crate) fn similarities<T: Float>(z: &Tensor<T>, tau: f64) -> Result<Tensor<T>> {
    Ok(z.matmul(&z.t()?)?.div_scalar(tau))
}

/// A constant tensor (no gradient) from `f64` values.
pub(crate) fn constant<T: Float>(values: &[f64], shape: &[usize]) -> Result<Tensor<T>> {
    Tensor::from_f64s(values, shape.to_vec())
}

/// `log Σ_{k: keep[i·C + k]} exp(s_ik)` for every row of an `(R, C)` matrix. The dropped entries
/// are set to −∞, so they carry neither value nor gradient. Every row must keep at least one
/// entry (callers guarantee it); an all-dropped row would be −∞ with a NaN gradient.
pub(crate) fn masked_logsumexp<T: Float>(s: &Tensor<T>, keep: &[bool]) -> Result<Tensor<T>> {
    debug_assert!(
        keep.chunks(s.dims()[1]).all(|row| row.iter().any(|&k| k)),
        "masked_logsumexp: a row keeps nothing"
    );
    let drop: Vec<bool> = keep.iter().map(|&k| !k).collect();
    s.masked_fill(&drop, f64::NEG_INFINITY)?.logsumexp(1, false)
}

/// `s[i, index[i]]` for every row `i` of an `(R, C)` matrix, as a vector of length R.
pub(crate) fn pick<T: Float>(s: &Tensor<T>, index: &[usize]) -> Result<Tensor<T>> {
    let r = s.dims()[0];
    s.gather(1, index, &[r, 1])?.reshape(&[r])
}

/// The index of the other view of each row when V = 2: `(i + N) mod 2N`.
pub(crate) fn partner(n: usize) -> Vec<usize> {
    (0..2 * n).map(|i| (i + n) % (2 * n)).collect()
}

/// For every row r of `z` (R, d), the sum of the rows with r's label, r included:
/// `c_r = Σ_{j: labels[j] = labels[r]} z_j`, as an (R, d) tensor, in O(R·d) memory and
/// O(log R) ops whatever the class sizes.
///
/// The engine has no scatter-add, so the per-class sums are gathered: classes are grouped by
/// their size rounded up to a power of two L, each group's member rows are gathered into a
/// `(classes, L, d)` block (padding points at an appended zero row, so at most 2R rows are
/// gathered in all) and summed over L; each class's sum then goes back to its rows with
/// `index_select`. Exact sums in row order, no cancellation (unlike prefix sums).
pub(crate) fn class_sums_per_row<T: Float>(z: &Tensor<T>, labels: &[i64]) -> Result<Tensor<T>> {
    let (r, d) = (z.dims()[0], z.dims()[1]);
    debug_assert_eq!(labels.len(), r);
    let mut classes: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (j, &y) in labels.iter().enumerate() {
        classes.entry(y).or_default().push(j);
    }
    if classes.len() == r {
        return Ok(z.clone()); // every class is a singleton: c_r = z_r
    }
    let mut groups: BTreeMap<usize, Vec<&Vec<usize>>> = BTreeMap::new();
    for members in classes.values() {
        groups
            .entry(members.len().next_power_of_two())
            .or_default()
            .push(members);
    }
    let zero_row = Tensor::zeros([1, d]).to_device(&z.device())?;
    let padded = Tensor::concat(&[z.clone(), zero_row], 0)?; // (R + 1, d)
    let mut sums = Vec::with_capacity(groups.len());
    let mut slot_of_row = vec![0; r];
    let mut slot = 0;
    for (&len, members) in &groups {
        let mut index = Vec::with_capacity(members.len() * len);
        for class in members {
            for &j in class.iter() {
                slot_of_row[j] = slot;
            }
            slot += 1;
            index.extend_from_slice(class);
            index.resize(index.len() + len - class.len(), r); // the zero row
        }
        let block = padded
            .index_select(0, &index)? // (classes · L, d)
            .reshape(&[members.len(), len, d])?; // (classes, L, d)
        sums.push(block.sum(&[1], false)?); // (classes, d)
    }
    Tensor::concat(&sums, 0)? // (C, d)
        .index_select(0, &slot_of_row) // (R, d)
}
