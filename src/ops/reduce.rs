//! Reductions over any set of axes (sum, mean, max, min, var) and the numerically stable
//! log-sum-exp family (logsumexp, softmax, log-softmax).
//!
//! Sum and max/min are primitives; the rest are composed from them, so their gradients follow.
//! Every reduction over an axis of length 0 is an error rather than an undefined value.

use crate::autograd::{Op, no_grad};
use crate::backend::cpu::simd;
use crate::error::{Error, Result};
use crate::tensor::{Float, Shape, Tensor};
use rayon::prelude::*;

/// How a reduction sees its input: `outer × reduced × inner`, contiguous.
pub(crate) struct Plan {
    pub(crate) outer: usize,
    pub(crate) reduced: usize,
    pub(crate) inner: usize,
}

/// A reduction ready to run.
struct Prepared<T: Float> {
    /// The resolved, sorted axes.
    axes: Vec<usize>,
    plan: Plan,
    out_shape: Shape,
    /// A copy with the reduced axes moved last, when they were not contiguous.
    permuted: Option<Tensor<T>>,
}

/// Resolves `axes`, rejects empty reductions, and plans the reduction (permuting the data when
/// the reduced axes are not one contiguous block).
fn prepare<T: Float>(
    op: &'static str,
    x: &Tensor<T>,
    axes: &[isize],
    keepdim: bool,
) -> Result<Prepared<T>> {
    let shape = x.shape();
    let axes = shape.axes(op, axes)?;
    if axes.iter().any(|&a| shape.dims()[a] == 0) || (shape.rank() == 0 && x.numel() == 0) {
        return Err(Error::EmptyReduction {
            op,
            shape: shape.to_vec(),
        });
    }
    let dims = shape.dims();
    let out_dims: Vec<usize> = (0..dims.len())
        .filter_map(|d| {
            if axes.contains(&d) {
                keepdim.then_some(1)
            } else {
                Some(dims[d])
            }
        })
        .collect();
    let contiguous = axes.windows(2).all(|w| w[1] == w[0] + 1);
    let (plan, permuted) = if contiguous && !axes.is_empty() {
        let (first, last) = (axes[0], axes[axes.len() - 1]);
        (
            Plan {
                outer: dims[..first].iter().product(),
                reduced: dims[first..=last].iter().product(),
                inner: dims[last + 1..].iter().product(),
            },
            None,
        )
    } else if axes.is_empty() {
        (
            Plan {
                outer: x.numel(),
                reduced: 1,
                inner: 1,
            },
            None,
        )
    } else {
        // Move the reduced axes last (a copy), then reduce contiguous rows.
        let mut perm: Vec<usize> = (0..dims.len()).filter(|d| !axes.contains(d)).collect();
        perm.extend(&axes);
        let p = no_grad(|| x.permute(&perm))?;
        let reduced: usize = axes.iter().map(|&a| dims[a]).product();
        (
            Plan {
                outer: x.numel() / reduced,
                reduced,
                inner: 1,
            },
            Some(p),
        )
    };
    Ok(Prepared {
        axes,
        plan,
        out_shape: Shape::new(out_dims),
        permuted,
    })
}

fn sum_kernel<T: Float>(x: &[T], plan: &Plan) -> Vec<T> {
    let Plan {
        outer,
        reduced,
        inner,
    } = *plan;
    if outer == 1 && inner == 1 {
        return vec![simd::sum(x)];
    }
    let mut out = vec![T::ZERO; outer * inner];
    let block = reduced * inner;
    let body = |(o, dst): (usize, &mut [T])| {
        let src = &x[o * block..(o + 1) * block];
        if inner == 1 {
            dst[0] = simd::sum_row(src);
        } else {
            for row in src.chunks_exact(inner) {
                simd::add_assign(dst, row);
            }
        }
    };
    if x.len() >= 1 << 16 && outer > 1 {
        out.par_chunks_mut(inner).enumerate().for_each(body);
    } else {
        out.chunks_mut(inner).enumerate().for_each(body);
    }
    out
}

