//! Elementwise functions of two tensors with NumPy broadcasting: add, sub, mul, div, maximum,
//! minimum, pow. Backward multiplies the incoming gradient by each partial derivative and sums
//! it back over the broadcast dimensions.

use crate::autograd::{GradPair, Op};
use crate::backend::cpu::simd;
use crate::error::Result;
use crate::ops::reduce::sum_to_shape;
use crate::tensor::{Float, Shape, StridedIter, Tensor};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    Pow,
}

impl BinaryOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::Pow => "pow",
        }
    }

    #[inline(always)]
    fn forward<T: Float>(self, l: T, r: T) -> T {
        match self {
            BinaryOp::Add => l + r,
            BinaryOp::Sub => l - r,
            BinaryOp::Mul => l * r,
            BinaryOp::Div => l / r,
            BinaryOp::Maximum => {
                if l >= r {
                    l
                } else {
                    r
                }
            }
            BinaryOp::Minimum => {
                if l <= r {
                    l
                } else {
                    r
                }
            }
            BinaryOp::Pow => l.powf(r),
        }
    }
}

/// `f(lhs, rhs)` elementwise over the broadcast shape.
pub(crate) fn broadcast_map<T: Float, F: Fn(T, T) -> T + Sync>(
    op: &'static str,
    lhs: &Tensor<T>,
    rhs: &Tensor<T>,
    f: F,
) -> Result<(Vec<T>, Shape)> {
    let shape = Shape::broadcast(op, lhs.shape(), rhs.shape())?;
    let mut out = vec![T::ZERO; shape.numel()];
    if lhs.shape() == rhs.shape() {
        simd::zip_map(lhs.data(), rhs.data(), &mut out, f);
        return Ok((out, shape));
    }
    if shape.numel() == 0 {
        return Ok((out, shape));
    }
    let ls = lhs.shape().broadcast_strides(&shape);
    let rs = rhs.shape().broadcast_strides(&shape);
    let rank = shape.rank();
    // Rows along the last dimension: each operand's row is either contiguous or one repeated
    // value, so every row is one vectorised kernel call.
    let row = if rank == 0 { 1 } else { shape.dims()[rank - 1] };
    let (l_step, r_step) = if rank == 0 {
        (0, 0)
    } else {
        (ls[rank - 1], rs[rank - 1])
    };
    let outer = &shape.dims()[..rank.saturating_sub(1)];
    let (lo_strides, ro_strides) = (&ls[..rank.saturating_sub(1)], &rs[..rank.saturating_sub(1)]);
    let (l, r) = (lhs.data(), rhs.data());
    let one_row = |o: &mut [T], lo: usize, ro: usize| match (l_step, r_step) {
        (1, 1) => simd::zip_map(&l[lo..lo + row], &r[ro..ro + row], o, &f),
        (1, _) => {
            let rv = r[ro];
            simd::map(&l[lo..lo + row], o, |a| f(a, rv));
        }
        (_, 1) => {
            let lv = l[lo];
            simd::map(&r[ro..ro + row], o, |b| f(lv, b));
        }
        _ => o.fill(f(l[lo], r[ro])),
    };
    if row >= PAR_MIN_ROW && out.len() >= 2 * PAR_BLOCK {
        // Fixed blocks of whole rows in parallel; each row's offsets are computed from its
        // index, and every element depends on its own inputs only: the same bits for any
        // number of threads.
        let rows_per_block = PAR_BLOCK.div_ceil(row);
        out.par_chunks_mut(rows_per_block * row)
            .enumerate()
            .for_each(|(b, block)| {
                for (i, o) in block.chunks_mut(row).enumerate() {
                    let index = b * rows_per_block + i;
                    let lo = row_offset(index, outer, lo_strides);
                    let ro = row_offset(index, outer, ro_strides);
                    one_row(o, lo, ro);
                }
            });
    } else {
        let l_outer = StridedIter::new(outer, lo_strides);
        let r_outer = StridedIter::new(outer, ro_strides);
        for ((o, lo), ro) in out.chunks_mut(row).zip(l_outer).zip(r_outer) {
            one_row(o, lo, ro);
        }
    }
    Ok((out, shape))
}

/// Elements per parallel task of the broadcasting paths.
pub(crate) const PAR_BLOCK: usize = 1 << 14;
/// Rows shorter than this stay on the serial path, whose offsets come from an incremental
/// iterator instead of a division per axis.
pub(crate) const PAR_MIN_ROW: usize = 16;

/// The flat offset of row `index` (row-major over `dims`) in a view with `strides`.
pub(crate) fn row_offset(mut index: usize, dims: &[usize], strides: &[usize]) -> usize {
    let mut offset = 0;
    for (&d, &s) in dims.iter().zip(strides).rev() {
        offset += (index % d) * s;
        index /= d;
    }
    offset
}

