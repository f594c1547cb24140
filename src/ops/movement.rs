//! Ops that move data without arithmetic: reshape (and squeeze/unsqueeze/flatten), permute and
//! transpose, broadcast_to, narrow, concat and stack. Each backward moves the gradient back.

use crate::autograd::Op;
use crate::error::{Error, Result};
use crate::ops::binary::{PAR_BLOCK, PAR_MIN_ROW, row_offset};
use crate::tensor::{Float, Shape, StridedIter, Tensor};
use rayon::prelude::*;

/// Copies `data` (shaped `from`) into a row-major buffer of shape `to`, where `from` broadcasts
/// to `to`.
fn materialize_broadcast<T: Float>(data: &[T], from: &Shape, to: &Shape) -> Vec<T> {
    let strides = from.broadcast_strides(to);
    let rank = to.rank();
    let mut out = vec![T::ZERO; to.numel()];
    if out.is_empty() {
        return out;
    }
    if rank == 0 {
        out[0] = data[0];
        return out;
    }
    let row = to.dims()[rank - 1];
    let step = strides[rank - 1];
    let starts = StridedIter::new(&to.dims()[..rank - 1], &strides[..rank - 1]);
    let copy_row = |dst: &mut [T], start: usize| {
        if step == 0 {
            dst.fill(data[start]);
        } else {
            dst.copy_from_slice(&data[start..start + row]);
        }
    };
    let (outer, outer_strides) = (&to.dims()[..rank - 1], &strides[..rank - 1]);
    if row >= PAR_MIN_ROW && out.len() >= 2 * PAR_BLOCK {
        // Fixed blocks of whole rows in parallel (a copy: the same bits for any thread count).
        let rows_per_block = PAR_BLOCK.div_ceil(row);
        out.par_chunks_mut(rows_per_block * row)
            .enumerate()
            .for_each(|(b, block)| {
                for (i, dst) in block.chunks_mut(row).enumerate() {
                    copy_row(
                        dst,
                        row_offset(b * rows_per_block + i, outer, outer_strides),
                    );
                }
            });
    } else {
        for (dst, start) in out.chunks_mut(row).zip(starts) {
            copy_row(dst, start);
        }
    }
    out
}

/// Moves axis `perm[i]` of `data` (shaped `dims`) to position `i`.
fn permute_kernel<T: Float>(data: &[T], dims: &[usize], perm: &[usize]) -> (Vec<T>, Vec<usize>) {
    let src_strides = Shape::new(dims.to_vec()).strides();
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let read_strides: Vec<usize> = perm.iter().map(|&p| src_strides[p]).collect();
    let out = StridedIter::new(&out_dims, &read_strides)
        .map(|off| data[off])
        .collect();
    (out, out_dims)
}

pub(crate) fn permute_backward<T: Float>(grad: &Tensor<T>, perm: &[usize]) -> Result<Tensor<T>> {
    let mut inverse = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    grad.permute(&inverse)
}

pub(crate) fn narrow_backward<T: Float>(
    grad: &Tensor<T>,
    input_shape: &Shape,
    dim: usize,
    start: usize,
) -> Result<Tensor<T>> {
    let dims = input_shape.dims();
    let outer: usize = dims[..dim].iter().product();
    let inner: usize = dims[dim + 1..].iter().product();
    let len = grad.dims()[dim];
    let mut dx = vec![T::ZERO; input_shape.numel()];
    for o in 0..outer {
        let src = &grad.data()[o * len * inner..(o + 1) * len * inner];
        let at = (o * dims[dim] + start) * inner;
        dx[at..at + len * inner].copy_from_slice(src);
    }
    Tensor::from_vec(dx, input_shape.clone())
}

pub(crate) fn concat_backward<T: Float>(
    grad: &Tensor<T>,
    inputs: &[Tensor<T>],
    dim: usize,
) -> Result<Vec<Tensor<T>>> {
    let mut start = 0;
    inputs
        .iter()
        .map(|t| {
            let len = t.dims()[dim];
            let g = grad.narrow(dim as isize, start, len);
            start += len;
            g
        })
        .collect()
}

