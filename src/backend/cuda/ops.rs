//! GPU versions of the elementwise, movement, indexing and reduction ops. Each takes the same
//! inputs as its CPU twin in `src/ops/`, after that twin has validated them, and records the
//! same autograd op, so the backward table applies unchanged.

use super::{Buffer, Gpu, buf, cuda_err, grid, launch, on_device, per_row, poisoned_result};
use crate::autograd::Op;
use crate::error::Result;
use crate::ops::binary::BinaryOp;
use crate::ops::reduce::{Plan, sum_to_shape, unpermute_offsets};
use crate::ops::unary::UnaryOp;
use crate::tensor::{Float, Shape, Tensor};
use std::sync::Arc;

/// The kernel's op code and parameters of a unary function (`unary_value` in elementwise.cu).
fn unary_code<T: Float>(kind: UnaryOp<T>) -> (i32, T, T) {
    let z = T::ZERO;
    match kind {
        UnaryOp::Neg => (0, z, z),
        UnaryOp::Exp => (1, z, z),
        UnaryOp::Log => (2, z, z),
        UnaryOp::Sqrt => (3, z, z),
        UnaryOp::Abs => (4, z, z),
        UnaryOp::Relu => (5, z, z),
        UnaryOp::LeakyRelu(s) => (6, s, z),
        UnaryOp::Gelu => (7, z, z),
        UnaryOp::Tanh => (8, z, z),
        UnaryOp::Sigmoid => (9, z, z),
        UnaryOp::Softplus => (10, z, z),
        UnaryOp::PowScalar(e) => (11, e, z),
        UnaryOp::AddScalar(c) => (12, c, z),
        UnaryOp::MulScalar(c) => (13, c, z),
        UnaryOp::Clamp(lo, hi) => (14, lo, hi),
    }
}

fn binary_code(kind: BinaryOp) -> i32 {
    match kind {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Maximum => 4,
        BinaryOp::Minimum => 5,
        BinaryOp::Pow => 6,
    }
}

/// A fresh output buffer on `x`'s GPU.
pub(crate) fn out_like<T: Float>(x: &Tensor<T>, len: usize) -> Result<Buffer<T>> {
    buf(x)?.gpu().zeros(len)
}

fn gpu_of<T: Float>(x: &Tensor<T>) -> Result<Arc<Gpu>> {
    Ok(buf(x)?.gpu().clone())
}

/// `f(x)`; unary ops return no `Result`, so a failure poisons the device (see
/// [`poisoned_result`]).
pub(crate) fn unary<T: Float>(kind: UnaryOp<T>, x: &Tensor<T>) -> Tensor<T> {
    let run = || -> Result<Tensor<T>> {
        let gpu = gpu_of(x)?;
        let (code, a, b) = unary_code(kind);
        let n = x.numel() as i64;
        let mut out = gpu.zeros::<T>(x.numel())?;
        launch!(
            gpu,
            T,
            "unary_fwd",
            grid(x.numel()),
            &code,
            &a,
            &b,
            buf(x)?.slice(),
            out.slice_mut(),
            &n
        )?;
        let op = Op::Unary {
            kind,
            input: x.clone(),
        };
        Ok(Tensor::from_op_cuda(out, x.shape().clone(), op))
    };
    run().unwrap_or_else(|e| poisoned_result(x.cuda_buffer().map(|b| &**b.gpu()), e, x.shape()))
}

pub(crate) fn unary_backward<T: Float>(
    kind: UnaryOp<T>,
    input: &Tensor<T>,
    out: &Tensor<T>,
    grad: &Tensor<T>,
) -> Result<Tensor<T>> {
    let gpu = gpu_of(input)?;
    let (code, a, b) = unary_code(kind);
    let n = input.numel() as i64;
    let mut dx = gpu.zeros::<T>(input.numel())?;
    let (x, y, g) = (buf(input)?, buf(out)?, buf(grad)?);
    launch!(
        gpu,
        T,
        "unary_bwd",
        grid(input.numel()),
        &code,
        &a,
        &b,
        x.slice(),
        y.slice(),
        g.slice(),
        dx.slice_mut(),
        &n
    )?;
    Ok(Tensor::from_cuda(dx, input.shape().clone()))
}

