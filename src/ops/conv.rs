//! 2-d convolution (cross-correlation, as in PyTorch) with stride, padding, dilation and groups,
//! computed as im2col + one GEMM per group of images (the kernels are in
//! [`crate::backend::cpu::conv`]).
//!
//! Shapes: input `(N, C, H, W)`, weight `(OC, C/G, KH, KW)`, output `(N, OC, OH, OW)` with
//! `OH = (H + 2·pad − dil·(KH − 1) − 1)/stride + 1` (likewise OW).
//! Backward: `dX = col2im(Wᵀ·dY)`; `dW = Σₙ dYₙ·colsₙᵀ`, summed over fixed groups of images in
//! a fixed order so that the result does not depend on the thread count.

use crate::autograd::{GradPair, Op};
use crate::backend::cpu::conv::{ConvShape, conv2d_bwd, conv2d_fwd};
use crate::backend::cpu::im2col::Window;
use crate::error::{Error, Result};
use crate::tensor::{Float, Shape, Tensor};
use rayon::prelude::*;

/// Stride, padding, dilation (each as (rows, cols)) and group count of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Square stride and padding, no dilation, one group.
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv2dParams {
            stride: (stride, stride),
            padding: (padding, padding),
            ..Self::default()
        }
    }
}

/// Everything the forward and backward kernels need, derived once from the shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub batch: usize,
    pub out_channels: usize,
    pub groups: usize,
    /// Sweep of one group's input channels over one image.
    pub window: Window,
}

impl Conv2dGeometry {
    fn new(input: &[usize], weight: &[usize], p: Conv2dParams) -> Result<Self> {
        let bad = |why: String| {
            Error::invalid(
                "conv2d",
                format!("{why} (input {input:?}, weight {weight:?}, {p:?})"),
            )
        };
        if input.len() != 4 || weight.len() != 4 {
            return Err(Error::ShapeMismatch {
                op: "conv2d (input (N,C,H,W) and weight (OC,C/groups,KH,KW) must be 4-d)",
                lhs: input.to_vec(),
                rhs: weight.to_vec(),
            });
        }
        let [n, c, h, w] = [input[0], input[1], input[2], input[3]];
        let [oc, cg, kh, kw] = [weight[0], weight[1], weight[2], weight[3]];
        if p.groups == 0
            || p.stride.0 == 0
            || p.stride.1 == 0
            || p.dilation.0 == 0
            || p.dilation.1 == 0
        {
            return Err(bad("stride, dilation and groups must be positive".into()));
        }
        if cg * p.groups != c || oc % p.groups != 0 || kh == 0 || kw == 0 {
            return Err(Error::ShapeMismatch {
                op: "conv2d (need C = groups·weight[1], OC divisible by groups, kernel ≥ 1)",
                lhs: input.to_vec(),
                rhs: weight.to_vec(),
            });
        }
        let span_h = p.dilation.0 * (kh - 1) + 1;
        let span_w = p.dilation.1 * (kw - 1) + 1;
        if h + 2 * p.padding.0 < span_h || w + 2 * p.padding.1 < span_w {
            return Err(bad(format!(
                "the {span_h}×{span_w} kernel span exceeds the padded input"
            )));
        }
        Ok(Conv2dGeometry {
            batch: n,
            out_channels: oc,
            groups: p.groups,
            window: Window {
                channels: cg,
                height: h,
                width: w,
                kernel: (kh, kw),
                stride: p.stride,
                padding: p.padding,
                dilation: p.dilation,
                out_height: (h + 2 * p.padding.0 - span_h) / p.stride.0 + 1,
                out_width: (w + 2 * p.padding.1 - span_w) / p.stride.1 + 1,
            },
        })
    }

    /// The kernels' view of these shapes.
    fn kernel_shape(&self) -> ConvShape {
        ConvShape {
            batch: self.batch,
            out_channels: self.out_channels,
            groups: self.groups,
            window: self.window,
        }
    }
}

/// Gradients with respect to `(input, weight)`, each only when asked for.
pub(crate) fn backward<T: Float>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    g: &Conv2dGeometry,
    grad: &Tensor<T>,
    need_input: bool,
    need_weight: bool,
) -> Result<GradPair<T>> {
    let (dx, dw) = conv2d_bwd(
        input.data(),
        weight.data(),
        grad.data(),
        &g.kernel_shape(),
        need_input,
        need_weight,
    );
    Ok((
        dx.map(|d| Tensor::from_vec(d, input.shape().clone()))
            .transpose()?,
        dw.map(|d| Tensor::from_vec(d, weight.shape().clone()))
            .transpose()?,
    ))
}

/// The bias gradient `(OC)`: `dY` summed over the images and pixels, first per `(n, oc)` row
/// (in parallel), then over n in order, so the bits do not depend on the thread count.
pub(crate) fn bias_backward<T: Float>(grad: &Tensor<T>, g: &Conv2dGeometry) -> Result<Tensor<T>> {
    let (oc, pixels) = (g.out_channels, g.window.col_cols());
    let rows: Vec<T> = grad
        .data()
        .par_chunks(pixels.max(1))
        .with_min_len((1 << 14) / pixels.max(1) + 1)
        .map(crate::backend::cpu::simd::sum_row)
        .collect();
    let mut db = vec![T::ZERO; oc];
    for image in rows.chunks(oc.max(1)) {
        for (d, &v) in db.iter_mut().zip(image) {
            *d += v;
        }
    }
    Tensor::from_vec(db, [oc])
}

impl<T: Float> Tensor<T> {
    /// 2-d convolution of `(N, C, H, W)` with `weight` `(OC, C/groups, KH, KW)` and an optional
    /// `bias` `(OC)`, giving `(N, OC, OH, OW)`.
    pub fn conv2d(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        params: Conv2dParams,
    ) -> Result<Self> {
        let geometry = Conv2dGeometry::new(self.dims(), weight.dims(), params)?;
        if let Some(b) = bias
            && b.dims() != [geometry.out_channels]
        {
            return Err(Error::ShapeMismatch {
                op: "conv2d bias (expected (OC))",
                lhs: weight.dims().to_vec(),
                rhs: b.dims().to_vec(),
            });
        }
        crate::backend::on_cuda!("conv2d", [self, weight], |_dev| {
            let bias = bias.map(|b| b.to_device(&self.device())).transpose()?;
            crate::backend::cuda::nn::conv2d(self, weight, bias.as_ref(), &geometry)
        });
        let out = conv2d_fwd(
            self.data(),
            weight.data(),
            bias.map(|b| b.data()),
            &geometry.kernel_shape(),
        );
        let w = &geometry.window;
        let shape = Shape::new([
            geometry.batch,
            geometry.out_channels,
            w.out_height,
            w.out_width,
        ]);
        Ok(Tensor::from_op(
            out,
            shape,
            Op::Conv2d {
                input: self.clone(),
                weight: weight.clone(),
                bias: bias.cloned(),
                geometry,
            },
        ))
    }
}