impl<T: Float> Tensor<T> {
    /// The same data under a new shape with the same number of elements (no copy).
    pub fn reshape(&self, dims: &[usize]) -> Result<Self> {
        let shape = Shape::new(dims.to_vec());
        if shape.numel() != self.numel() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                lhs: self.dims().to_vec(),
                rhs: dims.to_vec(),
            });
        }
        if shape == *self.shape() {
            return Ok(self.clone());
        }
        Ok(Tensor::from_op_shared(
            self,
            shape,
            Op::Reshape {
                input: self.clone(),
            },
        ))
    }
    /// Inserts a dimension of size 1 at `axis` (`0..=rank`; negative counts from the end).
    pub fn unsqueeze(&self, axis: isize) -> Result<Self> {
        let rank = self.rank() as isize;
        let at = if axis < 0 { axis + rank + 1 } else { axis };
        if at < 0 || at > rank {
            return Err(Error::BadAxis {
                op: "unsqueeze",
                axis,
                shape: self.dims().to_vec(),
            });
        }
        let mut dims = self.dims().to_vec();
        dims.insert(at as usize, 1);
        self.reshape(&dims)
    }
    /// Removes the dimension `axis`, which must have size 1.
    pub fn squeeze(&self, axis: isize) -> Result<Self> {
        let a = self.shape().axis("squeeze", axis)?;
        if self.dims()[a] != 1 {
            return Err(Error::invalid(
                "squeeze",
                format!(
                    "axis {axis} of shape {:?} has size {}, not 1",
                    self.shape(),
                    self.dims()[a]
                ),
            ));
        }
        let mut dims = self.dims().to_vec();
        dims.remove(a);
        self.reshape(&dims)
    }
    /// Collapses dimensions `from..` into one: `(N, C, H, W).flatten_from(1)` is `(N, C·H·W)`.
    pub fn flatten_from(&self, from: usize) -> Result<Self> {
        if from > self.rank() {
            return Err(Error::BadAxis {
                op: "flatten_from",
                axis: from as isize,
                shape: self.dims().to_vec(),
            });
        }
        let mut dims = self.dims()[..from].to_vec();
        dims.push(self.dims()[from..].iter().product());
        self.reshape(&dims)
    }

    /// Reorders the axes: output axis `i` is input axis `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Self> {
        let mut seen = vec![false; self.rank()];
        let valid = perm.len() == self.rank()
            && perm
                .iter()
                .all(|&p| p < seen.len() && !std::mem::replace(&mut seen[p], true));
        if !valid {
            return Err(Error::invalid(
                "permute",
                format!(
                    "{perm:?} is not a permutation of the axes of shape {:?}",
                    self.shape()
                ),
            ));
        }
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(self.clone());
        }
        crate::backend::on_cuda!("permute", [self], |_dev| {
            crate::backend::cuda::ops::permute(self, perm)
        });
        let (out, dims) = permute_kernel(self.data(), self.dims(), perm);
        Ok(Tensor::from_op(
            out,
            Shape::new(dims),
            Op::Permute {
                input: self.clone(),
                perm: perm.to_vec(),
            },
        ))
    }
    /// Swaps two axes.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Self> {
        let a = self.shape().axis("transpose", a)?;
        let b = self.shape().axis("transpose", b)?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }
    /// The transpose of a matrix (swaps the last two axes).
    pub fn t(&self) -> Result<Self> {
        if self.rank() < 2 {
            return Err(Error::BadRank {
                op: "t",
                expected: "rank ≥ 2",
                shape: self.dims().to_vec(),
            });
        }
        self.transpose(-2, -1)
    }

    /// Repeats the data along broadcast dimensions to reach `dims` (NumPy rules).
    pub fn broadcast_to(&self, dims: &[usize]) -> Result<Self> {
        let target = Shape::new(dims.to_vec());
        let check = Shape::broadcast("broadcast_to", self.shape(), &target)?;
        if check != target {
            return Err(Error::ShapeMismatch {
                op: "broadcast_to",
                lhs: self.dims().to_vec(),
                rhs: dims.to_vec(),
            });
        }
        if target == *self.shape() {
            return Ok(self.clone());
        }
        crate::backend::on_cuda!("broadcast_to", [self], |_dev| {
            crate::backend::cuda::ops::broadcast_to(self, target)
        });
        let out = materialize_broadcast(self.data(), self.shape(), &target);
        Ok(Tensor::from_op(
            out,
            target,
            Op::BroadcastTo {
                input: self.clone(),
            },
        ))
    }

    /// The slice `start .. start + len` along `dim`.
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Self> {
        let d = self.shape().axis("narrow", dim)?;
        let size = self.dims()[d];
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::invalid(
                "narrow",
                format!(
                    "range {start}..{} is outside axis {d} of shape {:?}",
                    start + len,
                    self.shape()
                ),
            ));
        }
        crate::backend::on_cuda!("narrow", [self], |_dev| {
            crate::backend::cuda::ops::narrow(self, d, start, len)
        });
        let dims = self.dims();
        let outer: usize = dims[..d].iter().product();
        let inner: usize = dims[d + 1..].iter().product();
        let mut out = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let at = (o * size + start) * inner;
            out.extend_from_slice(&self.data()[at..at + len * inner]);
        }
        let mut out_dims = dims.to_vec();
        out_dims[d] = len;
        Ok(Tensor::from_op(
            out,
            Shape::new(out_dims),
            Op::Narrow {
                input: self.clone(),
                dim: d,
                start,
            },
        ))
    }

    /// Joins tensors along `dim`; all other dimensions must agree.
    pub fn concat(tensors: &[Tensor<T>], dim: isize) -> Result<Self> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::invalid("concat", "no tensors to concatenate"))?;
        let d = first.shape().axis("concat", dim)?;
        for t in &tensors[1..] {
            let agree = t.rank() == first.rank()
                && t.dims()
                    .iter()
                    .zip(first.dims())
                    .enumerate()
                    .all(|(i, (a, b))| i == d || a == b);
            if !agree {
                return Err(Error::ShapeMismatch {
                    op: "concat",
                    lhs: first.dims().to_vec(),
                    rhs: t.dims().to_vec(),
                });
            }
        }
        crate::backend::on_cuda!("concat", tensors.iter().collect::<Vec<_>>(), |dev| {
            crate::backend::cuda::ops::concat(tensors, d, dev)
        });
        let outer: usize = first.dims()[..d].iter().product();
        let inner: usize = first.dims()[d + 1..].iter().product();
        let total: usize = tensors.iter().map(|t| t.dims()[d]).sum();
        let mut out = Vec::with_capacity(outer * total * inner);
        for o in 0..outer {
            for t in tensors {
                let block = t.dims()[d] * inner;
                out.extend_from_slice(&t.data()[o * block..(o + 1) * block]);
            }
        }
        let mut dims = first.dims().to_vec();
        dims[d] = total;
        Ok(Tensor::from_op(
            out,
            Shape::new(dims),
            Op::Concat {
                inputs: tensors.to_vec(),
                dim: d,
            },
        ))
    }

    /// Stacks equally shaped tensors along a new axis `dim` (`0..=rank`).
    pub fn stack(tensors: &[Tensor<T>], dim: isize) -> Result<Self> {
        let unsqueezed = tensors
            .iter()
            .map(|t| t.unsqueeze(dim))
            .collect::<Result<Vec<_>>>()?;
        if unsqueezed.is_empty() {
            return Err(Error::invalid("stack", "no tensors to stack"));
        }
        let rank = unsqueezed[0].rank() as isize;
        let d = if dim < 0 { dim + rank } else { dim };
        Self::concat(&unsqueezed, d)
    }
}
