//! Matrix products: `(…, m, k) · (…, k, n) → (…, m, n)` with NumPy broadcasting over the batch
//! dimensions. Backward: `dA = dC·Bᵀ`, `dB = Aᵀ·dC`, summed over broadcast batch dimensions.
//! Transposes are read through strides, never copied.

use crate::autograd::{GradPair, Op};
use crate::backend::cpu::gemm::{MatRef, gemm};
use crate::error::{Error, Result};
use crate::ops::reduce::sum_to_shape;
use crate::tensor::{Float, Shape, StridedIter, Tensor};
use rayon::prelude::*;

/// The broadcast batch shape and, per batch item, the matrix offsets into each operand.
struct Batches {
    shape: Vec<usize>,
    lhs: Vec<usize>,
    rhs: Vec<usize>,
}

fn batches(lhs: &Shape, rhs: &Shape) -> Result<Batches> {
    let (lr, rr) = (lhs.rank(), rhs.rank());
    let lb = Shape::new(lhs.dims()[..lr - 2].to_vec());
    let rb = Shape::new(rhs.dims()[..rr - 2].to_vec());
    let batch = Shape::broadcast("matmul", &lb, &rb).map_err(|_| Error::ShapeMismatch {
        op: "matmul",
        lhs: lhs.to_vec(),
        rhs: rhs.to_vec(),
    })?;
    let l_mat = lhs.dims()[lr - 2] * lhs.dims()[lr - 1];
    let r_mat = rhs.dims()[rr - 2] * rhs.dims()[rr - 1];
    let ls = lb.broadcast_strides(&batch);
    let rs = rb.broadcast_strides(&batch);
    Ok(Batches {
        shape: batch.to_vec(),
        lhs: StridedIter::new(batch.dims(), &ls)
            .map(|o| o * l_mat)
            .collect(),
        rhs: StridedIter::new(batch.dims(), &rs)
            .map(|o| o * r_mat)
            .collect(),
    })
}

/// One GEMM per batch item, `C_b = op(A_b)·op(B_b)`, where `op` transposes when asked.
#[allow(clippy::too_many_arguments)]
fn batched<T: Float>(
    a: &[T],
    a_offsets: &[usize],
    a_rows: usize,
    a_cols: usize,
    a_t: bool,
    b: &[T],
    b_offsets: &[usize],
    b_rows: usize,
    b_cols: usize,
    b_t: bool,
) -> Vec<T> {
    let (m, n) = (
        if a_t { a_cols } else { a_rows },
        if b_t { b_rows } else { b_cols },
    );
    let mut c = vec![T::ZERO; a_offsets.len() * m * n];
    if m * n == 0 {
        return c;
    }
    let one = |(i, c_b): (usize, &mut [T])| {
        let mut ar = MatRef::new(
            &a[a_offsets[i]..a_offsets[i] + a_rows * a_cols],
            a_rows,
            a_cols,
        );
        let mut br = MatRef::new(
            &b[b_offsets[i]..b_offsets[i] + b_rows * b_cols],
            b_rows,
            b_cols,
        );
        if a_t {
            ar = ar.t();
        }
        if b_t {
            br = br.t();
        }
        gemm(ar, br, c_b, false);
    };
    if a_offsets.len() > 1 {
        c.par_chunks_mut(m * n).enumerate().for_each(one);
    } else {
        c.chunks_mut(m * n).enumerate().for_each(one);
    }
    c
}

pub(crate) fn backward<T: Float>(
    lhs: &Tensor<T>,
    rhs: &Tensor<T>,
    grad: &Tensor<T>,
    need_lhs: bool,
    need_rhs: bool,
) -> Result<GradPair<T>> {
    let b = batches(lhs.shape(), rhs.shape())?;
    let (m, k) = (lhs.dims()[lhs.rank() - 2], lhs.dims()[lhs.rank() - 1]);
    let n = rhs.dims()[rhs.rank() - 1];
    let g_offsets: Vec<usize> = (0..b.lhs.len()).map(|i| i * m * n).collect();
    let full = |rows: usize, cols: usize| {
        let mut d = b.shape.clone();
        d.extend([rows, cols]);
        Shape::new(d)
    };
    let gl = if need_lhs {
        // dA_b = dC_b (m×n) · B_bᵀ (n×k)
        let d = batched(
            grad.data(),
            &g_offsets,
            m,
            n,
            false,
            rhs.data(),
            &b.rhs,
            k,
            n,
            true,
        );
        Some(sum_to_shape(
            &Tensor::from_vec(d, full(m, k))?,
            lhs.shape(),
        )?)
    } else {
        None
    };
    let gr = if need_rhs {
        // dB_b = A_bᵀ (k×m) · dC_b (m×n)
        let d = batched(
            lhs.data(),
            &b.lhs,
            m,
            k,
            true,
            grad.data(),
            &g_offsets,
            m,
            n,
            false,
        );
        Some(sum_to_shape(
            &Tensor::from_vec(d, full(k, n))?,
            rhs.shape(),
        )?)
    } else {
        None
    };
    Ok((gl, gr))
}

impl<T: Float> Tensor<T> {
    /// Matrix product over the last two axes, broadcasting the leading (batch) axes:
    /// `(…, m, k) · (…, k, n) → (…, m, n)`. Both operands need rank ≥ 2.
    pub fn matmul(&self, rhs: &Tensor<T>) -> Result<Self> {
        if self.rank() < 2 || rhs.rank() < 2 {
            return Err(Error::ShapeMismatch {
                op: "matmul (both operands need rank ≥ 2)",
                lhs: self.dims().to_vec(),
                rhs: rhs.dims().to_vec(),
            });
        }
        let (m, k) = (self.dims()[self.rank() - 2], self.dims()[self.rank() - 1]);
        let (k2, n) = (rhs.dims()[rhs.rank() - 2], rhs.dims()[rhs.rank() - 1]);
        if k != k2 {
            return Err(Error::ShapeMismatch {
                op: "matmul",
                lhs: self.dims().to_vec(),
                rhs: rhs.dims().to_vec(),
            });
        }
        crate::backend::on_cuda!("matmul", [self, rhs], |_dev| {
            crate::backend::cuda::blas::matmul(self, rhs)
        });
        let b = batches(self.shape(), rhs.shape())?;
        let out = batched(
            self.data(),
            &b.lhs,
            m,
            k,
            false,
            rhs.data(),
            &b.rhs,
            k,
            n,
            false,
        );
        let mut dims = b.shape;
        dims.extend([m, n]);
        Ok(Tensor::from_op(
            out,
            Shape::new(dims),
            Op::MatMul {
                lhs: self.clone(),
                rhs: rhs.clone(),
            },
        ))
    }
}
