//! 2-d pooling over `(N, C, H, W)`: max pooling (backward routes each gradient to the window's
//! first maximum) and average pooling (zero padding counted in the average, as PyTorch's
//! default `count_include_pad = true`). Global average pooling is a mean over `(H, W)`.

use crate::autograd::Op;
use crate::error::{Error, Result};
use crate::tensor::{Float, Shape, Tensor};
use rayon::prelude::*;

/// Window size, stride and padding of a pooling op, with the sizes they imply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub in_hw: (usize, usize),
    pub out_hw: (usize, usize),
}

impl PoolGeometry {
    fn new(
        op: &'static str,
        dims: &[usize],
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        if dims.len() != 4 {
            return Err(Error::BadRank {
                op,
                expected: "a 4-d (N, C, H, W) input",
                shape: dims.to_vec(),
            });
        }
        if kernel == 0 || stride == 0 || 2 * padding > kernel {
            return Err(Error::invalid(
                op,
                format!(
                    "kernel {kernel}, stride {stride}, padding {padding}: need kernel, stride ≥ 1 and padding ≤ kernel/2"
                ),
            ));
        }
        let (h, w) = (dims[2], dims[3]);
        if h + 2 * padding < kernel || w + 2 * padding < kernel {
            return Err(Error::invalid(
                op,
                format!("kernel {kernel} is larger than the padded input {:?}", dims),
            ));
        }
        Ok(PoolGeometry {
            kernel: (kernel, kernel),
            stride: (stride, stride),
            padding: (padding, padding),
            in_hw: (h, w),
            out_hw: (
                (h + 2 * padding - kernel) / stride + 1,
                (w + 2 * padding - kernel) / stride + 1,
            ),
        })
    }

    /// The input rows (or columns) covered by output position `o` along one axis, clipped.
    fn span(o: usize, stride: usize, pad: usize, k: usize, size: usize) -> (usize, usize) {
        let start = (o * stride) as isize - pad as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + k as isize).max(0) as usize).min(size);
        (lo, hi)
    }

    fn out_dims(&self, dims: &[usize]) -> Shape {
        Shape::new([dims[0], dims[1], self.out_hw.0, self.out_hw.1])
    }
}

pub(crate) fn max_pool2d_backward<T: Float>(
    grad: &Tensor<T>,
    input_shape: &Shape,
    arg: &[usize],
) -> Result<Tensor<T>> {
    super::reduce::extremum_backward(grad, input_shape, arg)
}

pub(crate) fn avg_pool2d_backward<T: Float>(
    grad: &Tensor<T>,
    input_shape: &Shape,
    g: &PoolGeometry,
) -> Result<Tensor<T>> {
    let (h, w) = g.in_hw;
    let (oh, ow) = g.out_hw;
    let scale = T::ONE / T::from_usize(g.kernel.0 * g.kernel.1);
    let mut dx = vec![T::ZERO; input_shape.numel()];
    dx.par_chunks_mut((h * w).max(1))
        .zip(grad.data().par_chunks((oh * ow).max(1)))
        .for_each(|(plane, gp)| {
            for oy in 0..oh {
                let (y0, y1) = PoolGeometry::span(oy, g.stride.0, g.padding.0, g.kernel.0, h);
                for ox in 0..ow {
                    let (x0, x1) = PoolGeometry::span(ox, g.stride.1, g.padding.1, g.kernel.1, w);
                    let v = gp[oy * ow + ox] * scale;
                    for y in y0..y1 {
                        for x in x0..x1 {
                            plane[y * w + x] += v;
                        }
                    }
                }
            }
        });
    Tensor::from_vec(dx, input_shape.clone())
}

impl<T: Float> Tensor<T> {
    /// Max over `kernel × kernel` windows with `stride` and implicit `−∞` padding.
    pub fn max_pool2d(&self, kernel: usize, stride: usize, padding: usize) -> Result<Self> {
        let g = PoolGeometry::new("max_pool2d", self.dims(), kernel, stride, padding)?;
        let (h, w) = g.in_hw;
        let (oh, ow) = g.out_hw;
        let planes = self.numel() / (h * w).max(1);
        let mut out = vec![T::ZERO; planes * oh * ow];
        let mut arg = vec![0usize; planes * oh * ow];
        out.par_chunks_mut((oh * ow).max(1))
            .zip(arg.par_chunks_mut((oh * ow).max(1)))
            .zip(self.data().par_chunks((h * w).max(1)))
            .enumerate()
            .for_each(|(p, ((o, a), plane))| {
                for oy in 0..oh {
                    let (y0, y1) = PoolGeometry::span(oy, g.stride.0, g.padding.0, g.kernel.0, h);
                    for ox in 0..ow {
                        let (x0, x1) =
                            PoolGeometry::span(ox, g.stride.1, g.padding.1, g.kernel.1, w);
                        let mut best = T::NEG_INFINITY;
                        let mut at = y0 * w + x0;
                        for y in y0..y1 {
                            for x in x0..x1 {
                                if plane[y * w + x] > best {
                                    best = plane[y * w + x];
                                    at = y * w + x;
                                }
                            }
                        }
                        o[oy * ow + ox] = best;
                        a[oy * ow + ox] = p * h * w + at;
                    }
                }
            });
        Ok(Tensor::from_op(
            out,
            g.out_dims(self.dims()),
            Op::MaxPool2d {
                input: self.clone(),
                arg,
            },
        ))
    }

    /// Mean over `kernel × kernel` windows with `stride`; zero padding counts in the mean.
    pub fn avg_pool2d(&self, kernel: usize, stride: usize, padding: usize) -> Result<Self> {
        let g = PoolGeometry::new("avg_pool2d", self.dims(), kernel, stride, padding)?;
        let (h, w) = g.in_hw;
        let (oh, ow) = g.out_hw;
        let scale = T::ONE / T::from_usize(kernel * kernel);
        let planes = self.numel() / (h * w).max(1);
        let mut out = vec![T::ZERO; planes * oh * ow];
        out.par_chunks_mut((oh * ow).max(1))
            .zip(self.data().par_chunks((h * w).max(1)))
            .for_each(|(o, plane)| {
                for oy in 0..oh {
                    let (y0, y1) = PoolGeometry::span(oy, g.stride.0, g.padding.0, g.kernel.0, h);
                    for ox in 0..ow {
                        let (x0, x1) =
                            PoolGeometry::span(ox, g.stride.1, g.padding.1, g.kernel.1, w);
                        let mut s = T::ZERO;
                        for y in y0..y1 {
                            for x in x0..x1 {
                                s += plane[y * w + x];
                            }
                        }
                        o[oy * ow + ox] = s * scale;
                    }
                }
            });
        Ok(Tensor::from_op(
            out,
            g.out_dims(self.dims()),
            Op::AvgPool2d {
                input: self.clone(),
                geometry: g,
            },
        ))
    }

    /// Mean over the spatial axes: `(N, C, H, W) → (N, C)`.
    pub fn global_avg_pool2d(&self) -> Result<Self> {
        if self.rank() != 4 {
            return Err(Error::BadRank {
                op: "global_avg_pool2d",
                expected: "a 4-d (N, C, H, W) input",
                shape: self.dims().to_vec(),
            });
        }
        self.mean(&[2, 3], false)
    }
}
