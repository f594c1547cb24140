//! Normalisation: L2 normalisation along an axis, and batch normalisation (1-d over `(N, C)` or
//! `(N, C, L)`, 2-d over `(N, C, H, W)`) with running statistics. L2 normalisation is composed
//! from primitives. Batch norm is one fused primitive with a closed-form backward: composed, it
//! took ~20 passes over the activations and was a fifth of the `cnn_step` workload; fused, the
//! forward reads the input once for the statistics (row by row, each row re-read from cache)
//! and once to normalise, the backward twice; outputs are written once, never zero-filled.
//! It is gradient-checked, and checked against the composed form (kept below as the reference).

use crate::autograd::Op;
use crate::backend::cpu::norm::{centred_square_sum, sum_and_centred_dot};
use crate::backend::cpu::rows::map_rows;
use crate::backend::cpu::simd;
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use rayon::prelude::*;

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

/// Training needs two or more values per channel (one gives a zero variance and no unbiased one).
pub(crate) fn check_training_count<T: Float>(count: usize, x: &Tensor<T>) -> Result<()> {
    if count < 2 {
        return Err(Error::invalid(
            "batch_norm",
            format!(
                "training needs more than one value per channel, got shape {:?}",
                x.shape()
            ),
        ));
    }
    Ok(())
}

/// Training-mode statistics, shared by the CPU and GPU paths: folds the batch's `mean` and
/// biased `var` (over `count` values a channel) into `running` (its variance unbiased, as in
/// PyTorch) and returns `(mean, 1/√(var + eps))`, the latter written as the composed form wrote
/// it (`powf(-0.5)`).
pub(crate) fn batch_statistics<T: Float>(
    mean: Vec<T>,
    var: &[T],
    count: usize,
    running: Option<&mut RunningStats<T>>,
    eps: f64,
) -> (Vec<T>, Vec<T>) {
    if let Some(r) = running {
        let m = T::from_f64(r.momentum);
        let unbias = T::from_f64(count as f64 / (count - 1) as f64);
        for ch in 0..mean.len() {
            r.mean[ch] = (T::ONE - m) * r.mean[ch] + m * mean[ch];
            r.var[ch] = (T::ONE - m) * r.var[ch] + m * var[ch] * unbias;
        }
    }
    let eps = T::from_f64(eps);
    let inv_std = var
        .iter()
        .map(|&v| (v + eps).powf(T::from_f64(-0.5)))
        .collect();
    (mean, inv_std)
}

