//! Reductions over the middle axis of a `Plan`'s (outer, reduced, inner) view: sums and
//! max/min with their arguments.

use super::gpu_of;
use crate::autograd::Op;
use crate::backend::cuda::{Buffer, buf, cuda_err, grid, launch, per_row, records_gradient};
use crate::error::Result;
use crate::ops::reduce::{Plan, unpermute_offsets};
use crate::tensor::{Float, Shape, Tensor};

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
/// `src` on the host when `want_args` (the autograd op keeps them there; a device sync),
/// else none.
pub(crate) fn extremum_plan<T: Float>(
    src: &Tensor<T>,
    plan: &Plan,
    want_max: bool,
    want_args: bool,
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
    if !want_args {
        return Ok((vals, Vec::new()));
    }
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
    let (vals, mut arg) = extremum_plan(src, plan, want_max, records_gradient(x))?;
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