/// `[dims | lhs strides | rhs strides]` of a broadcast, as the kernels read it.
fn broadcast_meta(shape: &Shape, lhs: &Shape, rhs: &Shape) -> Vec<i64> {
    let mut meta: Vec<i64> = shape.dims().iter().map(|&d| d as i64).collect();
    meta.extend(lhs.broadcast_strides(shape).iter().map(|&s| s as i64));
    meta.extend(rhs.broadcast_strides(shape).iter().map(|&s| s as i64));
    meta
}

pub(crate) fn binary<T: Float>(
    kind: BinaryOp,
    lhs: &Tensor<T>,
    rhs: &Tensor<T>,
    dev: usize,
) -> Result<Tensor<T>> {
    let (lhs, rhs) = (on_device(lhs, dev)?, on_device(rhs, dev)?);
    let shape = Shape::broadcast(kind.name(), lhs.shape(), rhs.shape())?;
    let gpu = gpu_of(&lhs)?;
    let meta = gpu.upload_raw(&broadcast_meta(&shape, lhs.shape(), rhs.shape()))?;
    let (code, n, rank) = (binary_code(kind), shape.numel() as i64, shape.rank() as i32);
    let mut out = gpu.zeros::<T>(shape.numel())?;
    launch!(
        gpu,
        T,
        "binary_fwd",
        grid(shape.numel()),
        &code,
        buf(&lhs)?.slice(),
        buf(&rhs)?.slice(),
        out.slice_mut(),
        &n,
        &rank,
        &meta
    )?;
    let op = Op::Binary { kind, lhs, rhs };
    Ok(Tensor::from_op_cuda(out, shape, op))
}

/// `sum_to_shape(grad · ∂f/∂side)` for one operand (side 0: lhs, 1: rhs).
fn partial<T: Float>(
    kind: BinaryOp,
    side: i32,
    lhs: &Tensor<T>,
    rhs: &Tensor<T>,
    grad: &Tensor<T>,
) -> Result<Tensor<T>> {
    let shape = grad.shape().clone();
    let gpu = gpu_of(grad)?;
    let meta = gpu.upload_raw(&broadcast_meta(&shape, lhs.shape(), rhs.shape()))?;
    let (code, n, rank) = (binary_code(kind), shape.numel() as i64, shape.rank() as i32);
    let mut out = gpu.zeros::<T>(shape.numel())?;
    let (l, r, g) = (buf(lhs)?, buf(rhs)?, buf(grad)?);
    launch!(
        gpu,
        T,
        "binary_partial",
        grid(shape.numel()),
        &code,
        &side,
        l.slice(),
        r.slice(),
        g.slice(),
        out.slice_mut(),
        &n,
        &rank,
        &meta
    )?;
    let target = if side == 0 { lhs.shape() } else { rhs.shape() };
    sum_to_shape(&Tensor::from_cuda(out, shape), target)
}

