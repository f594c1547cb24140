//! Matrix multiplication through `matrixmultiply` (`sgemm`/`dgemm`), which picks its
//! AVX-512, AVX2+FMA or portable micro-kernel at run time.
//!
//! Threads: `matrixmultiply`'s own threading is off (it has its own pool and would fight
//! rayon's); instead the rows of C are split into one block per rayon thread. Each element of C
//! is accumulated by the same micro-kernel over the same k-blocks whichever row block holds it,
//! so the split does not change any bit of the result (tested in `tests/determinism.rs`).

use crate::backend::cpu::simd;
use crate::error::Result;
use crate::tensor::{DType, Float, Tensor};
use rayon::prelude::*;

/// A row-major matrix operand, possibly read transposed.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    /// Rows and columns of the matrix as used in the product (after transposition).
    pub rows: usize,
    pub cols: usize,
    /// True when `data` holds the transpose (a `cols × rows` row-major matrix).
    pub transposed: bool,
}

impl<'a, T> MatRef<'a, T> {
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            transposed: false,
        }
    }
    /// The transpose of this operand, without copying.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            transposed: !self.transposed,
        }
    }
    /// (row stride, column stride) in elements.
    fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (1, self.rows as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// Minimum rows of C per parallel block: below it, splitting costs more than it saves.
const MIN_ROWS_PER_BLOCK: usize = 32;
/// Minimum multiply-adds before a product is split across threads.
const MIN_PARALLEL_WORK: usize = 1 << 18;

/// `C = A·B` (or `C += A·B` when `accumulate`), C row-major `m × n`.
pub fn gemm<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T], accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && c.len() == m * n && a.data.len() == m * k && b.data.len() == k * n,
        "gemm: operand sizes do not agree (kernel callers check shapes first)"
    );
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    if threads > 1 && m * n * k >= MIN_PARALLEL_WORK && m >= 2 * MIN_ROWS_PER_BLOCK {
        let rows_per_block = m.div_ceil(threads).max(MIN_ROWS_PER_BLOCK);
        c.par_chunks_mut(rows_per_block * n)
            .enumerate()
            .for_each(|(block, c_block)| {
                let row0 = block * rows_per_block;
                let rows = c_block.len() / n;
                gemm_rows(a, row0, rows, b, c_block, accumulate);
            });
    } else {
        gemm_rows(a, 0, m, b, c, accumulate);
    }
}

/// Rows `row0 .. row0 + rows` of `A·B` into `c` (which holds exactly those rows).
fn gemm_rows<T: Float>(
    a: MatRef<'_, T>,
    row0: usize,
    rows: usize,
    b: MatRef<'_, T>,
    c: &mut [T],
    accumulate: bool,
) {
    let k = a.cols;
    let n = b.cols;
    let (rsa, csa) = a.strides();
    let (rsb, csb) = b.strides();
    let beta = if accumulate { T::ONE } else { T::ZERO };
    if k == 0 {
        if !accumulate {
            c.fill(T::ZERO);
        }
        return;
    }
    let a_offset = row0 as isize * rsa;
    // SAFETY: `a` holds m×k elements addressed by (rsa, csa); rows row0..row0+rows lie inside
    // it, so every address `a_offset + i·rsa + p·csa` (i < rows, p < k) is in bounds. `b` holds
    // k×n elements addressed by (rsb, csb). `c` holds exactly rows×n elements with strides (n, 1)
    // and is a distinct &mut slice, so it aliases neither input. For f32/f64 the casts are
    // identities (checked by `T::DTYPE`).
    unsafe {
        let a_ptr = a.data.as_ptr().offset(a_offset);
        let b_ptr = b.data.as_ptr();
        let c_ptr = c.as_mut_ptr();
        match T::DTYPE {
            DType::F32 => matrixmultiply::sgemm(
                rows,
                k,
                n,
                1.0,
                a_ptr.cast::<f32>(),
                rsa,
                csa,
                b_ptr.cast::<f32>(),
                rsb,
                csb,
                beta.to_f64() as f32,
                c_ptr.cast::<f32>(),
                n as isize,
                1,
            ),
            DType::F64 => matrixmultiply::dgemm(
                rows,
                k,
                n,
                1.0,
                a_ptr.cast::<f64>(),
                rsa,
                csa,
                b_ptr.cast::<f64>(),
                rsb,
                csb,
                beta.to_f64(),
                c_ptr.cast::<f64>(),
                n as isize,
                1,
            ),
        }
    }
}

/// Gradients of `Tensor::linear` (`nn::linear`) for `(input, weight, bias)`: `dx = dy·W`, `dW = dyᵀ·x`,
/// `db = Σ_rows dy` (rows added in order: the same bits for any thread count).
pub(crate) fn linear_backward<T: Float>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    grad: &Tensor<T>,
    need: [bool; 3],
) -> Result<[Option<Tensor<T>>; 3]> {
    let (n, k) = (weight.dims()[0], weight.dims()[1]);
    let m: usize = input.dims()[..input.rank() - 1].iter().product();
    let dy = MatRef::new(grad.data(), m, n);
    let dx = need[0]
        .then(|| {
            let mut d = vec![T::ZERO; m * k];
            gemm(dy, MatRef::new(weight.data(), n, k), &mut d, false);
            Tensor::from_vec(d, input.shape().clone())
        })
        .transpose()?;
    let dw = need[1]
        .then(|| {
            let mut d = vec![T::ZERO; n * k];
            gemm(dy.t(), MatRef::new(input.data(), m, k), &mut d, false);
            Tensor::from_vec(d, [n, k])
        })
        .transpose()?;
    let db = need[2]
        .then(|| {
            let mut d = vec![T::ZERO; n];
            for row in grad.data().chunks_exact(n.max(1)) {
                simd::add_assign(&mut d, row);
            }
            Tensor::from_vec(d, [n])
        })
        .transpose()?;
    Ok([dx, dw, db])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn transposed_operands_match_naive() {
        let (m, k, n) = (5, 3, 4);
        let a: Vec<f64> = (0..m * k).map(|i| i as f64 * 0.5 - 2.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| 1.0 - i as f64 * 0.25).collect();
        let expected = naive(&a, &b, m, k, n);
        let mut c = vec![0.0; m * n];
        gemm(MatRef::new(&a, m, k), MatRef::new(&b, k, n), &mut c, false);
        assert_eq!(c, expected);
        // Read A through its transpose stored explicitly.
        let mut at = vec![0.0; m * k];
        for i in 0..m {
            for p in 0..k {
                at[p * m + i] = a[i * k + p];
            }
        }
        let mut c2 = vec![1.0; m * n];
        gemm(
            MatRef::new(&at, k, m).t(),
            MatRef::new(&b, k, n),
            &mut c2,
            true,
        );
        let plus_one: Vec<f64> = expected.iter().map(|v| v + 1.0).collect();
        assert_eq!(c2, plus_one);
    }
}
