//! GPU convolution (im2col + cuBLAS, col2im for the input gradient), pooling and fused batch
//! normalisation, forward and backward. Shapes follow `src/ops/conv.rs`, `pool.rs` and
//! `norm.rs`, whose validated geometry these functions receive.

use super::blas::gemm_strided;
use super::ops::{out_like, strided_copy, sum_plan, take};
use super::{Buffer, buf, grid, launch};
use crate::autograd::{GradPair, Op};
use crate::error::{Error, Result};
use crate::ops::conv::Conv2dGeometry;
use crate::ops::norm::{BatchNormMode, BatchNormSaved, RunningStats};
use crate::ops::pool::PoolGeometry;
use crate::ops::reduce::Plan;
use crate::tensor::{Float, Shape, Tensor};

/// The 15 size arguments of `im2col`/`col2im`, in their C order.
fn window_args(g: &Conv2dGeometry) -> [i64; 15] {
    let w = &g.window;
    [
        g.batch,
        g.groups * w.channels,
        w.height,
        w.width,
        w.kernel.0,
        w.kernel.1,
        w.stride.0,
        w.stride.1,
        w.padding.0,
        w.padding.1,
        w.dilation.0,
        w.dilation.1,
        w.out_height,
        w.out_width,
        0,
    ]
    .map(|v| v as i64)
}

/// `(N, C·KH·KW, OH·OW)` columns of every image (all groups).
fn im2col<T: Float>(x: &Tensor<T>, g: &Conv2dGeometry) -> Result<Buffer<T>> {
    let len = g.batch * g.groups * g.window.col_rows() * g.window.col_cols();
    let mut cols = out_like(x, len)?;
    let gpu = buf(x)?.gpu().clone();
    let a = window_args(g);
    launch!(
        gpu,
        T,
        "im2col",
        grid(len),
        buf(x)?.slice(),
        cols.slice_mut(),
        &a[0],
        &a[1],
        &a[2],
        &a[3],
        &a[4],
        &a[5],
        &a[6],
        &a[7],
        &a[8],
        &a[9],
        &a[10],
        &a[11],
        &a[12],
        &a[13]
    )?;
    Ok(cols)
}

pub(crate) fn conv2d<T: Float>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    g: &Conv2dGeometry,
) -> Result<Tensor<T>> {
    let (oc, rows, p) = (g.out_channels, g.window.col_rows(), g.window.col_cols());
    let ocg = oc / g.groups;
    let cols = im2col(x, g)?;
    let mut out = out_like(x, g.batch * oc * p)?;
    if let Some(b) = bias {
        // Each output row starts as its channel's bias; the GEMMs add onto it.
        strided_copy(
            buf(b)?,
            0,
            &mut out,
            0,
            &[g.batch, oc, p],
            &[0, 1, 0],
            &[oc * p, p, 1],
        )?;
    }
    let gpu = buf(x)?.gpu().clone();
    let beta = if bias.is_some() { T::ONE } else { T::ZERO };
    for grp in 0..g.groups {
        // per image: (OC/G, C/G·KH·KW) · (C/G·KH·KW, OH·OW) → (OC/G, OH·OW)
        gemm_strided(
            &gpu,
            g.batch,
            (
                buf(weight)?.slice(),
                grp * ocg * rows,
                0,
                (ocg, rows),
                false,
            ),
            (
                cols.slice(),
                grp * rows * p,
                g.groups * rows * p,
                (rows, p),
                false,
            ),
            (out.slice_mut(), grp * ocg * p, oc * p),
            beta,
        )?;
    }
    let w = &g.window;
    let shape = Shape::new([g.batch, oc, w.out_height, w.out_width]);
    let op = Op::Conv2d {
        input: x.clone(),
        weight: weight.clone(),
        bias: bias.cloned(),
        geometry: *g,
    };
    Ok(Tensor::from_op_cuda(out, shape, op))
}