fn apply<T: Float>(kind: BinaryOp, lhs: &Tensor<T>, rhs: &Tensor<T>) -> Result<Tensor<T>> {
    crate::backend::on_cuda!(kind.name(), [lhs, rhs], |dev| {
        crate::backend::cuda::ops::binary(kind, lhs, rhs, dev)
    });
    let (out, shape) = broadcast_map(kind.name(), lhs, rhs, |l, r| kind.forward(l, r))?;
    Ok(Tensor::from_op(
        out,
        shape,
        Op::Binary {
            kind,
            lhs: lhs.clone(),
            rhs: rhs.clone(),
        },
    ))
}

/// The gradient of one operand: `sum_to_shape(grad · ∂f/∂operand)`.
fn partial<T: Float, F: Fn(T, T) -> T + Sync>(
    lhs: &Tensor<T>,
    rhs: &Tensor<T>,
    grad: &Tensor<T>,
    target: &Shape,
    d: F,
) -> Result<Tensor<T>> {
    let (w, shape) = broadcast_map("backward", lhs, rhs, d)?;
    let mut g = vec![T::ZERO; w.len()];
    simd::zip_map(grad.data(), &w, &mut g, |a, b| a * b);
    sum_to_shape(&Tensor::from_vec(g, shape)?, target)
}

pub(crate) fn backward<T: Float>(
    kind: BinaryOp,
    lhs: &Tensor<T>,
    rhs: &Tensor<T>,
    grad: &Tensor<T>,
    need_lhs: bool,
    need_rhs: bool,
) -> Result<GradPair<T>> {
    let (ls, rs) = (lhs.shape(), rhs.shape());
    let half = T::from_f64(0.5);
    // At ties, maximum and minimum split the gradient equally (as PyTorch does).
    let tie = |a: bool, b: bool| {
        if a {
            T::ONE
        } else if b {
            half
        } else {
            T::ZERO
        }
    };
    let gl = if !need_lhs {
        None
    } else {
        Some(match kind {
            BinaryOp::Add | BinaryOp::Sub => sum_to_shape(grad, ls)?,
            BinaryOp::Mul => partial(lhs, rhs, grad, ls, |_, r| r)?,
            BinaryOp::Div => partial(lhs, rhs, grad, ls, |_, r| T::ONE / r)?,
            BinaryOp::Maximum => partial(lhs, rhs, grad, ls, |l, r| tie(l > r, l == r))?,
            BinaryOp::Minimum => partial(lhs, rhs, grad, ls, |l, r| tie(l < r, l == r))?,
            BinaryOp::Pow => partial(lhs, rhs, grad, ls, |l, r| r * l.powf(r - T::ONE))?,
        })
    };
    let gr = if !need_rhs {
        None
    } else {
        Some(match kind {
            BinaryOp::Add => sum_to_shape(grad, rs)?,
            BinaryOp::Sub => sum_to_shape(grad, rs)?.neg(),
            BinaryOp::Mul => partial(lhs, rhs, grad, rs, |l, _| l)?,
            BinaryOp::Div => partial(lhs, rhs, grad, rs, |l, r| -l / (r * r))?,
            BinaryOp::Maximum => partial(lhs, rhs, grad, rs, |l, r| tie(r > l, l == r))?,
            BinaryOp::Minimum => partial(lhs, rhs, grad, rs, |l, r| tie(r < l, l == r))?,
            // ∂(lʳ)/∂r = lʳ·ln l.
            BinaryOp::Pow => partial(lhs, rhs, grad, rs, |l, r| l.powf(r) * l.ln())?,
        })
    };
    Ok((gl, gr))
}

impl<T: Float> Tensor<T> {
    /// `lhs + rhs`, broadcasting.
    pub fn add(&self, rhs: &Tensor<T>) -> Result<Self> {
        apply(BinaryOp::Add, self, rhs)
    }
    /// `lhs − rhs`, broadcasting.
    pub fn sub(&self, rhs: &Tensor<T>) -> Result<Self> {
        apply(BinaryOp::Sub, self, rhs)
    }
    /// `lhs · rhs` elementwise, broadcasting.
    pub fn mul(&self, rhs: &Tensor<T>) -> Result<Self> {
        apply(BinaryOp::Mul, self, rhs)
    }
    /// `lhs / rhs` elementwise, broadcasting; derivatives `1/r` and `−l/r²`.
    pub fn div(&self, rhs: &Tensor<T>) -> Result<Self> {
        apply(BinaryOp::Div, self, rhs)
    }
    /// Elementwise maximum; at ties each side receives half the gradient.
    pub fn maximum(&self, rhs: &Tensor<T>) -> Result<Self> {
        apply(BinaryOp::Maximum, self, rhs)
    }
    /// Elementwise minimum; at ties each side receives half the gradient.
    pub fn minimum(&self, rhs: &Tensor<T>) -> Result<Self> {
        apply(BinaryOp::Minimum, self, rhs)
    }
    /// `lhs^rhs` elementwise; derivatives `r·l^{r−1}` and `l^r·ln l` (domain `l > 0`).
    pub fn pow(&self, rhs: &Tensor<T>) -> Result<Self> {
        apply(BinaryOp::Pow, self, rhs)
    }
}