/// Max (or min) along the plan's reduced block: the winning value and its flat offset in `x`.
/// Ties go to the first occurrence.
fn extremum_kernel<T: Float>(x: &[T], plan: &Plan, want_max: bool) -> (Vec<T>, Vec<usize>) {
    let Plan {
        outer,
        reduced,
        inner,
    } = *plan;
    let mut vals = vec![T::ZERO; outer * inner];
    let mut args = vec![0usize; outer * inner];
    for o in 0..outer {
        for i in 0..inner {
            let base = o * reduced * inner + i;
            let mut best = x[base];
            let mut arg = base;
            for r in 1..reduced {
                let off = base + r * inner;
                let v = x[off];
                if (want_max && v > best) || (!want_max && v < best) {
                    best = v;
                    arg = off;
                }
            }
            vals[o * inner + i] = best;
            args[o * inner + i] = arg;
        }
    }
    (vals, args)
}

/// Maps offsets into a permuted copy back to offsets into the original tensor.
pub(crate) fn unpermute_offsets(args: &mut [usize], x: &Tensor<impl Float>, axes: &[usize]) {
    let dims = x.dims();
    let mut perm: Vec<usize> = (0..dims.len()).filter(|d| !axes.contains(d)).collect();
    perm.extend(axes);
    let pdims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let pstrides = Shape::new(pdims.clone()).strides();
    let ostrides = x.shape().strides();
    for a in args.iter_mut() {
        let mut rem = *a;
        let mut off = 0;
        for (d, &p) in perm.iter().enumerate() {
            let idx = rem / pstrides[d];
            rem %= pstrides[d];
            off += idx * ostrides[p];
        }
        *a = off;
    }
}

fn extremum<T: Float>(
    op: &'static str,
    x: &Tensor<T>,
    axes: &[isize],
    keepdim: bool,
    want_max: bool,
) -> Result<Tensor<T>> {
    let Prepared {
        axes,
        plan,
        out_shape,
        permuted,
    } = prepare(op, x, axes, keepdim)?;
    let src = permuted.as_ref().unwrap_or(x);
    crate::backend::on_cuda!(op, [x], |_dev| {
        crate::backend::cuda::ops::extremum(x, src, &axes, &plan, out_shape, want_max)
    });
    let (vals, mut arg) = extremum_kernel(src.data(), &plan, want_max);
    if permuted.is_some() {
        unpermute_offsets(&mut arg, x, &axes);
    }
    Ok(Tensor::from_op(
        vals,
        out_shape,
        Op::Extremum {
            input: x.clone(),
            arg,
            largest: want_max,
        },
    ))
}

/// The gradient of a sum: the incoming gradient broadcast back over the reduced axes.
pub(crate) fn sum_backward<T: Float>(
    grad: &Tensor<T>,
    input_shape: &Shape,
    axes: &[usize],
) -> Result<Tensor<T>> {
    let keep: Vec<usize> = (0..input_shape.rank())
        .map(|d| {
            if axes.contains(&d) {
                1
            } else {
                input_shape.dims()[d]
            }
        })
        .collect();
    grad.reshape(&keep)?.broadcast_to(input_shape.dims())
}

/// The gradient of max/min: the incoming gradient routed to each winner.
pub(crate) fn extremum_backward<T: Float>(
    grad: &Tensor<T>,
    input_shape: &Shape,
    arg: &[usize],
) -> Result<Tensor<T>> {
    let mut dx = vec![T::ZERO; input_shape.numel()];
    for (&a, &g) in arg.iter().zip(grad.data()) {
        dx[a] += g;
    }
    Tensor::from_vec(dx, input_shape.clone())
}

/// Sums `x` down to `target`, the inverse of broadcasting `target` up to `x`'s shape.
pub(crate) fn sum_to_shape<T: Float>(x: &Tensor<T>, target: &Shape) -> Result<Tensor<T>> {
    if x.shape() == target {
        return Ok(x.clone());
    }
    let offset = x.rank() - target.rank();
    let axes: Vec<isize> = (0..x.rank())
        .filter(|&d| d < offset || (target.dims()[d - offset] == 1 && x.dims()[d] != 1))
        .map(|d| d as isize)
        .collect();
    if axes.is_empty() {
        return x.reshape(target.dims());
    }
    x.sum(&axes, true)?.reshape(target.dims())
}