pub(crate) fn conv2d_backward<T: Float>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    g: &Conv2dGeometry,
    grad: &Tensor<T>,
    need: (bool, bool),
) -> Result<GradPair<T>> {
    let (oc, rows, p) = (g.out_channels, g.window.col_rows(), g.window.col_cols());
    let ocg = oc / g.groups;
    let gpu = buf(x)?.gpu().clone();
    let dy = buf(grad)?.slice();
    let dx = if need.0 {
        let mut dcols = out_like(x, g.batch * g.groups * rows * p)?;
        for grp in 0..g.groups {
            // per image: (C/G·KH·KW, OC/G) · (OC/G, OH·OW) → column gradient
            gemm_strided(
                &gpu,
                g.batch,
                (buf(weight)?.slice(), grp * ocg * rows, 0, (ocg, rows), true),
                (dy, grp * ocg * p, oc * p, (ocg, p), false),
                (dcols.slice_mut(), grp * rows * p, g.groups * rows * p),
                T::ZERO,
            )?;
        }
        let mut dx = out_like(x, x.numel())?;
        let a = window_args(g);
        launch!(
            gpu,
            T,
            "col2im",
            grid(x.numel()),
            dcols.slice(),
            dx.slice_mut(),
            &a[0],
            &a[1],
            &a[2],
            &a[3],
            &a[4],
            &a[5],
            &a[6],
            &a[7],
            &a[8],
            &a[9],
            &a[10],
            &a[11],
            &a[12],
            &a[13]
        )?;
        Some(Tensor::from_cuda(dx, x.shape().clone()))
    } else {
        None
    };
    let dw = if need.1 {
        let cols = im2col(x, g)?;
        // Per image (N, OC, C/G·KH·KW), then summed over the images.
        let mut per_image = out_like(x, g.batch * oc * rows)?;
        for grp in 0..g.groups {
            // per image: (OC/G, OH·OW) · (OH·OW, C/G·KH·KW)
            gemm_strided(
                &gpu,
                g.batch,
                (dy, grp * ocg * p, oc * p, (ocg, p), false),
                (
                    cols.slice(),
                    grp * rows * p,
                    g.groups * rows * p,
                    (rows, p),
                    true,
                ),
                (per_image.slice_mut(), grp * ocg * rows, oc * rows),
                T::ZERO,
            )?;
        }
        let per_image = Tensor::from_cuda(per_image, Shape::new([g.batch, oc * rows]));
        let plan = Plan {
            outer: 1,
            reduced: g.batch,
            inner: oc * rows,
        };
        Some(Tensor::from_cuda(
            sum_plan(&per_image, &plan)?,
            weight.shape().clone(),
        ))
    } else {
        None
    };
    Ok((dx, dw))
}

