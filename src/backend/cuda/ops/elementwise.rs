//! Unary functions and broadcasting binary ops, forward and backward.

use super::gpu_of;
use crate::autograd::Op;
use crate::backend::cuda::{buf, grid, launch, on_device, poisoned_result};
use crate::error::Result;
use crate::ops::binary::BinaryOp;
use crate::ops::reduce::sum_to_shape;
use crate::ops::unary::UnaryOp;
use crate::tensor::{Float, Shape, Tensor};

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
