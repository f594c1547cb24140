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

/// The common 2×2 window without padding, for one plane (`base` is the plane's offset in the
/// input). The general loop clips the window bounds for every output; here every window is
/// whole, and its four taps are compared in the general loop's order (row-major, strict `>`
/// from −∞), so results, ties and NaN handling are identical (tested below).
fn max_pool_2x2<T: Float>(
    plane: &[T],
    w: usize,
    stride: (usize, usize),
    (oh, ow): (usize, usize),
    base: usize,
    out: &mut [T],
    arg: &mut [usize],
) {
    for oy in 0..oh {
        let y0 = oy * stride.0;
        let top = &plane[y0 * w..(y0 + 1) * w];
        let bottom = &plane[(y0 + 1) * w..(y0 + 2) * w];
        let o = &mut out[oy * ow..(oy + 1) * ow];
        let a = &mut arg[oy * ow..(oy + 1) * ow];
        for ox in 0..ow {
            let x0 = ox * stride.1;
            let taps = [
                (top[x0], y0 * w + x0),
                (top[x0 + 1], y0 * w + x0 + 1),
                (bottom[x0], (y0 + 1) * w + x0),
                (bottom[x0 + 1], (y0 + 1) * w + x0 + 1),
            ];
            let (mut best, mut at) = (T::NEG_INFINITY, taps[0].1);
            for (v, i) in taps {
                if v > best {
                    best = v;
                    at = i;
                }
            }
            o[ox] = best;
            a[ox] = base + at;
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
                    max_pool_2x2(plane, w, g.stride, (oh, ow), p * h * w, o, a);
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

    /// The 2×2 fast path agrees with the general loop, ties and NaN included.
    #[test]
    fn two_by_two_matches_the_general_loop() {
        let (h, w) = (7, 9);
        let mut plane: Vec<f32> = (0..h * w).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        plane[10] = f32::NAN;
        plane[20] = f32::NAN;
        plane[21] = f32::NAN;
        for stride in [1, 2, 3] {
            let g = PoolGeometry::new("test", &[1, 1, h, w], 2, stride, 0).unwrap();
            let n = g.out_hw.0 * g.out_hw.1;
            let (mut o1, mut a1) = (vec![0.0; n], vec![0; n]);
            let (mut o2, mut a2) = (vec![0.0; n], vec![0; n]);
            max_pool_plane(&plane, &g, 100, &mut o1, &mut a1);
            max_pool_2x2(&plane, w, g.stride, g.out_hw, 100, &mut o2, &mut a2);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&o1), bits(&o2), "stride {stride}");
            assert_eq!(a1, a2, "stride {stride}");
        }
    }
}
