//! Max and average pooling over square windows (the geometry of `src/ops/pool.rs`).

use crate::autograd::Op;
use crate::backend::cuda::{buf, cuda_err, grid, launch, records_gradient};
use crate::error::Result;
use crate::ops::pool::PoolGeometry;
use crate::tensor::{Float, Shape, Tensor};

/// `[planes, H, W, k, stride, pad, OH, OW]` of a pooling.
fn pool_args(x_dims: &[usize], g: &PoolGeometry) -> [i64; 8] {
    [
        x_dims[0] * x_dims[1],
        g.in_hw.0,
        g.in_hw.1,
        g.kernel.0,
        g.stride.0,
        g.padding.0,
        g.out_hw.0,
        g.out_hw.1,
    ]
    .map(|v| v as i64)
}

/// Max pooling; the winners' offsets come back to the host, where the autograd op keeps them
/// (one device-to-host copy per call that records a gradient; none without).
pub(crate) fn max_pool2d<T: Float>(x: &Tensor<T>, g: &PoolGeometry) -> Result<Tensor<T>> {
    let a = pool_args(x.dims(), g);
    let n = (a[0] * a[6] * a[7]) as usize;
    let gpu = buf(x)?.gpu().clone();
    let mut y = gpu.zeros::<T>(n)?;
    let mut arg = gpu
        .stream
        .alloc_zeros::<i64>(n.max(1))
        .map_err(cuda_err("cuda alloc"))?;
    launch!(
        gpu,
        T,
        "max_pool_fwd",
        grid(n),
        buf(x)?.slice(),
        y.slice_mut(),
        &mut arg,
        &a[0],
        &a[1],
        &a[2],
        &a[3],
        &a[4],
        &a[5],
        &a[6],
        &a[7]
    )?;
    // The offsets come to the host only for a gradient (a device sync); without one the op
    // is not recorded and they stay behind.
    let arg = if records_gradient(x) {
        let arg = gpu
            .stream
            .clone_dtoh(&arg)
            .map_err(cuda_err("cuda download"))?;
        arg[..n].iter().map(|&v| v as usize).collect()
    } else {
        Vec::new()
    };
    let shape = Shape::new([x.dims()[0], x.dims()[1], g.out_hw.0, g.out_hw.1]);
    let op = Op::MaxPool2d {
        input: x.clone(),
        arg,
    };
    Ok(Tensor::from_op_cuda(y, shape, op))
}

pub(crate) fn avg_pool2d<T: Float>(x: &Tensor<T>, g: &PoolGeometry) -> Result<Tensor<T>> {
    let a = pool_args(x.dims(), g);
    let n = (a[0] * a[6] * a[7]) as usize;
    let gpu = buf(x)?.gpu().clone();
    let mut y = gpu.zeros::<T>(n)?;
    launch!(
        gpu,
        T,
        "avg_pool_fwd",
        grid(n),
        buf(x)?.slice(),
        y.slice_mut(),
        &a[0],
        &a[1],
        &a[2],
        &a[3],
        &a[4],
        &a[5],
        &a[6],
        &a[7]
    )?;
    let shape = Shape::new([x.dims()[0], x.dims()[1], g.out_hw.0, g.out_hw.1]);
    Ok(Tensor::from_op_cuda(
        y,
        shape,
        Op::AvgPool2d {
            input: x.clone(),
            geometry: *g,
        },
    ))
}

pub(crate) fn avg_pool2d_backward<T: Float>(
    grad: &Tensor<T>,
    input_shape: &Shape,
    g: &PoolGeometry,
) -> Result<Tensor<T>> {
    let a = pool_args(input_shape.dims(), g);
    let gpu = buf(grad)?.gpu().clone();
    let mut dx = gpu.zeros::<T>(input_shape.numel())?;
    launch!(
        gpu,
        T,
        "avg_pool_bwd",
        grid(input_shape.numel()),
        buf(grad)?.slice(),
        dx.slice_mut(),
        &a[0],
        &a[1],
        &a[2],
        &a[3],
        &a[4],
        &a[5],
        &a[6],
        &a[7]
    )?;
    Ok(Tensor::from_cuda(dx, input_shape.clone()))
}
