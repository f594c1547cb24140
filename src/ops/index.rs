//! Indexing: index-select and gather along a dimension (backward: scatter-add), and
//! `where`/`masked_fill` (backward: route the gradient by the mask).

use crate::autograd::Op;
use crate::error::{Error, Result};
use crate::tensor::{Float, Shape, Tensor};

fn check_index(op: &'static str, i: usize, size: usize) -> Result<()> {
    if i >= size {
        return Err(Error::IndexOutOfRange {
            op,
            index: i as i64,
            size,
        });
    }
    Ok(())
}

pub(crate) fn index_select_backward<T: Float>(
    grad: &Tensor<T>,
    input_shape: &Shape,
    dim: usize,
    indices: &[usize],
) -> Result<Tensor<T>> {
    let dims = input_shape.dims();
    let outer: usize = dims[..dim].iter().product();
    let inner: usize = dims[dim + 1..].iter().product();
    let mut dx = vec![T::ZERO; input_shape.numel()];
    let g = grad.data();
    for o in 0..outer {
        for (j, &i) in indices.iter().enumerate() {
            let src = &g[(o * indices.len() + j) * inner..][..inner];
            let dst = &mut dx[(o * dims[dim] + i) * inner..][..inner];
            crate::backend::cpu::simd::add_assign(dst, src);
        }
    }
    Tensor::from_vec(dx, input_shape.clone())
}

/// Flat input offset read by each output element of a gather.
pub(crate) fn gather_offsets(
    input: &Shape,
    dim: usize,
    index: &[usize],
    index_shape: &Shape,
) -> Vec<usize> {
    let in_strides = input.strides();
    let ix_strides = index_shape.strides();
    (0..index.len())
        .map(|flat| {
            let mut off = 0;
            let mut rem = flat;
            for (d, &s) in ix_strides.iter().enumerate() {
                let coord = rem / s;
                rem %= s;
                let c = if d == dim { index[flat] } else { coord };
                off += c * in_strides[d];
            }
            off
        })
        .collect()
}

pub(crate) fn gather_backward<T: Float>(
    grad: &Tensor<T>,
    input_shape: &Shape,
    dim: usize,
    index: &[usize],
) -> Result<Tensor<T>> {
    let offsets = gather_offsets(input_shape, dim, index, grad.shape());
    let mut dx = vec![T::ZERO; input_shape.numel()];
    for (&off, &g) in offsets.iter().zip(grad.data()) {
        dx[off] += g;
    }
    Tensor::from_vec(dx, input_shape.clone())
}

pub(crate) fn where_backward<T: Float>(
    grad: &Tensor<T>,
    mask: &[bool],
    on_true: &Tensor<T>,
    on_false: &Tensor<T>,
) -> Result<(Tensor<T>, Tensor<T>)> {
    let pick = |want: bool| -> Vec<T> {
        grad.data()
            .iter()
            .zip(mask)
            .map(|(&g, &m)| if m == want { g } else { T::ZERO })
            .collect()
    };
    Ok((
        Tensor::from_vec(pick(true), on_true.shape().clone())?,
        Tensor::from_vec(pick(false), on_false.shape().clone())?,
    ))
}

impl<T: Float> Tensor<T> {
    /// The slices `indices[j]` along `dim`, in that order (repeats allowed). Backward adds each
    /// output slice's gradient into the slice it came from.
    pub fn index_select(&self, dim: isize, indices: &[usize]) -> Result<Self> {
        let d = self.shape().axis("index_select", dim)?;
        let dims = self.dims();
        for &i in indices {
            check_index("index_select", i, dims[d])?;
        }
        crate::backend::on_cuda!("index_select", [self], |_dev| {
            crate::backend::cuda::ops::index_select(self, d, indices)
        });
        let outer: usize = dims[..d].iter().product();
        let inner: usize = dims[d + 1..].iter().product();
        let mut out = Vec::with_capacity(outer * indices.len() * inner);
        for o in 0..outer {
            for &i in indices {
                let at = (o * dims[d] + i) * inner;
                out.extend_from_slice(&self.data()[at..at + inner]);
            }
        }
        let mut out_dims = dims.to_vec();
        out_dims[d] = indices.len();
        Ok(Tensor::from_op(
            out,
            Shape::new(out_dims),
            Op::IndexSelect {
                input: self.clone(),
                dim: d,
                indices: indices.to_vec(),
            },
        ))
    }

    /// PyTorch's `gather`: `out[i₀…i_dim…] = x[i₀…index[i₀…i_dim…]…]`. `index` has shape
    /// `index_dims` (same rank as `x`, each dim ≤ `x`'s except along `dim`); the output has
    /// that shape. Backward scatters-adds into the gathered positions.
    pub fn gather(&self, dim: isize, index: &[usize], index_dims: &[usize]) -> Result<Self> {
        let d = self.shape().axis("gather", dim)?;
        let index_shape = Shape::new(index_dims.to_vec());
        let fits = index_dims.len() == self.rank()
            && index_dims
                .iter()
                .zip(self.dims())
                .enumerate()
                .all(|(i, (a, b))| i == d || a <= b);
        if !fits || index.len() != index_shape.numel() {
            return Err(Error::ShapeMismatch {
                op: "gather",
                lhs: self.dims().to_vec(),
                rhs: index_dims.to_vec(),
            });
        }
        for &i in index {
            check_index("gather", i, self.dims()[d])?;
        }
        crate::backend::on_cuda!("gather", [self], |_dev| {
            crate::backend::cuda::ops::gather(self, d, index, index_shape)
        });
        let offsets = gather_offsets(self.shape(), d, index, &index_shape);
        let out = offsets.iter().map(|&o| self.data()[o]).collect();
        Ok(Tensor::from_op(
            out,
            index_shape,
            Op::Gather {
                input: self.clone(),
                dim: d,
                index: index.to_vec(),
            },
        ))
    }

    /// `mask ? on_true : on_false` elementwise. `on_true` and `on_false` broadcast to a common
    /// shape, which `mask` (row-major) must fill exactly.
    pub fn where_cond(mask: &[bool], on_true: &Tensor<T>, on_false: &Tensor<T>) -> Result<Self> {
        let shape = Shape::broadcast("where", on_true.shape(), on_false.shape())?;
        if mask.len() != shape.numel() {
            return Err(Error::invalid(
                "where",
                format!(
                    "mask has {} elements but the operands broadcast to {:?}",
                    mask.len(),
                    shape
                ),
            ));
        }
        crate::backend::on_cuda!("where", [on_true, on_false], |dev| {
            crate::backend::cuda::ops::where_cond(mask, on_true, on_false, shape, dev)
        });
        let a = on_true.broadcast_to(shape.dims())?;
        let b = on_false.broadcast_to(shape.dims())?;
        let out = mask
            .iter()
            .zip(a.data().iter().zip(b.data()))
            .map(|(&m, (&x, &y))| if m { x } else { y })
            .collect();
        Ok(Tensor::from_op(
            out,
            shape,
            Op::Where {
                mask: mask.to_vec(),
                on_true: a,
                on_false: b,
            },
        ))
    }

    /// `value` where `mask` is true, `self` elsewhere; the gradient flows only where the mask is
    /// false. `mask` has this tensor's shape.
    pub fn masked_fill(&self, mask: &[bool], value: f64) -> Result<Self> {
        Self::where_cond(mask, &Tensor::scalar(T::from_f64(value)), self)
    }
}