impl<T: Float> Tensor<T> {
    /// Sum over `axes` (negative counts from the end; empty means every axis). Derivative: 1.
    pub fn sum(&self, axes: &[isize], keepdim: bool) -> Result<Self> {
        let Prepared {
            axes,
            plan,
            out_shape,
            permuted,
        } = prepare("sum", self, axes, keepdim)?;
        crate::backend::on_cuda!("sum", [self], |_dev| {
            crate::backend::cuda::ops::sum(self, permuted.as_ref(), axes, &plan, out_shape)
        });
        let out = sum_kernel(permuted.as_ref().unwrap_or(self).data(), &plan);
        Ok(Tensor::from_op(
            out,
            out_shape,
            Op::Sum {
                input: self.clone(),
                axes,
            },
        ))
    }
    /// Sum of every element, as a scalar.
    pub fn sum_all(&self) -> Result<Self> {
        self.sum(&[], false)
    }
    /// Mean over `axes`: the sum divided by the number of reduced elements.
    pub fn mean(&self, axes: &[isize], keepdim: bool) -> Result<Self> {
        let count = reduced_count(self, "mean", axes)?;
        Ok(self.sum(axes, keepdim)?.mul_scalar(1.0 / count as f64))
    }
    /// Mean of every element, as a scalar.
    pub fn mean_all(&self) -> Result<Self> {
        self.mean(&[], false)
    }
    /// Maximum over `axes`; the gradient goes to the first maximal element.
    pub fn max(&self, axes: &[isize], keepdim: bool) -> Result<Self> {
        extremum("max", self, axes, keepdim, true)
    }
    /// Minimum over `axes`; the gradient goes to the first minimal element.
    pub fn min(&self, axes: &[isize], keepdim: bool) -> Result<Self> {
        extremum("min", self, axes, keepdim, false)
    }
    /// Variance over `axes`: `Σ(x − mean)² / (n − correction)`; `correction = 0` is the
    /// population (biased) variance, 1 the sample variance.
    pub fn var(&self, axes: &[isize], keepdim: bool, correction: usize) -> Result<Self> {
        let count = reduced_count(self, "var", axes)?;
        if count <= correction {
            return Err(Error::invalid(
                "var",
                format!(
                    "{count} elements per reduction leave no degrees of freedom for correction {correction}"
                ),
            ));
        }
        let centred = self.sub(&self.mean(axes, true)?)?;
        Ok(centred
            .square()
            .sum(axes, keepdim)?
            .mul_scalar(1.0 / (count - correction) as f64))
    }
    /// `log Σ exp(x)` along `axis`, stable for any finite input: the maximum is subtracted
    /// first (as a constant, which leaves the gradient, `softmax(x)`, exact).
    pub fn logsumexp(&self, axis: isize, keepdim: bool) -> Result<Self> {
        let (shifted, m) = self.shift_by_max(axis)?;
        let lse = shifted.exp().sum(&[axis], true)?.log().add(&m)?;
        if keepdim {
            Ok(lse)
        } else {
            let axis = self.shape().axis("logsumexp", axis)?;
            lse.squeeze(axis as isize)
        }
    }
    /// `log softmax(x) = (x − m) − log Σ exp(x − m)` along `axis`, with `m` the maximum. The
    /// maximum is subtracted before the log-sum, so large equal logits lose no digits.
    pub fn log_softmax(&self, axis: isize) -> Result<Self> {
        let (shifted, _) = self.shift_by_max(axis)?;
        shifted.sub(&shifted.exp().sum(&[axis], true)?.log())
    }
    /// `softmax(x) = exp(log_softmax(x))` along `axis`.
    pub fn softmax(&self, axis: isize) -> Result<Self> {
        Ok(self.log_softmax(axis)?.exp())
    }

    /// `(x − m, m)` with `m` the maximum along `axis` (kept), taken as a constant. A row of all
    /// −∞ has maximum −∞; shifting by it would give NaN, so such rows shift by 0.
    fn shift_by_max(&self, axis: isize) -> Result<(Self, Self)> {
        let m = no_grad(|| -> Result<Tensor<T>> {
            let m = self.max(&[axis], true)?;
            crate::backend::on_cuda!("logsumexp", [&m], |_dev| {
                crate::backend::cuda::ops::finite_or_zero(&m)
            });
            let data = m
                .data()
                .iter()
                .map(|&v| if v.is_finite() { v } else { T::ZERO })
                .collect();
            Tensor::from_vec(data, m.shape().clone())
        })?;
        Ok((self.sub(&m)?, m))
    }
}

fn reduced_count<T: Float>(x: &Tensor<T>, op: &'static str, axes: &[isize]) -> Result<usize> {
    let axes = x.shape().axes(op, axes)?;
    let count: usize = axes.iter().map(|&a| x.dims()[a]).product();
    if count == 0 {
        return Err(Error::EmptyReduction {
            op,
            shape: x.dims().to_vec(),
        });
    }
    Ok(count)
}
