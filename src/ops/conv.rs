//! 2-d convolution (cross-correlation, as in PyTorch) with stride, padding, dilation and groups,
//! computed as im2col + GEMM per image, images in parallel.
//!
//! Shapes: input `(N, C, H, W)`, weight `(OC, C/G, KH, KW)`, output `(N, OC, OH, OW)` with
//! `OH = (H + 2·pad − dil·(KH − 1) − 1)/stride + 1` (likewise OW).
//! Backward: `dX = col2im(Wᵀ·dY)` per image; `dW = Σₙ dYₙ·colsₙᵀ`, summed over fixed groups of
//! images in a fixed order so that the result does not depend on the thread count.

use crate::autograd::{GradPair, Op};
use crate::backend::cpu::gemm::{MatRef, gemm};
use crate::backend::cpu::im2col::{Window, col2im, im2col};
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

    fn image_len(&self) -> usize {
        self.groups * self.window.channels * self.window.height * self.window.width
    }
    fn out_image_len(&self) -> usize {
        self.out_channels * self.window.col_cols()
    }
    /// A 1×1 kernel with unit stride and no padding reads the image itself as its columns.
    fn is_pointwise(&self) -> bool {
        let w = &self.window;
        w.kernel == (1, 1) && w.stride == (1, 1) && w.padding == (0, 0)
    }
    /// The column matrix of one group of one image (borrowed when pointwise).
    fn columns<'a, T: Float>(&self, group_image: &'a [T], buf: &'a mut Vec<T>) -> &'a [T] {
        if self.is_pointwise() {
            return group_image;
        }
        buf.resize(self.window.col_rows() * self.window.col_cols(), T::ZERO);
        im2col(group_image, &self.window, buf);
        buf
    }
}

/// Images per piece of the weight-gradient sum (fixed, for thread-count-independent results).
const IMAGES_PER_PIECE: usize = 4;

/// The convolution, with the bias (when given) as each output row's starting value, so that
/// adding it costs no pass of its own.
fn forward<T: Float>(x: &[T], weight: &[T], bias: Option<&[T]>, g: &Conv2dGeometry) -> Vec<T> {
    let (ocg, rows, cols) = (
        g.out_channels / g.groups,
        g.window.col_rows(),
        g.window.col_cols(),
    );
    let group_len = g.image_len() / g.groups;
    let mut out = vec![T::ZERO; g.batch * g.out_image_len()];
    out.par_chunks_mut(g.out_image_len().max(1))
        .zip(x.par_chunks(g.image_len().max(1)))
        // One column buffer per rayon job, not per image: these buffers are above glibc's mmap
        // threshold, so a fresh one per image cost an mmap, page faults and an munmap.
        .for_each_init(Vec::new, |buf, (y, image)| {
            for grp in 0..g.groups {
                let cols_m = g.columns(&image[grp * group_len..(grp + 1) * group_len], buf);
                // (OC/G, C/G·KH·KW) · (C/G·KH·KW, OH·OW) → (OC/G, OH·OW)
                let w_g = MatRef::new(&weight[grp * ocg * rows..(grp + 1) * ocg * rows], ocg, rows);
                let y_g = &mut y[grp * ocg * cols..(grp + 1) * ocg * cols];
                if let Some(b) = bias {
                    for (row, &v) in y_g.chunks_mut(cols.max(1)).zip(&b[grp * ocg..]) {
                        row.fill(v);
                    }
                }
                gemm(w_g, MatRef::new(cols_m, rows, cols), y_g, bias.is_some());
            }
        });
    out
}

pub(crate) fn backward<T: Float>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    g: &Conv2dGeometry,
    grad: &Tensor<T>,
    need_input: bool,
    need_weight: bool,
) -> Result<GradPair<T>> {
    let (ocg, rows, cols) = (
        g.out_channels / g.groups,
        g.window.col_rows(),
        g.window.col_cols(),
    );
    let group_len = g.image_len() / g.groups;
    let (x, w, dy) = (input.data(), weight.data(), grad.data());
    let out_len = g.out_image_len().max(1);

    let dx = if need_input {
        let mut dx = vec![T::ZERO; x.len()];
        dx.par_chunks_mut(g.image_len().max(1))
            .zip(dy.par_chunks(out_len))
            // One column-gradient buffer per rayon job (see `forward`); each GEMM overwrites it.
            .for_each_init(
                || vec![T::ZERO; rows * cols],
                |dcols, (dx_img, dy_img)| {
                    for grp in 0..g.groups {
                        let w_g =
                            MatRef::new(&w[grp * ocg * rows..(grp + 1) * ocg * rows], ocg, rows);
                        let dy_g = MatRef::new(
                            &dy_img[grp * ocg * cols..(grp + 1) * ocg * cols],
                            ocg,
                            cols,
                        );
                        let dst = &mut dx_img[grp * group_len..(grp + 1) * group_len];
                        if g.is_pointwise() {
                            // (C/G, OC/G) · (OC/G, H·W): the column gradient is the image gradient.
                            gemm(w_g.t(), dy_g, dst, false);
                        } else {
                            // (C/G·KH·KW, OC/G) · (OC/G, OH·OW) → column gradient, folded back.
                            gemm(w_g.t(), dy_g, dcols, false);
                            col2im(dcols, &g.window, dst);
                        }
                    }
                },
            );
        Some(Tensor::from_vec(dx, input.shape().clone())?)
    } else {
        None
    };

    let dw = if need_weight {
        let piece = IMAGES_PER_PIECE * g.image_len().max(1);
        let partials: Vec<Vec<T>> = x
            .par_chunks(piece)
            .zip(dy.par_chunks(IMAGES_PER_PIECE * out_len))
            .map(|(xs, dys)| {
                let mut dw = vec![T::ZERO; w.len()];
                let mut buf = Vec::new();
                for (image, dy_img) in xs.chunks(g.image_len().max(1)).zip(dys.chunks(out_len)) {
                    for grp in 0..g.groups {
                        let cols_m =
                            g.columns(&image[grp * group_len..(grp + 1) * group_len], &mut buf);
                        // (OC/G, OH·OW) · (OH·OW, C/G·KH·KW) accumulated into dW_g
                        let dy_g = MatRef::new(
                            &dy_img[grp * ocg * cols..(grp + 1) * ocg * cols],
                            ocg,
                            cols,
                        );
                        let cols_t = MatRef::new(cols_m, rows, cols).t();
                        gemm(
                            dy_g,
                            cols_t,
                            &mut dw[grp * ocg * rows..(grp + 1) * ocg * rows],
                            true,
                        );
                    }
                }
                dw
            })
            .collect();
        let mut dw = vec![T::ZERO; w.len()];
        for p in &partials {
            crate::backend::cpu::simd::add_assign(&mut dw, p);
        }
        Some(Tensor::from_vec(dw, weight.shape().clone())?)
    } else {
        None
    };
    Ok((dx, dw))
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
        let out = forward(
            self.data(),
            weight.data(),
            bias.map(|b| b.data()),
            &geometry,
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
