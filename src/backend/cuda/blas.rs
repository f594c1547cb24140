//! Matrix products on cuBLAS: `matmul` (batched, broadcast batch dimensions) and the fused
//! `linear`, forward and backward.
//!
//! cuBLAS is column-major and our matrices are row-major. A row-major `(r, c)` matrix is the
//! column-major `(c, r)` matrix of its transpose, so `C = op(A)·op(B)` is computed as
//! `Cᵀ = op(B)ᵀ·op(A)ᵀ`: cuBLAS's first operand is B, its second A, and no copy is made.

use super::ops::{out_like, strided_copy, sum_plan};
use super::{Buffer, Gpu, buf, cuda_err};
use crate::autograd::{GradPair, Op};
use crate::error::{Error, Result};
use crate::ops::reduce::{Plan, sum_to_shape};
use crate::tensor::{Float, Shape, StridedIter, Tensor};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{GemmConfig, StridedBatchedConfig};
use cudarc::driver::CudaSlice;

/// One operand of a product: a buffer, the element offset of each batch item's matrix, its
/// stored `(rows, cols)`, and whether it is read transposed.
struct Operand<'a, T> {
    data: &'a CudaSlice<T>,
    offsets: &'a [usize],
    rows: usize,
    cols: usize,
    t: bool,
}

impl<T> Operand<'_, T> {
    /// Rows and columns as used in the product.
    fn used(&self) -> (usize, usize) {
        if self.t {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }
    /// The constant step between batch items, when there is one (0 for a broadcast operand).
    fn stride(&self) -> Option<usize> {
        match self.offsets {
            [] | [_] => Some(0),
            [a, b, ..] => {
                let s = b.wrapping_sub(*a);
                self.offsets
                    .windows(2)
                    .all(|w| w[1].wrapping_sub(w[0]) == s)
                    .then_some(s)
            }
        }
    }
}

