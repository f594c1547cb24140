//! The 2-d convolution layer: a weight `(OC, C/groups, KH, KW)` and an optional bias `(OC)` as
//! in `torch.nn.Conv2d`, applied with [`Tensor::conv2d`].

use super::{Mode, Module, init, join};
use crate::error::{Error, Result};
use crate::ops::conv::Conv2dParams;
use crate::tensor::{Float, Tensor};
use rand::rngs::StdRng;

/// `(N, C, H, W) → (N, OC, OH, OW)`, cross-correlation with stride, padding, dilation, groups.
#[derive(Debug, Clone)]
pub struct Conv2d<T: Float> {
    /// `(OC, C/groups, KH, KW)`.
    pub weight: Tensor<T>,
    /// `(OC)`.
    pub bias: Option<Tensor<T>>,
    pub params: Conv2dParams,
}

impl<T: Float> Conv2d<T> {
    /// A square `kernel × kernel` convolution with PyTorch's default init
    /// (`U(−1/√fan_in, 1/√fan_in)`, `fan_in = C/groups·k²`), tracked.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        params: Conv2dParams,
        bias: bool,
        rng: &mut StdRng,
    ) -> Result<Self> {
        let g = params.groups;
        if in_channels == 0
            || out_channels == 0
            || kernel == 0
            || g == 0
            || !in_channels.is_multiple_of(g)
            || !out_channels.is_multiple_of(g)
        {
            return Err(Error::invalid(
                "Conv2d",
                format!(
                    "need positive sizes and channels divisible by groups: \
                     {in_channels} → {out_channels}, kernel {kernel}, groups {g}"
                ),
            ));
        }
        let dims = [out_channels, in_channels / g, kernel, kernel];
        let weight = init::default_weight(&dims, rng)?.requires_grad_();
        let bias = if bias {
            Some(init::default_bias(&dims, rng)?.requires_grad_())
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            params,
        })
    }

    /// A layer around given tensors, used as they are (tracked or not).
    pub fn from_parts(
        weight: Tensor<T>,
        bias: Option<Tensor<T>>,
        params: Conv2dParams,
    ) -> Result<Self> {
        if weight.rank() != 4 {
            return Err(Error::BadRank {
                op: "Conv2d",
                expected: "a weight of shape (OC, C/groups, KH, KW)",
                shape: weight.dims().to_vec(),
            });
        }
        if let Some(b) = &bias
            && b.dims() != [weight.dims()[0]]
        {
            return Err(Error::ShapeMismatch {
                op: "Conv2d (bias must be (OC))",
                lhs: weight.dims().to_vec(),
                rhs: b.dims().to_vec(),
            });
        }
        Ok(Conv2d {
            weight,
            bias,
            params,
        })
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl<T: Float> Module<T> for Conv2d<T> {
    fn forward(&mut self, x: &Tensor<T>, _mode: Mode) -> Result<Tensor<T>> {
        x.conv2d(&self.weight, self.bias.as_ref(), self.params)
    }

    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<T>)) {
        f(&join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }

    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, &'a mut Tensor<T>),
    ) {
        f(&join(prefix, "weight"), &mut self.weight);
        if let Some(b) = &mut self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
}
