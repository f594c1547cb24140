//! The fully connected layer `y = x·Wᵀ + b`, with PyTorch's weight layout `(out, in)` so that a
//! saved `weight` loads unchanged into `torch.nn.Linear`.

use super::{Mode, Module, init, join};
use crate::autograd::Op;
use crate::backend::cpu::gemm::{MatRef, gemm};
use crate::error::{Error, Result};
use crate::tensor::{Float, Shape, Tensor};
use rand::rngs::StdRng;

/// `y = x·Wᵀ + b` over the last axis of `x`: `(…, in) → (…, out)`.
#[derive(Debug, Clone)]
pub struct Linear<T: Float> {
    /// `(out_features, in_features)`.
    pub weight: Tensor<T>,
    /// `(out_features)`.
    pub bias: Option<Tensor<T>>,
}

impl<T: Float> Linear<T> {
    /// A layer with PyTorch's default init (weight and bias `U(−1/√in, 1/√in)`), tracked.
    pub fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut StdRng,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::invalid(
                "Linear",
                format!("features must be positive, got {in_features} → {out_features}"),
            ));
        }
        let dims = [out_features, in_features];
        let weight = init::default_weight(&dims, rng)?.requires_grad_();
        let bias = if bias {
            Some(init::default_bias(&dims, rng)?.requires_grad_())
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// A layer around given tensors, used as they are (tracked or not): weight `(out, in)`,
    /// bias `(out)`.
    pub fn from_parts(weight: Tensor<T>, bias: Option<Tensor<T>>) -> Result<Self> {
        if weight.rank() != 2 {
            return Err(Error::BadRank {
                op: "Linear",
                expected: "a weight of shape (out, in)",
                shape: weight.dims().to_vec(),
            });
        }
        if let Some(b) = &bias
            && b.dims() != [weight.dims()[0]]
        {
            return Err(Error::ShapeMismatch {
                op: "Linear (bias must be (out))",
                lhs: weight.dims().to_vec(),
                rhs: b.dims().to_vec(),
            });
        }
        Ok(Linear { weight, bias })
    }

    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }
    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl<T: Float> Module<T> for Linear<T> {
    fn forward(&mut self, x: &Tensor<T>, _mode: Mode) -> Result<Tensor<T>> {
        if x.rank() < 2 || x.dims()[x.rank() - 1] != self.in_features() {
            return Err(Error::ShapeMismatch {
                op: "Linear (input (…, in) against weight (out, in))",
                lhs: x.dims().to_vec(),
                rhs: self.weight.dims().to_vec(),
            });
        }
        x.linear(&self.weight, self.bias.as_ref())
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

impl<T: Float> Tensor<T> {
    /// `x·Wᵀ + b` for `x` `(…, in)`, `W` `(out, in)`, `b` `(out)`: one primitive, so that `Wᵀ`
    /// is read through strides rather than copied, `b` is the GEMM's starting value rather than
    /// a second pass, and the backward writes `dW = dyᵀ·x` directly in the `(out, in)` layout
    /// (composed from `t()` and `matmul`, both transposes were copies: 14% of `mlp_step`).
    pub fn linear(&self, weight: &Tensor<T>, bias: Option<&Tensor<T>>) -> Result<Self> {
        let shape_error = |rhs: &Tensor<T>| Error::ShapeMismatch {
            op: "linear (input (…, in), weight (out, in), bias (out))",
            lhs: self.dims().to_vec(),
            rhs: rhs.dims().to_vec(),
        };
        if weight.rank() != 2 || self.rank() < 2 || self.dims()[self.rank() - 1] != weight.dims()[1]
        {
            return Err(shape_error(weight));
        }
        let (n, k) = (weight.dims()[0], weight.dims()[1]);
        if let Some(b) = bias
            && b.dims() != [n]
        {
            return Err(shape_error(b));
        }
        crate::backend::on_cuda!(
            "linear",
            [Some(self), Some(weight), bias]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
            |_dev| crate::backend::cuda::blas::linear(self, weight, bias)
        );
        let m: usize = self.dims()[..self.rank() - 1].iter().product();
        let mut out: Vec<T> = match bias {
            Some(b) => b.data().iter().copied().cycle().take(m * n).collect(),
            None => vec![T::ZERO; m * n],
        };
        if k > 0 {
            gemm(
                MatRef::new(self.data(), m, k),
                MatRef::new(weight.data(), n, k).t(),
                &mut out,
                true,
            );
        }
        let mut dims = self.dims().to_vec();
        *dims.last_mut().expect("rank ≥ 2") = n;
        Ok(Tensor::from_op(
            out,
            Shape::new(dims),
            Op::Linear {
                input: self.clone(),
                weight: weight.clone(),
                bias: bias.cloned(),
            },
        ))
    }
}