/// Evaluation-mode statistics: the running mean and 1/√(running var + eps).
pub(crate) fn running_statistics<T: Float>(
    running: Option<&mut RunningStats<T>>,
    eps: f64,
) -> Result<(Vec<T>, Vec<T>)> {
    let r = running
        .ok_or_else(|| Error::invalid("batch_norm", "evaluation mode needs running statistics"))?;
    let inv_std = r
        .var
        .iter()
        .map(|&v| T::ONE / (v + T::from_f64(eps)).sqrt())
        .collect();
    Ok((r.mean.clone(), inv_std))
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
        self.batch_norm_then(gamma, beta, running, mode, false)
    }

    /// `relu(batch_norm(…))` as one op: the same values and gradients as the composition, in
    /// one pass over the activations instead of three (a ReLU's forward and backward each read
    /// and write the whole tensor; in `cnn_step` they were an eighth of the step). The backward
    /// recomputes the normalised value to find where the ReLU passed the gradient, exactly as
    /// the forward computed it, so the mask is the forward's bit for bit.
    pub fn batch_norm_relu(
        &self,
        gamma: Option<&Tensor<T>>,
        beta: Option<&Tensor<T>>,
        running: Option<&mut RunningStats<T>>,
        mode: BatchNormMode,
    ) -> Result<Self> {
        self.batch_norm_then(gamma, beta, running, mode, true)
    }

    fn batch_norm_then(
        &self,
        gamma: Option<&Tensor<T>>,
        beta: Option<&Tensor<T>>,
        running: Option<&mut RunningStats<T>>,
        mode: BatchNormMode,
        relu: bool,
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
        crate::backend::on_cuda!(
            "batch_norm",
            [Some(self), gamma, beta]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
            |_dev| {
                // The GPU composes the ReLU: its kernels are not memory-bound the same way.
                let y = crate::backend::cuda::nn::batch_norm(self, gamma, beta, running, mode)?;
                Ok(if relu { y.relu() } else { y })
            }
        );
        let dims = self.dims().to_vec();
        let n = dims[0];
        let l = self.numel() / (n * c).max(1);
        let count = n * l;
        let (mean, inv_std) = if mode.training {
            check_training_count(count, self)?;
            let (mean, var) = channel_stats(self.data(), c, l);
            batch_statistics(mean, &var, count, running, mode.eps)
        } else {
            running_statistics(running, mode.eps)?
        };
        // Absent γ and β are constants (no gradient), so the op always has three inputs.
        let gamma = gamma.cloned().unwrap_or_else(|| Tensor::ones([c]));
        let beta = beta.cloned().unwrap_or_else(|| Tensor::zeros([c]));
        let scale = scale(&inv_std, gamma.data());
        let (b, m) = (beta.data(), &mean);
        let out = map_rows(self.data(), None, l, |row| {
            let ch = row % c;
            let (m, s, b) = (m[ch], scale[ch], b[ch]);
            move |v: T, _| {
                let y = normalised(v, m, s, b);
                if relu { relu_of(y) } else { y }
            }
        });
        let saved = BatchNormSaved {
            mean,
            inv_std,
            channels: c,
            inner: l,
            training: mode.training,
            relu,
        };
        Ok(Tensor::from_op(
            out,
            self.shape().clone(),
            Op::BatchNorm {
                input: self.clone(),
                gamma,
                beta,
                saved: Box::new(saved),
            },
        ))
    }
}

/// What the fused batch norm keeps for its backward: the per-channel mean and 1/√(σ² + eps)
/// it normalised with (the batch's in training, the running ones in evaluation).
pub(crate) struct BatchNormSaved<T: Float> {
    pub(crate) mean: Vec<T>,
    pub(crate) inv_std: Vec<T>,
    pub(crate) channels: usize,
    /// L: the length of each contiguous run of one channel in the `(N, C, L)` view.
    pub(crate) inner: usize,
    pub(crate) training: bool,
    /// A ReLU follows in the same op ([`Tensor::batch_norm_relu`]; CPU only).
    pub(crate) relu: bool,
}

/// Per-channel γ/√(σ² + eps), computed the same way by the forward and the backward.
fn scale<T: Float>(inv_std: &[T], gamma: &[T]) -> Vec<T> {
    inv_std.iter().zip(gamma).map(|(&s, &g)| s * g).collect()
}

/// The batch-norm output of one value. One function for the forward and the backward's ReLU
/// mask, so both round identically.
#[inline(always)]
fn normalised<T: Float>(v: T, mean: T, scale: T, beta: T) -> T {
    (v - mean) * scale + beta
}

/// `max(y, 0)` as the ReLU op computes it (`y > 0 ? y : 0`).
#[inline(always)]
fn relu_of<T: Float>(y: T) -> T {
    if y > T::ZERO { y } else { T::ZERO }
}

/// `(dx, dγ, dβ)`; `dx` is `None` when the input needs no gradient.
pub(crate) type BatchNormGrads<T> = (Option<Tensor<T>>, Tensor<T>, Tensor<T>);

