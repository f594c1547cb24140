//! Data movement: strided copies (permute, broadcast, narrow and its backward, concat) and
//! `where`.

use super::{gpu_of, out_like};
use crate::autograd::Op;
use crate::backend::cuda::{Buffer, buf, grid, launch, on_device};
use crate::error::Result;
use crate::tensor::{Float, Shape, Tensor};

/// `dst[dst_off + Σ c·dst_strides] = src[src_off + Σ c·src_strides]` over `dims`.
pub(crate) fn strided_copy<T: Float>(
    src: &Buffer<T>,
    src_off: usize,
    dst: &mut Buffer<T>,
    dst_off: usize,
    dims: &[usize],
    src_strides: &[usize],
    dst_strides: &[usize],
) -> Result<()> {
    let n: usize = dims.iter().product();
    if n == 0 {
        return Ok(());
    }
    let gpu = src.gpu().clone();
    let meta: Vec<i64> = dims
        .iter()
        .chain(src_strides)
        .chain(dst_strides)
        .map(|&v| v as i64)
        .collect();
    let meta = gpu.upload_raw(&meta)?;
    let (so, doff, n64, rank) = (src_off as i64, dst_off as i64, n as i64, dims.len() as i32);
    launch!(
        gpu,
        T,
        "strided_copy",
        grid(n),
        src.slice(),
        &so,
        dst.slice_mut(),
        &doff,
        &n64,
        &rank,
        &meta
    )
}

pub(crate) fn permute<T: Float>(x: &Tensor<T>, perm: &[usize]) -> Result<Tensor<T>> {
    let src_strides = x.shape().strides();
    let dims: Vec<usize> = perm.iter().map(|&p| x.dims()[p]).collect();
    let read: Vec<usize> = perm.iter().map(|&p| src_strides[p]).collect();
    let shape = Shape::new(dims);
    let mut out = out_like(x, shape.numel())?;
    strided_copy(
        buf(x)?,
        0,
        &mut out,
        0,
        shape.dims(),
        &read,
        &shape.strides(),
    )?;
    let op = Op::Permute {
        input: x.clone(),
        perm: perm.to_vec(),
    };
    Ok(Tensor::from_op_cuda(out, shape, op))
}

pub(crate) fn broadcast_to<T: Float>(x: &Tensor<T>, target: Shape) -> Result<Tensor<T>> {
    let x = on_device_of(x, x)?;
    let read = x.shape().broadcast_strides(&target);
    let mut out = out_like(&x, target.numel())?;
    strided_copy(
        buf(&x)?,
        0,
        &mut out,
        0,
        target.dims(),
        &read,
        &target.strides(),
    )?;
    Ok(Tensor::from_op_cuda(
        out,
        target,
        Op::BroadcastTo { input: x },
    ))
}

fn on_device_of<T: Float>(x: &Tensor<T>, like: &Tensor<T>) -> Result<Tensor<T>> {
    match like.device() {
        crate::Device::Cuda(d) => on_device(x, d),
        crate::Device::Cpu => Ok(x.clone()),
    }
}

pub(crate) fn narrow<T: Float>(
    x: &Tensor<T>,
    d: usize,
    start: usize,
    len: usize,
) -> Result<Tensor<T>> {
    let mut dims = x.dims().to_vec();
    dims[d] = len;
    let shape = Shape::new(dims);
    let strides = x.shape().strides();
    let mut out = out_like(x, shape.numel())?;
    strided_copy(
        buf(x)?,
        start * strides[d],
        &mut out,
        0,
        shape.dims(),
        &strides,
        &shape.strides(),
    )?;
    let op = Op::Narrow {
        input: x.clone(),
        dim: d,
        start,
    };
    Ok(Tensor::from_op_cuda(out, shape, op))
}

pub(crate) fn narrow_backward<T: Float>(
    grad: &Tensor<T>,
    input_shape: &Shape,
    dim: usize,
    start: usize,
) -> Result<Tensor<T>> {
    let strides = input_shape.strides();
    let mut dx = out_like(grad, input_shape.numel())?;
    strided_copy(
        buf(grad)?,
        0,
        &mut dx,
        start * strides[dim],
        grad.dims(),
        &grad.shape().strides(),
        &strides,
    )?;
    Ok(Tensor::from_cuda(dx, input_shape.clone()))
}

pub(crate) fn concat<T: Float>(tensors: &[Tensor<T>], d: usize, dev: usize) -> Result<Tensor<T>> {
    let tensors = tensors
        .iter()
        .map(|t| on_device(t, dev))
        .collect::<Result<Vec<_>>>()?;
    let mut dims = tensors[0].dims().to_vec();
    dims[d] = tensors.iter().map(|t| t.dims()[d]).sum();
    let shape = Shape::new(dims);
    let strides = shape.strides();
    let mut out = out_like(&tensors[0], shape.numel())?;
    let mut at = 0;
    for t in &tensors {
        strided_copy(
            buf(t)?,
            0,
            &mut out,
            at * strides[d],
            t.dims(),
            &t.shape().strides(),
            &strides,
        )?;
        at += t.dims()[d];
    }
    let op = Op::Concat {
        inputs: tensors,
        dim: d,
    };
    Ok(Tensor::from_op_cuda(out, shape, op))
}

pub(crate) fn where_cond<T: Float>(
    mask: &[bool],
    on_true: &Tensor<T>,
    on_false: &Tensor<T>,
    shape: Shape,
    dev: usize,
) -> Result<Tensor<T>> {
    let a = on_device(on_true, dev)?.broadcast_to(shape.dims())?;
    let b = on_device(on_false, dev)?.broadcast_to(shape.dims())?;
    let gpu = gpu_of(&a)?;
    let m = gpu.upload_raw(&mask.iter().map(|&v| v as u8).collect::<Vec<u8>>())?;
    let n = shape.numel() as i64;
    let mut out = gpu.zeros::<T>(shape.numel())?;
    launch!(
        gpu,
        T,
        "where_fwd",
        grid(shape.numel()),
        &m,
        buf(&a)?.slice(),
        buf(&b)?.slice(),
        out.slice_mut(),
        &n
    )?;
    let op = Op::Where {
        mask: mask.to_vec(),
        on_true: a,
        on_false: b,
    };
    Ok(Tensor::from_op_cuda(out, shape, op))
}

pub(crate) fn where_backward<T: Float>(
    grad: &Tensor<T>,
    mask: &[bool],
) -> Result<(Tensor<T>, Tensor<T>)> {
    let gpu = gpu_of(grad)?;
    let m = gpu.upload_raw(&mask.iter().map(|&v| v as u8).collect::<Vec<u8>>())?;
    let n = grad.numel() as i64;
    let mut ga = gpu.zeros::<T>(grad.numel())?;
    let mut gb = gpu.zeros::<T>(grad.numel())?;
    launch!(
        gpu,
        T,
        "where_bwd",
        grid(grad.numel()),
        &m,
        buf(grad)?.slice(),
        ga.slice_mut(),
        gb.slice_mut(),
        &n
    )?;
    Ok((
        Tensor::from_cuda(ga, grad.shape().clone()),
        Tensor::from_cuda(gb, grad.shape().clone()),
    ))
}