fn op_of(t: bool) -> cublasOperation_t {
    if t {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

fn int(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v.max(1)).map_err(|_| Error::Cuda {
        op: "cublas",
        message: format!("{what} {v} exceeds cuBLAS's 32-bit sizes"),
    })
}

/// `C_b = op(A_b)·op(B_b)` (+ `beta·C_b`) for every batch item b, C row-major `(m, n)` with
/// leading dimension `ldc` (≥ n), item b at `c_off + b·c_stride`.
fn gemm<T: Float>(
    gpu: &Gpu,
    a: &Operand<'_, T>,
    b: &Operand<'_, T>,
    c: (&mut CudaSlice<T>, usize, usize),
    ldc: usize,
    beta: T,
) -> Result<()> {
    let (c, c_off, c_stride) = c;
    let (m, k) = a.used();
    let n = b.used().1;
    let batch = a.offsets.len();
    if m == 0 || n == 0 || batch == 0 {
        return Ok(());
    }
    let gemm_cfg = GemmConfig {
        transa: op_of(b.t),
        transb: op_of(a.t),
        m: int(n, "n")?,
        n: int(m, "m")?,
        k: int(k, "k")?,
        alpha: T::ONE,
        lda: int(b.cols, "ldb")?,
        ldb: int(a.cols, "lda")?,
        beta,
        ldc: int(ldc, "ldc")?,
    };
    let (a_len, b_len) = (a.rows * a.cols, b.rows * b.cols);
    let blas = gpu.blas();
    let mut one =
        |a_off: usize, b_off: usize, c_off: usize, count: usize, strides: (usize, usize)| {
            let cfg = StridedBatchedConfig {
                gemm: gemm_cfg,
                batch_size: count as i32,
                stride_a: strides.1 as i64,
                stride_b: strides.0 as i64,
                stride_c: c_stride as i64,
            };
            let a_end = a_off + strides.0 * (count - 1) + a_len;
            let b_end = b_off + strides.1 * (count - 1) + b_len;
            let c_end = c_off + c_stride * (count - 1) + (m - 1) * ldc + n;
            let av = a.data.slice(a_off..a_end.max(a_off + 1).min(a.data.len()));
            let bv = b.data.slice(b_off..b_end.max(b_off + 1).min(b.data.len()));
            let mut cv = c.slice_mut(c_off..c_end);
            // SAFETY: the views hold every element the configuration addresses: item i of B (the
            // first cuBLAS operand) spans b_off + i·stride_b .. + b_len (b_len = ldb·its other
            // dimension for the stored row-major matrix), likewise A and C, and the views were cut
            // to those ends above (a k = 0 product reads nothing).
            unsafe { T::gemm_batched(&blas, cfg, &bv, &av, &mut cv) }
                .map_err(cuda_err("cublas gemm"))
        };
    match (a.stride(), b.stride()) {
        (Some(sa), Some(sb)) => one(a.offsets[0], b.offsets[0], c_off, batch, (sa, sb)),
        _ => {
            for i in 0..batch {
                one(a.offsets[i], b.offsets[i], c_off + i * c_stride, 1, (0, 0))?;
            }
            Ok(())
        }
    }
}

/// The broadcast batch shape of two `(…, r, c)` operands and each item's matrix offsets.
fn batches(lhs: &Shape, rhs: &Shape) -> Result<(Vec<usize>, Vec<usize>, Vec<usize>)> {
    let (lr, rr) = (lhs.rank(), rhs.rank());
    let lb = Shape::new(lhs.dims()[..lr - 2].to_vec());
    let rb = Shape::new(rhs.dims()[..rr - 2].to_vec());
    let batch = Shape::broadcast("matmul", &lb, &rb)?;
    let l_mat = lhs.dims()[lr - 2] * lhs.dims()[lr - 1];
    let r_mat = rhs.dims()[rr - 2] * rhs.dims()[rr - 1];
    let offsets = |s: &Shape, mat: usize| -> Vec<usize> {
        StridedIter::new(batch.dims(), &s.broadcast_strides(&batch))
            .map(|o| o * mat)
            .collect()
    };
    Ok((batch.to_vec(), offsets(&lb, l_mat), offsets(&rb, r_mat)))
}

pub(crate) fn matmul<T: Float>(lhs: &Tensor<T>, rhs: &Tensor<T>) -> Result<Tensor<T>> {
    let (m, k) = (lhs.dims()[lhs.rank() - 2], lhs.dims()[lhs.rank() - 1]);
    let n = rhs.dims()[rhs.rank() - 1];
    let (mut dims, lo, ro) = batches(lhs.shape(), rhs.shape())?;
    let gpu = buf(lhs)?.gpu().clone();
    let mut out = gpu.zeros::<T>(lo.len() * m * n)?;
    let a = Operand {
        data: buf(lhs)?.slice(),
        offsets: &lo,
        rows: m,
        cols: k,
        t: false,
    };
    let b = Operand {
        data: buf(rhs)?.slice(),
        offsets: &ro,
        rows: k,
        cols: n,
        t: false,
    };
    gemm(&gpu, &a, &b, (out.slice_mut(), 0, m * n), n, T::ZERO)?; // (…, m, k)·(…, k, n) → (…, m, n)
    dims.extend([m, n]);
    let op = Op::MatMul {
        lhs: lhs.clone(),
        rhs: rhs.clone(),
    };
    Ok(Tensor::from_op_cuda(out, Shape::new(dims), op))
}

pub(crate) fn matmul_backward<T: Float>(
    lhs: &Tensor<T>,
    rhs: &Tensor<T>,
    grad: &Tensor<T>,
    need: (bool, bool),
) -> Result<GradPair<T>> {
    let (m, k) = (lhs.dims()[lhs.rank() - 2], lhs.dims()[lhs.rank() - 1]);
    let n = rhs.dims()[rhs.rank() - 1];
    let (batch, lo, ro) = batches(lhs.shape(), rhs.shape())?;
    let go: Vec<usize> = (0..lo.len()).map(|i| i * m * n).collect();
    let gpu = buf(lhs)?.gpu().clone();
    let full = |rows, cols| Shape::new([batch.clone(), vec![rows, cols]].concat());
    let g = Operand {
        data: buf(grad)?.slice(),
        offsets: &go,
        rows: m,
        cols: n,
        t: false,
    };
    let gl = if need.0 {
        // dA_b = dC_b (m×n) · B_bᵀ (n×k)
        let mut d = gpu.zeros::<T>(lo.len() * m * k)?;
        let b = Operand {
            data: buf(rhs)?.slice(),
            offsets: &ro,
            rows: k,
            cols: n,
            t: true,
        };
        gemm(&gpu, &g, &b, (d.slice_mut(), 0, m * k), k, T::ZERO)?;
        Some(sum_to_shape(
            &Tensor::from_cuda(d, full(m, k)),
            lhs.shape(),
        )?)
    } else {
        None
    };
    let gr = if need.1 {
        // dB_b = A_bᵀ (k×m) · dC_b (m×n)
        let mut d = gpu.zeros::<T>(lo.len() * k * n)?;
        let a = Operand {
            data: buf(lhs)?.slice(),
            offsets: &lo,
            rows: m,
            cols: k,
            t: true,
        };
        gemm(&gpu, &a, &g, (d.slice_mut(), 0, k * n), n, T::ZERO)?;
        Some(sum_to_shape(
            &Tensor::from_cuda(d, full(k, n)),
            rhs.shape(),
        )?)
    } else {
        None
    };
    Ok((gl, gr))
}

/// `C (rows, cols) = op(A)·op(B) + beta·C` for single matrices (the other modules' GEMM).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_one<T: Float>(
    gpu: &Gpu,
    a: (&CudaSlice<T>, usize, (usize, usize), bool),
    b: (&CudaSlice<T>, usize, (usize, usize), bool),
    c: &mut CudaSlice<T>,
    beta: T,
) -> Result<()> {
    let (ao, bo) = ([a.1], [b.1]);
    let a = Operand {
        data: a.0,
        offsets: &ao,
        rows: a.2.0,
        cols: a.2.1,
        t: a.3,
    };
    let b = Operand {
        data: b.0,
        offsets: &bo,
        rows: b.2.0,
        cols: b.2.1,
        t: b.3,
    };
    let n = b.used().1;
    gemm(gpu, &a, &b, (c, 0, 0), n, beta)
}