pub(crate) fn binary_backward<T: Float>(
    kind: BinaryOp,
    lhs: &Tensor<T>,
    rhs: &Tensor<T>,
    grad: &Tensor<T>,
    need: (bool, bool),
) -> Result<crate::autograd::GradPair<T>> {
    let gl = if !need.0 {
        None
    } else if matches!(kind, BinaryOp::Add | BinaryOp::Sub) {
        Some(sum_to_shape(grad, lhs.shape())?)
    } else {
        Some(partial(kind, 0, lhs, rhs, grad)?)
    };
    let gr = if !need.1 {
        None
    } else if kind == BinaryOp::Add {
        Some(sum_to_shape(grad, rhs.shape())?)
    } else {
        Some(partial(kind, 1, lhs, rhs, grad)?)
    };
    Ok((gl, gr))
}

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
pub(crate) fn take<T: Float>(
    x: &Tensor<T>,
    offsets: &[usize],
    shape: Shape,
    op: Op<T>,
) -> Result<Tensor<T>> {
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

/// Sums of the plan's middle axis of `src`, as a buffer of `outer·inner` values.
pub(crate) fn sum_plan<T: Float>(src: &Tensor<T>, plan: &Plan) -> Result<Buffer<T>> {
    let gpu = gpu_of(src)?;
    let (outer, reduced, inner) = (plan.outer as i64, plan.reduced as i64, plan.inner as i64);
    let mut out = gpu.zeros::<T>(plan.outer * plan.inner)?;
    if plan.inner == 1 {
        launch!(
            gpu,
            T,
            "sum_rows",
            per_row(plan.outer),
            buf(src)?.slice(),
            out.slice_mut(),
            &outer,
            &reduced
        )?;
    } else {
        launch!(
            gpu,
            T,
            "sum_inner",
            grid(plan.outer * plan.inner),
            buf(src)?.slice(),
            out.slice_mut(),
            &outer,
            &reduced,
            &inner
        )?;
    }
    Ok(out)
}

/// Max or min over the plan's middle axis of `src`: values on the GPU, flat offsets into
/// `src` on the host (the autograd op keeps them there).
pub(crate) fn extremum_plan<T: Float>(
    src: &Tensor<T>,
    plan: &Plan,
    want_max: bool,
) -> Result<(Buffer<T>, Vec<usize>)> {
    let gpu = gpu_of(src)?;
    let (outer, reduced, inner) = (plan.outer as i64, plan.reduced as i64, plan.inner as i64);
    let n = plan.outer * plan.inner;
    let mut vals = gpu.zeros::<T>(n)?;
    let mut args = gpu
        .stream
        .alloc_zeros::<i64>(n.max(1))
        .map_err(cuda_err("cuda alloc"))?;
    let want = want_max as i32;
    launch!(
        gpu,
        T,
        "extremum",
        grid(n),
        buf(src)?.slice(),
        vals.slice_mut(),
        &mut args,
        &outer,
        &reduced,
        &inner,
        &want
    )?;
    let args = gpu
        .stream
        .clone_dtoh(&args)
        .map_err(cuda_err("cuda download"))?;
    Ok((vals, args[..n].iter().map(|&a| a as usize).collect()))
}

/// Non-finite values replaced by 0 (the row maxima `shift_by_max` subtracts).
pub(crate) fn finite_or_zero<T: Float>(x: &Tensor<T>) -> Result<Tensor<T>> {
    let gpu = gpu_of(x)?;
    let n = x.numel() as i64;
    let mut out = gpu.zeros::<T>(x.numel())?;
    launch!(
        gpu,
        T,
        "finite_or_zero",
        grid(x.numel()),
        buf(x)?.slice(),
        out.slice_mut(),
        &n
    )?;
    Ok(Tensor::from_cuda(out, x.shape().clone()))
}

/// `sum` over the plan's axes (of the permuted copy when the axes were not contiguous).
pub(crate) fn sum<T: Float>(
    x: &Tensor<T>,
    permuted: Option<&Tensor<T>>,
    axes: Vec<usize>,
    plan: &Plan,
    out_shape: Shape,
) -> Result<Tensor<T>> {
    let out = sum_plan(permuted.unwrap_or(x), plan)?;
    let op = Op::Sum {
        input: x.clone(),
        axes,
    };
    Ok(Tensor::from_op_cuda(out, out_shape, op))
}

/// `max`/`min` over the plan's axes of `src` (`x` or its permuted copy); the recorded offsets
/// are into `x`.
pub(crate) fn extremum<T: Float>(
    x: &Tensor<T>,
    src: &Tensor<T>,
    axes: &[usize],
    plan: &Plan,
    out_shape: Shape,
    want_max: bool,
) -> Result<Tensor<T>> {
    let (vals, mut arg) = extremum_plan(src, plan, want_max)?;
    if src.id() != x.id() {
        unpermute_offsets(&mut arg, x, axes);
    }
    let op = Op::Extremum {
        input: x.clone(),
        arg,
        largest: want_max,
    };
    Ok(Tensor::from_op_cuda(vals, out_shape, op))
}
