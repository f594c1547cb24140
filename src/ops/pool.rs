//! 2-d pooling over `(N, C, H, W)`: max pooling (backward routes each gradient to the window's
//! first maximum) and average pooling (zero padding counted in the average, as PyTorch's
//! default `count_include_pad = true`). Global average pooling is a mean over `(H, W)`.

use crate::autograd::Op;
use crate::backend::cpu::pool::max_pool_2x2;
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

/// Routes each output gradient to its window's maximum. Every `arg` of plane p (one image and
/// channel) lies inside input plane p, so planes are scattered in parallel, each in the serial
/// order (the result does not depend on the thread count).
pub(crate) fn max_pool2d_backward<T: Float>(
    grad: &Tensor<T>,
    input_shape: &Shape,
    arg: &[usize],
) -> Result<Tensor<T>> {
    let dims = input_shape.dims();
    let plane = dims[2] * dims[3];
    let out_plane = grad.numel() / (dims[0] * dims[1]).max(1);
    if plane == 0 || out_plane == 0 {
        return super::reduce::extremum_backward(grad, input_shape, arg);
    }
    let mut dx = vec![T::ZERO; input_shape.numel()];
    dx.par_chunks_mut(plane)
        .zip(grad.data().par_chunks(out_plane))
        .zip(arg.par_chunks(out_plane))
        .enumerate()
        .for_each(|(p, ((dst, g), a))| {
            let base = p * plane;
            for (&a, &g) in a.iter().zip(g) {
                dst[a - base] += g;
            }
        });
    Tensor::from_vec(dx, input_shape.clone())
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

/// Max pooling of one plane (`base` is its offset in the input): the maximum of each window
/// and the input offset of its first maximum (row-major, strict `>` from −∞).
fn max_pool_plane<T: Float>(
    plane: &[T],
    g: &PoolGeometry,
    base: usize,
    o: &mut [T],
    a: &mut [usize],
) {
    let (h, w) = g.in_hw;
    let (oh, ow) = g.out_hw;
    for oy in 0..oh {
        let (y0, y1) = PoolGeometry::span(oy, g.stride.0, g.padding.0, g.kernel.0, h);
        for ox in 0..ow {
            let (x0, x1) = PoolGeometry::span(ox, g.stride.1, g.padding.1, g.kernel.1, w);
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
            a[oy * ow + ox] = base + at;
        }
    }
}

impl<T: Float> Tensor<T> {
    /// Max over `kernel × kernel` windows with `stride` and implicit `−∞` padding.
    pub fn max_pool2d(&self, kernel: usize, stride: usize, padding: usize) -> Result<Self> {
        let g = PoolGeometry::new("max_pool2d", self.dims(), kernel, stride, padding)?;
        crate::backend::on_cuda!("max_pool2d", [self], |_dev| {
            crate::backend::cuda::nn::max_pool2d(self, &g)
        });
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
                if g.padding == (0, 0) && g.kernel == (2, 2) {
                    max_pool_2x2(plane, w, g.stride, ow, p * h * w, o, a);
                } else {
                    max_pool_plane(plane, &g, p * h * w, o, a);
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
        crate::backend::on_cuda!("avg_pool2d", [self], |_dev| {
            crate::backend::cuda::nn::avg_pool2d(self, &g)
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2×2 fast path (vectorised kernel) agrees with the general loop bit for bit, ties,
    /// −∞ and NaN included (an all-NaN window keeps −∞ and its first tap), in f32 and f64,
    /// for odd and even widths and every stride the fast path takes.
    fn two_by_two_case<T: Float>(h: usize, w: usize) {
        let mut plane: Vec<T> = (0..h * w)
            .map(|i| T::from_f64(((i * 37) % 11) as f64 - 5.0))
            .collect();
        let nan = T::from_f64(f64::NAN);
        for i in [10, 20, 21, 20 + w, 21 + w] {
            plane[i] = nan; // the window at (20, 21) is all NaN for stride 1
        }
        plane[3] = T::NEG_INFINITY;
        plane[4] = T::NEG_INFINITY;
        for stride in [1, 2, 3] {
            let g = PoolGeometry::new("test", &[1, 1, h, w], 2, stride, 0).unwrap();
            let n = g.out_hw.0 * g.out_hw.1;
            let (mut o1, mut a1) = (vec![T::ZERO; n], vec![0; n]);
            let (mut o2, mut a2) = (vec![T::ZERO; n], vec![0; n]);
            max_pool_plane(&plane, &g, 100, &mut o1, &mut a1);
            max_pool_2x2(&plane, w, g.stride, g.out_hw.1, 100, &mut o2, &mut a2);
            let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&o1), bits(&o2), "{h}x{w} stride {stride}");
            assert_eq!(a1, a2, "{h}x{w} stride {stride}");
        }
    }

    #[test]
    fn two_by_two_matches_the_general_loop() {
        for (h, w) in [(7, 9), (8, 34), (6, 6)] {
            two_by_two_case::<f32>(h, w);
            two_by_two_case::<f64>(h, w);
        }
    }
}
