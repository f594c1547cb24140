//! Indexing: index_select, gather (a `take` of host-computed offsets) and their backwards.

use super::gpu_of;
use crate::autograd::Op;
use crate::backend::cuda::{buf, grid, launch};
use crate::error::Result;
use crate::tensor::{Float, Shape, Tensor};

fn indices_i64(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&i| i as i64).collect()
}

/// `(outer, size, inner)` around axis `d`.
fn around(dims: &[usize], d: usize) -> (i64, i64, i64) {
    let outer: usize = dims[..d].iter().product();
    let inner: usize = dims[d + 1..].iter().product();
    (outer as i64, dims[d] as i64, inner as i64)
}

pub(crate) fn index_select<T: Float>(
    x: &Tensor<T>,
    d: usize,
    indices: &[usize],
) -> Result<Tensor<T>> {
    let mut dims = x.dims().to_vec();
    dims[d] = indices.len();
    let shape = Shape::new(dims);
    let gpu = gpu_of(x)?;
    let idx = gpu.upload_raw(&indices_i64(indices))?;
    let (outer, size, inner) = around(x.dims(), d);
    let nsel = indices.len() as i64;
    let mut out = gpu.zeros::<T>(shape.numel())?;
    launch!(
        gpu,
        T,
        "index_select_fwd",
        grid(shape.numel()),
        buf(x)?.slice(),
        &idx,
        out.slice_mut(),
        &outer,
        &nsel,
        &size,
        &inner
    )?;
    let op = Op::IndexSelect {
        input: x.clone(),
        dim: d,
        indices: indices.to_vec(),
    };
    Ok(Tensor::from_op_cuda(out, shape, op))
}

pub(crate) fn index_select_backward<T: Float>(
    grad: &Tensor<T>,
    input_shape: &Shape,
    dim: usize,
    indices: &[usize],
) -> Result<Tensor<T>> {
    let gpu = gpu_of(grad)?;
    let idx = gpu.upload_raw(&indices_i64(indices))?;
    let (outer, size, inner) = around(input_shape.dims(), dim);
    let nsel = indices.len() as i64;
    let mut dx = gpu.zeros::<T>(input_shape.numel())?;
    launch!(
        gpu,
        T,
        "index_add",
        grid(grad.numel()),
        buf(grad)?.slice(),
        &idx,
        dx.slice_mut(),
        &outer,
        &nsel,
        &size,
        &inner
    )?;
    Ok(Tensor::from_cuda(dx, input_shape.clone()))
}

/// `out[i] = x[offsets[i]]`, recorded as `op`.
fn take<T: Float>(x: &Tensor<T>, offsets: &[usize], shape: Shape, op: Op<T>) -> Result<Tensor<T>> {
    let gpu = gpu_of(x)?;
    let off = gpu.upload_raw(&indices_i64(offsets))?;
    let n = offsets.len() as i64;
    let mut out = gpu.zeros::<T>(offsets.len())?;
    launch!(
        gpu,
        T,
        "take",
        grid(offsets.len()),
        buf(x)?.slice(),
        &off,
        out.slice_mut(),
        &n
    )?;
    Ok(Tensor::from_op_cuda(out, shape, op))
}

/// `dx[offsets[i]] += grad[i]` into zeros of `input_shape`: the backward of gather, max/min
/// and max-pooling.
pub(crate) fn scatter_add<T: Float>(
    grad: &Tensor<T>,
    offsets: &[usize],
    input_shape: &Shape,
) -> Result<Tensor<T>> {
    let gpu = gpu_of(grad)?;
    let off = gpu.upload_raw(&indices_i64(offsets))?;
    let n = offsets.len() as i64;
    let mut dx = gpu.zeros::<T>(input_shape.numel())?;
    launch!(
        gpu,
        T,
        "scatter_add",
        grid(offsets.len()),
        buf(grad)?.slice(),
        &off,
        dx.slice_mut(),
        &n
    )?;
    Ok(Tensor::from_cuda(dx, input_shape.clone()))
}

/// `gather` on the GPU: the flat source offsets are computed on the host (as on the CPU).
pub(crate) fn gather<T: Float>(
    x: &Tensor<T>,
    d: usize,
    index: &[usize],
    index_shape: Shape,
) -> Result<Tensor<T>> {
    let offsets = crate::ops::index::gather_offsets(x.shape(), d, index, &index_shape);
    let op = Op::Gather {
        input: x.clone(),
        dim: d,
        index: index.to_vec(),
    };
    take(x, &offsets, index_shape, op)
}