/// Gradients of the fused batch norm with respect to `(input, γ, β)`. With `x̂ = (x − μ)·s`,
/// `s = 1/√(σ² + eps)` and M values per channel: `dβ = Σ dy`, `dγ = Σ dy·x̂`, and in training
/// (μ, σ² depend on x) `dx = γ·s·(dy − Σdy/M − x̂·Σ(dy·x̂)/M)`; in evaluation `dx = γ·s·dy`.
/// With a fused ReLU, `dy` is first zeroed wherever the batch-norm output was not positive.
pub(crate) fn batch_norm_backward<T: Float>(
    input: &Tensor<T>,
    gamma: &Tensor<T>,
    beta: &Tensor<T>,
    saved: &BatchNormSaved<T>,
    grad: &Tensor<T>,
    need_input: bool,
) -> Result<BatchNormGrads<T>> {
    let BatchNormSaved {
        mean,
        inv_std,
        channels: c,
        inner: l,
        training,
        relu,
    } = saved;
    let (c, l, relu) = (*c, *l, *relu);
    let (x, dy) = (input.data(), grad.data());
    let (g, b) = (gamma.data(), beta.data());
    let scale = scale(inv_std, g);
    // Whether the fused ReLU let the gradient at `v` of channel `ch` through.
    let open = |ch: usize| {
        let (m, s, b) = (mean[ch], scale[ch], b[ch]);
        move |v: T| normalised(v, m, s, b) > T::ZERO
    };
    // Per channel: Σ dy and Σ dy·(x − μ), each in a fixed order (rows n = 0, 1, ...).
    let sums: Vec<(T, T)> = (0..c)
        .into_par_iter()
        .with_min_len(channel_min_len(x.len(), c))
        .map(|ch| {
            let open = open(ch);
            rows_of(x.len(), c, l, ch).fold((T::ZERO, T::ZERO), |(a, b), r| {
                // Plain batch norm passes `|_| true`, its own instance with no mask work.
                let (s, sc) = if relu {
                    sum_and_centred_dot(&dy[r.clone()], &x[r], mean[ch], &open)
                } else {
                    sum_and_centred_dot(&dy[r.clone()], &x[r], mean[ch], &|_| true)
                };
                (a + s, b + sc)
            })
        })
        .collect();
    let dbeta: Vec<T> = sums.iter().map(|p| p.0).collect();
    let dgamma: Vec<T> = sums.iter().zip(inv_std).map(|(p, &s)| p.1 * s).collect();
    let dx = need_input.then(|| {
        let per_channel = (x.len() / (c * l).max(1) * l).max(1);
        let inv_m = T::ONE / T::from_usize(per_channel);
        let training = *training;
        map_rows(x, Some(dy), l, |row| {
            let ch = row % c;
            let (m, s, open) = (mean[ch], inv_std[ch], open(ch));
            let (k, c1, c2) = (g[ch] * s, dbeta[ch] * inv_m, dgamma[ch] * inv_m * s);
            move |v: T, d: T| {
                let d = if !relu || open(v) { d } else { T::ZERO };
                if training {
                    k * (d - c1 - (v - m) * c2)
                } else {
                    k * d
                }
            }
        })
    });
    Ok((
        dx.map(|d| Tensor::from_vec(d, input.shape().clone()))
            .transpose()?,
        Tensor::from_vec(dgamma, [c])?,
        Tensor::from_vec(dbeta, [c])?,
    ))
}

