//! Convolution: im2col and one strided-batched cuBLAS GEMM per group; the input gradient
//! through col2im, the weight gradient per image and then summed.

use crate::autograd::{GradPair, Op};
use crate::backend::cuda::blas::gemm_strided;
use crate::backend::cuda::ops::{out_like, strided_copy, sum_plan};
use crate::backend::cuda::{Buffer, buf, grid, launch};
use crate::error::Result;
use crate::ops::conv::Conv2dGeometry;
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