/// `(OC)`: dY summed over the pixels, then over the images.
pub(crate) fn conv2d_bias_backward<T: Float>(
    grad: &Tensor<T>,
    g: &Conv2dGeometry,
) -> Result<Tensor<T>> {
    let (oc, p) = (g.out_channels, g.window.col_cols());
    let rows = Tensor::from_cuda(
        sum_plan(
            grad,
            &Plan {
                outer: g.batch * oc,
                reduced: p,
                inner: 1,
            },
        )?,
        Shape::new([g.batch * oc]),
    );
    let db = sum_plan(
        &rows,
        &Plan {
            outer: 1,
            reduced: g.batch,
            inner: oc,
        },
    )?;
    Ok(Tensor::from_cuda(db, Shape::new([oc])))
}

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
/// (one device-to-host copy per call).
pub(crate) fn max_pool2d<T: Float>(x: &Tensor<T>, g: &PoolGeometry) -> Result<Tensor<T>> {
    let a = pool_args(x.dims(), g);
    let n = (a[0] * a[6] * a[7]) as usize;
    let gpu = buf(x)?.gpu().clone();
    let mut y = gpu.zeros::<T>(n)?;
    let mut arg = gpu
        .stream
        .alloc_zeros::<i64>(n.max(1))
        .map_err(super::cuda_err("cuda alloc"))?;
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
    let arg = gpu
        .stream
        .clone_dtoh(&arg)
        .map_err(super::cuda_err("cuda download"))?;
    let shape = Shape::new([x.dims()[0], x.dims()[1], g.out_hw.0, g.out_hw.1]);
    let op = Op::MaxPool2d {
        input: x.clone(),
        arg: arg[..n].iter().map(|&v| v as usize).collect(),
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

/// The fused batch norm (see `Tensor::batch_norm`). Per-channel values (statistics, scale)
/// are C numbers: they travel to the host to update the running statistics and come back.
pub(crate) fn batch_norm<T: Float>(
    x: &Tensor<T>,
    gamma: Option<&Tensor<T>>,
    beta: Option<&Tensor<T>>,
    running: Option<&mut RunningStats<T>>,
    mode: BatchNormMode,
) -> Result<Tensor<T>> {
    let (n, c) = (x.dims()[0], x.dims()[1]);
    let l = x.numel() / (n * c).max(1);
    let gpu = buf(x)?.gpu().clone();
    let (mean, inv_std) = if mode.training {
        if n * l < 2 {
            return Err(Error::invalid(
                "batch_norm",
                format!(
                    "training needs more than one value per channel, got shape {:?}",
                    x.shape()
                ),
            ));
        }
        let mut mean = gpu.zeros::<T>(c)?;
        let mut var = gpu.zeros::<T>(c)?;
        let (n64, c64, l64) = (n as i64, c as i64, l as i64);
        launch!(
            gpu,
            T,
            "bn_stats",
            super::per_row(c),
            buf(x)?.slice(),
            mean.slice_mut(),
            var.slice_mut(),
            &n64,
            &c64,
            &l64
        )?;
        let mean = mean.download()?[..c].to_vec();
        let var = var.download()?[..c].to_vec();
        if let Some(r) = running {
            let m = T::from_f64(r.momentum);
            let unbias = T::from_f64((n * l) as f64 / (n * l - 1) as f64);
            for ch in 0..c {
                r.mean[ch] = (T::ONE - m) * r.mean[ch] + m * mean[ch];
                r.var[ch] = (T::ONE - m) * r.var[ch] + m * var[ch] * unbias;
            }
        }
        let eps = T::from_f64(mode.eps);
        let inv_std: Vec<T> = var
            .iter()
            .map(|&v| (v + eps).powf(T::from_f64(-0.5)))
            .collect();
        (mean, inv_std)
    } else {
        let r = running.ok_or_else(|| {
            Error::invalid("batch_norm", "evaluation mode needs running statistics")
        })?;
        let inv_std = r
            .var
            .iter()
            .map(|&v| T::ONE / (v + T::from_f64(mode.eps)).sqrt())
            .collect();
        (r.mean.clone(), inv_std)
    };
    let dev = crate::Device::Cuda(gpu.ordinal());
    let gamma = match gamma {
        Some(t) => t.clone(),
        None => Tensor::ones([c]).to_device(&dev)?,
    };
    let beta = match beta {
        Some(t) => t.clone(),
        None => Tensor::zeros([c]).to_device(&dev)?,
    };
    let (mean_d, inv_std_d) = (gpu.upload(&mean)?, gpu.upload(&inv_std)?);
    let mut y = gpu.zeros::<T>(x.numel())?;
    let (c64, l64, total) = (c as i64, l.max(1) as i64, x.numel() as i64);
    launch!(
        gpu,
        T,
        "bn_apply",
        grid(x.numel()),
        buf(x)?.slice(),
        y.slice_mut(),
        mean_d.slice(),
        inv_std_d.slice(),
        buf(&gamma)?.slice(),
        buf(&beta)?.slice(),
        &c64,
        &l64,
        &total
    )?;
    let saved = BatchNormSaved {
        mean,
        inv_std,
        channels: c,
        inner: l,
        training: mode.training,
    };
    let op = Op::BatchNorm {
        input: x.clone(),
        gamma,
        beta,
        saved: Box::new(saved),
    };
    Ok(Tensor::from_op_cuda(y, x.shape().clone(), op))
}

pub(crate) fn batch_norm_backward<T: Float>(
    x: &Tensor<T>,
    gamma: &Tensor<T>,
    saved: &BatchNormSaved<T>,
    grad: &Tensor<T>,
    need_input: bool,
) -> Result<crate::ops::norm::BatchNormGrads<T>> {
    let (c, l) = (saved.channels, saved.inner.max(1));
    let n = x.numel() / (c * l).max(1);
    let gpu = buf(x)?.gpu().clone();
    let (mean, inv_std) = (gpu.upload(&saved.mean)?, gpu.upload(&saved.inv_std)?);
    let mut sum_dy = gpu.zeros::<T>(c)?;
    let mut sum_dyxc = gpu.zeros::<T>(c)?;
    let (n64, c64, l64, total) = (n as i64, c as i64, l as i64, x.numel() as i64);
    launch!(
        gpu,
        T,
        "bn_bwd_sums",
        super::per_row(c),
        buf(x)?.slice(),
        buf(grad)?.slice(),
        mean.slice(),
        sum_dy.slice_mut(),
        sum_dyxc.slice_mut(),
        &n64,
        &c64,
        &l64
    )?;
    let dx = if need_input {
        let mut dx = gpu.zeros::<T>(x.numel())?;
        let training = saved.training as i32;
        let inv_m = T::ONE / T::from_usize((n * l).max(1));
        launch!(
            gpu,
            T,
            "bn_bwd_dx",
            grid(x.numel()),
            buf(x)?.slice(),
            buf(grad)?.slice(),
            mean.slice(),
            inv_std.slice(),
            buf(gamma)?.slice(),
            sum_dy.slice(),
            sum_dyxc.slice(),
            dx.slice_mut(),
            &c64,
            &l64,
            &total,
            &training,
            &inv_m
        )?;
        Some(Tensor::from_cuda(dx, x.shape().clone()))
    } else {
        None
    };
    // dγ = Σ dy·(x − μ)·s: C values, scaled on the host.
    let dgamma: Vec<T> = sum_dyxc.download()?[..c]
        .iter()
        .zip(&saved.inv_std)
        .map(|(&p, &s)| p * s)
        .collect();
    let dgamma = Tensor::from_cuda(gpu.upload(&dgamma)?, Shape::new([c]));
    let dbeta = Tensor::from_cuda(sum_dy, Shape::new([c]));
    Ok((dx, dgamma, dbeta))
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