/// Rows of the `(N, C, L)` view that hold channel `ch`, as ranges of the flat buffer.
fn rows_of(
    len: usize,
    c: usize,
    l: usize,
    ch: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> {
    let n = len / (c * l).max(1);
    (0..n).map(move |i| (i * c + ch) * l..(i * c + ch + 1) * l)
}

/// Channels per rayon task: enough that each task reads at least ~16k values.
fn channel_min_len(len: usize, c: usize) -> usize {
    let per_channel = len / c.max(1);
    (PAR_BLOCK / per_channel.max(1)).max(1)
}

/// Target number of values per parallel task.
const PAR_BLOCK: usize = 1 << 14;

/// Per-channel mean and biased variance of the `(N, C, L)` view in one pass over memory (see
/// below); channels in parallel, each summed in a fixed order, so the bits do not depend on the
/// thread count.
fn channel_stats<T: Float>(x: &[T], c: usize, l: usize) -> (Vec<T>, Vec<T>) {
    let count = T::from_usize((x.len() / c.max(1)).max(1));
    (0..c)
        .into_par_iter()
        .with_min_len(channel_min_len(x.len(), c))
        .map(|ch| {
            // One read of each row: its sum, then (while it is in cache) its squared deviations
            // from its own mean, merged into the running ones by Chan et al.'s update
            // `M2 += M2_row + δ²·n·n_row/(n + n_row)`, as stable as two passes over the channel.
            let (mut sum, mut n, mut mean_run, mut m2) = (T::ZERO, 0, T::ZERO, T::ZERO);
            for r in rows_of(x.len(), c, l, ch) {
                let row = &x[r];
                if row.is_empty() {
                    continue;
                }
                let row_sum = simd::sum_row(row);
                let row_mean = row_sum / T::from_usize(row.len());
                let row_m2 = centred_square_sum(row, row_mean);
                let delta = row_mean - mean_run;
                let frac = T::from_usize(row.len()) / T::from_usize(n + row.len());
                mean_run += delta * frac;
                m2 += row_m2 + delta * delta * T::from_usize(n) * frac;
                sum += row_sum;
                n += row.len();
            }
            (sum / count, m2 / count)
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::no_grad;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// The batch norm composed from primitives (the engine's previous implementation): the
    /// reference the fused op must match.
    fn composed<T: Float>(
        x: &Tensor<T>,
        gamma: Option<&Tensor<T>>,
        beta: Option<&Tensor<T>>,
        running: Option<&mut RunningStats<T>>,
        mode: BatchNormMode,
    ) -> Result<Tensor<T>> {
        let c = x.dims()[1];
        let this = x;
        // Everything is computed on the `(N, C, L)` view (L = H·W, or 1), with per-channel
        // values of shape `(1, C, 1)`. Two choices keep the step fast (measured on the
        // `cnn_step` workload): every reduction is split into two over contiguous axes (L, then
        // N) instead of one over the non-adjacent axes {0, 2}, which would copy the whole input
        // into a permuted layout; and per-channel values are spread to `(N, C, 1)` before they
        // meet the full tensor, so the gradient of each broadcast is a sum over L (contiguous
        // rows, in parallel over the N·C rows) followed by a small one over N.
        let dims = this.dims().to_vec();
        let n = dims[0];
        let l = this.numel() / (n * c).max(1);
        let count = n * l;
        let x = this.reshape(&[n, c, l])?;
        let spread = |t: &Tensor<T>| t.broadcast_to(&[n, c, 1]);
        let (centred, scale) = if mode.training {
            if count < 2 {
                return Err(Error::invalid(
                    "batch_norm",
                    format!(
                        "training needs more than one value per channel, got shape {:?}",
                        this.shape()
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

    /// The per-channel mean of `(N, C, L)` as `(1, C, 1)`: a sum over L (contiguous rows), then over
    /// N (contiguous blocks of C), so no permuted copy of the input is made.
    fn channel_mean<T: Float>(x: &Tensor<T>) -> Result<Tensor<T>> {
        let count = x.dims()[0] * x.dims()[2];
        Ok(x.sum(&[2], true)?
            .sum(&[0], true)?
            .mul_scalar(1.0 / count as f64))
    }

    fn max_diff(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
        a.data()
            .iter()
            .zip(b.data())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    /// Fused and composed agree in value, running statistics and every gradient, in training
    /// and evaluation, for the 1-d and 2-d layouts.
    #[test]
    fn fused_matches_composed() {
        let mut rng = StdRng::seed_from_u64(7);
        for (dims, training) in [
            (vec![5, 3, 4, 6], true),
            (vec![5, 3, 4, 6], false),
            (vec![7, 4], true),
            (vec![3, 2, 9], true),
            (vec![3, 2, 9], false),
        ] {
            let c = dims[1];
            let x = Tensor::<f64>::randn(dims.clone(), &mut rng)
                .add_scalar(0.7)
                .requires_grad_();
            let g = Tensor::<f64>::randn([c], &mut rng).requires_grad_();
            let b = Tensor::<f64>::randn([c], &mut rng).requires_grad_();
            let w = Tensor::<f64>::randn(dims.clone(), &mut rng);
            let mode = BatchNormMode {
                training,
                eps: 1e-5,
            };
            let mut s1 = RunningStats::new(c);
            s1.mean
                .iter_mut()
                .enumerate()
                .for_each(|(i, m)| *m = 0.1 * i as f64);
            s1.var
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = 0.5 + i as f64);
            let mut s2 = s1.clone();
            let y1 = x
                .batch_norm(Some(&g), Some(&b), Some(&mut s1), mode)
                .unwrap();
            let y2 = composed(&x, Some(&g), Some(&b), Some(&mut s2), mode).unwrap();
            // Only the order of the per-channel sums differs: rounding of f64 sums.
            let tol = 1e-12;
            assert!(max_diff(&y1, &y2) < tol, "{dims:?} {training}");
            for (p, q) in s1
                .mean
                .iter()
                .chain(&s1.var)
                .zip(s2.mean.iter().chain(&s2.var))
            {
                assert!((p - q).abs() < tol);
            }
            let l1 = y1.mul(&w).unwrap().sum_all().unwrap();
            let l2 = y2.mul(&w).unwrap().sum_all().unwrap();
            let (g1, g2) = (l1.backward().unwrap(), l2.backward().unwrap());
            for t in [&x, &g, &b] {
                let d = max_diff(g1.get(t).unwrap(), g2.get(t).unwrap());
                assert!(d < tol, "{dims:?} {training}: gradient differs by {d}");
            }
            // Without γ and β, and without recording.
            let y1 = no_grad(|| x.batch_norm(None, None, Some(&mut s1.clone()), mode)).unwrap();
            let y2 = composed(&x, None, None, Some(&mut s2.clone()), mode).unwrap();
            assert!(max_diff(&y1, &y2) < tol);
        }
    }
    /// The fused ReLU changes nothing but the number of passes: values and gradients equal
    /// `batch_norm(…).relu()` bit for bit (same expressions, same summation order), in training
    /// and evaluation, f32 and f64, including exact zeros of the batch-norm output (β chosen so
    /// that some outputs are exactly 0, where the ReLU's sub-gradient is 0).
    fn fused_relu_is_bitwise_the_composition<T: Float>() {
        let mut rng = StdRng::seed_from_u64(11);
        for (dims, training) in [
            (vec![4, 3, 5, 6], true),
            (vec![4, 3, 5, 6], false),
            (vec![9, 5], true),
            (vec![2, 2, 7], false),
        ] {
            let c = dims[1];
            let x = Tensor::<T>::randn(dims.clone(), &mut rng).requires_grad_();
            let g = Tensor::<T>::randn([c], &mut rng).requires_grad_();
            let mut beta = Tensor::<T>::randn([c], &mut rng).to_vec();
            let w = Tensor::<T>::randn(dims.clone(), &mut rng);
            let mode = BatchNormMode {
                training,
                eps: 1e-5,
            };
            // Eval: channel 0's running mean is its first value and β is 0, so y = 0 there.
            let mut stats = RunningStats::<T>::new(c);
            stats.mean[0] = x.data()[0];
            beta[0] = T::ZERO;
            let b = Tensor::from_vec(beta, [c]).unwrap().requires_grad_();
            let mut s2 = stats.clone();
            let fused = x
                .batch_norm_relu(Some(&g), Some(&b), Some(&mut stats), mode)
                .unwrap();
            let composed = x
                .batch_norm(Some(&g), Some(&b), Some(&mut s2), mode)
                .unwrap()
                .relu();
            assert_eq!(fused.data(), composed.data(), "{dims:?} {training}");
            assert_eq!(stats, s2);
            assert!(fused.data().contains(&T::ZERO));
            let l1 = fused.mul(&w).unwrap().sum_all().unwrap();
            let l2 = composed.mul(&w).unwrap().sum_all().unwrap();
            let (g1, g2) = (l1.backward().unwrap(), l2.backward().unwrap());
            for t in [&x, &g, &b] {
                assert_eq!(
                    g1.get(t).unwrap().data(),
                    g2.get(t).unwrap().data(),
                    "{dims:?} {training}"
                );
            }
        }
    }

    #[test]
    fn fused_relu_is_bitwise_the_composition_f32_f64() {
        fused_relu_is_bitwise_the_composition::<f32>();
        fused_relu_is_bitwise_the_composition::<f64>();
    }
}