/// `C_i = op(A_i)·op(B_i) + beta·C_i` for `count` items at constant strides (images of a
/// convolution): each operand is (buffer, first offset, stride, stored (rows, cols),
/// transposed); C is (buffer, first offset, stride), rows of length n contiguous.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_strided<T: Float>(
    gpu: &Gpu,
    count: usize,
    a: (&CudaSlice<T>, usize, usize, (usize, usize), bool),
    b: (&CudaSlice<T>, usize, usize, (usize, usize), bool),
    c: (&mut CudaSlice<T>, usize, usize),
    beta: T,
) -> Result<()> {
    let ao: Vec<usize> = (0..count).map(|i| a.1 + i * a.2).collect();
    let bo: Vec<usize> = (0..count).map(|i| b.1 + i * b.2).collect();
    let a = Operand {
        data: a.0,
        offsets: &ao,
        rows: a.3.0,
        cols: a.3.1,
        t: a.4,
    };
    let b = Operand {
        data: b.0,
        offsets: &bo,
        rows: b.3.0,
        cols: b.3.1,
        t: b.4,
    };
    let n = b.used().1;
    gemm(gpu, &a, &b, c, n, beta)
}

pub(crate) fn linear<T: Float>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
) -> Result<Tensor<T>> {
    let (n, k) = (weight.dims()[0], weight.dims()[1]);
    let m: usize = x.dims()[..x.rank() - 1].iter().product();
    let mut out = out_like(x, m * n)?;
    if let Some(b) = bias {
        // Every row starts as the bias, so the GEMM adds onto it (beta = 1).
        strided_copy(buf(b)?, 0, &mut out, 0, &[m, n], &[0, 1], &[n, 1])?;
    }
    let gpu = buf(x)?.gpu().clone();
    // (m, k) · (n, k)ᵀ → (m, n)
    gemm_one(
        &gpu,
        (buf(x)?.slice(), 0, (m, k), false),
        (buf(weight)?.slice(), 0, (n, k), true),
        out.slice_mut(),
        T::ONE,
    )?;
    let mut dims = x.dims().to_vec();
    *dims.last_mut().expect("rank ≥ 2") = n;
    let op = Op::Linear {
        input: x.clone(),
        weight: weight.clone(),
        bias: bias.cloned(),
    };
    Ok(Tensor::from_op_cuda(out, Shape::new(dims), op))
}

/// `dx = dy·W`, `dW = dyᵀ·x`, `db = Σ_rows dy`.
pub(crate) fn linear_backward<T: Float>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    grad: &Tensor<T>,
    need: [bool; 3],
) -> Result<[Option<Tensor<T>>; 3]> {
    let (n, k) = (weight.dims()[0], weight.dims()[1]);
    let m: usize = x.dims()[..x.rank() - 1].iter().product();
    let gpu = buf(x)?.gpu().clone();
    let dy = buf(grad)?.slice();
    let mut result: [Option<Tensor<T>>; 3] = [None, None, None];
    if need[0] {
        let mut d: Buffer<T> = gpu.zeros(m * k)?;
        gemm_one(
            &gpu,
            (dy, 0, (m, n), false),
            (buf(weight)?.slice(), 0, (n, k), false),
            d.slice_mut(),
            T::ZERO,
        )?;
        result[0] = Some(Tensor::from_cuda(d, x.shape().clone()));
    }
    if need[1] {
        let mut d: Buffer<T> = gpu.zeros(n * k)?;
        gemm_one(
            &gpu,
            (dy, 0, (m, n), true),
            (buf(x)?.slice(), 0, (m, k), false),
            d.slice_mut(),
            T::ZERO,
        )?;
        result[1] = Some(Tensor::from_cuda(d, Shape::new([n, k])));
    }
    if need[2] {
        let plan = Plan {
            outer: 1,
            reduced: m,
            inner: n,
        };
        result[2] = Some(Tensor::from_cuda(sum_plan(grad, &plan)?, Shape::new([n])));
    }
    Ok(result)
}
