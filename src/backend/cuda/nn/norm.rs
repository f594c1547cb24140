//! Fused batch normalisation over the (N, C, L) view, forward and closed-form backward.

use crate::autograd::Op;
use crate::backend::cuda::{buf, grid, launch, per_row};
use crate::error::Result;
use crate::ops::binary::BinaryOp;
use crate::ops::norm::{
    BatchNormMode, BatchNormSaved, RunningStats, batch_statistics, check_training_count,
    running_statistics,
};
use crate::tensor::{Float, Shape, Tensor};

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
        check_training_count(n * l, x)?;
        let mut mean = gpu.zeros::<T>(c)?;
        let mut var = gpu.zeros::<T>(c)?;
        let (n64, c64, l64) = (n as i64, c as i64, l as i64);
        launch!(
            gpu,
            T,
            "bn_stats",
            per_row(c),
            buf(x)?.slice(),
            mean.slice_mut(),
            var.slice_mut(),
            &n64,
            &c64,
            &l64
        )?;
        let mean = mean.download()?[..c].to_vec();
        let var = var.download()?[..c].to_vec();
        batch_statistics(mean, &var, n * l, running, mode.eps)
    } else {
        running_statistics(running, mode.eps)?
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
        relu: false,
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
    if saved.relu {
        // `Tensor::batch_norm_relu` composes the ReLU on a GPU, so no GPU op carries one.
        return Err(crate::error::Error::invalid(
            "batch_norm",
            "a fused ReLU has no GPU backward (the GPU composes batch_norm and relu)",
        ));
    }
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
        per_row(c),
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
    // dγ = Σ dy·(x − μ)·s, scaled on the device (the CPU's one product per channel).
    let dgamma = crate::backend::cuda::ops::binary(
        BinaryOp::Mul,
        &Tensor::from_cuda(sum_dyxc, Shape::new([c])),
        &Tensor::from_cuda(inv_std, Shape::new([c])),
        gpu.ordinal(),
    )?;
    let dbeta = Tensor::from_cuda(sum_dy, Shape::new([c]));
    Ok((dx, dgamma, dbeta))
}
