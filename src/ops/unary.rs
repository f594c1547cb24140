//! Elementwise functions of one tensor: `y = f(x)`, backward `dx = dy · f'(x)`.

use crate::autograd::Op;
use crate::backend::cpu::simd;
use crate::error::Result;
use crate::tensor::{Float, Tensor};

/// An elementwise function, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp<T> {
    Neg,
    Exp,
    Log,
    Sqrt,
    Abs,
    Relu,
    LeakyRelu(T),
    Gelu,
    Tanh,
    Sigmoid,
    Softplus,
    PowScalar(T),
    AddScalar(T),
    MulScalar(T),
    Clamp(T, T),
}

/// √(2/π), the scale inside the tanh form of GELU.
const GELU_C: f64 = 0.797_884_560_802_865_4;
const GELU_A: f64 = 0.044_715;

#[inline(always)]
fn sigmoid<T: Float>(x: T) -> T {
    // Two branches so that exp never overflows.
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

impl<T: Float> UnaryOp<T> {
    pub(crate) fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Abs => "abs",
            UnaryOp::Relu => "relu",
            UnaryOp::LeakyRelu(_) => "leaky_relu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Softplus => "softplus",
            UnaryOp::PowScalar(_) => "powf",
            UnaryOp::AddScalar(_) => "add_scalar",
            UnaryOp::MulScalar(_) => "mul_scalar",
            UnaryOp::Clamp(..) => "clamp",
        }
    }

    #[inline(always)]
    fn forward(self, x: T) -> T {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Relu => {
                if x > T::ZERO {
                    x
                } else {
                    T::ZERO
                }
            }
            UnaryOp::LeakyRelu(slope) => {
                if x > T::ZERO {
                    x
                } else {
                    slope * x
                }
            }
            UnaryOp::Gelu => {
                let c = T::from_f64(GELU_C);
                let a = T::from_f64(GELU_A);
                let half = T::from_f64(0.5);
                half * x * (T::ONE + (c * (x + a * x * x * x)).tanh())
            }
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Sigmoid => sigmoid(x),
            // log(1 + eˣ) = max(x, 0) + log1p(e^{−|x|}): no overflow for large x.
            UnaryOp::Softplus => x.max(T::ZERO) + (-x.abs()).exp().ln_1p(),
            UnaryOp::PowScalar(e) => x.powf(e),
            UnaryOp::AddScalar(c) => x + c,
            UnaryOp::MulScalar(c) => x * c,
            UnaryOp::Clamp(lo, hi) => x.max(lo).min(hi),
        }
    }

    /// f'(x), given x and y = f(x).
    #[inline(always)]
    fn derivative(self, x: T, y: T) -> T {
        match self {
            UnaryOp::Neg => -T::ONE,
            UnaryOp::Exp => y,
            UnaryOp::Log => T::ONE / x,
            UnaryOp::Sqrt => T::from_f64(0.5) / y,
            // Sub-gradient 0 at the kink.
            UnaryOp::Abs => {
                if x > T::ZERO {
                    T::ONE
                } else if x < T::ZERO {
                    -T::ONE
                } else {
                    T::ZERO
                }
            }
            // Sub-gradient 0 at x = 0, as in PyTorch.
            UnaryOp::Relu => {
                if x > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
            UnaryOp::LeakyRelu(slope) => {
                if x > T::ZERO {
                    T::ONE
                } else {
                    slope
                }
            }
            UnaryOp::Gelu => {
                let c = T::from_f64(GELU_C);
                let a = T::from_f64(GELU_A);
                let half = T::from_f64(0.5);
                let t = (c * (x + a * x * x * x)).tanh();
                let three = T::from_f64(3.0);
                half * (T::ONE + t) + half * x * (T::ONE - t * t) * c * (T::ONE + three * a * x * x)
            }
            UnaryOp::Tanh => T::ONE - y * y,
            UnaryOp::Sigmoid => y * (T::ONE - y),
            UnaryOp::Softplus => sigmoid(x),
            UnaryOp::PowScalar(e) => e * x.powf(e - T::ONE),
            UnaryOp::AddScalar(_) => T::ONE,
            UnaryOp::MulScalar(c) => c,
            // The gradient passes at the bounds themselves (lo ≤ x ≤ hi), as in PyTorch.
            UnaryOp::Clamp(lo, hi) => {
                if x >= lo && x <= hi {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
        }
    }
}

/// Evaluates `$body` with `$k` bound to `$kind` rebuilt from a literal variant, so that once
/// `forward`/`derivative` are inlined their `match` folds to one arm and the element loop
/// vectorises. Matching a runtime `kind` inside the loop kept ReLU's loops scalar (15% of a
/// `cnn_step` step). The cheap ops get arms of their own; the transcendental ones, whose cost
/// is the function itself, share the generic arm.
macro_rules! with_constant_kind {
    ($kind:expr, |$k:ident| $body:expr) => {
        match $kind {
            UnaryOp::Relu => {
                let $k = UnaryOp::Relu;
                $body
            }
            UnaryOp::LeakyRelu(s) => {
                let $k = UnaryOp::LeakyRelu(s);
                $body
            }
            UnaryOp::Neg => {
                let $k = UnaryOp::Neg;
                $body
            }
            UnaryOp::AddScalar(c) => {
                let $k = UnaryOp::AddScalar(c);
                $body
            }
            UnaryOp::MulScalar(c) => {
                let $k = UnaryOp::MulScalar(c);
                $body
            }
            UnaryOp::Clamp(lo, hi) => {
                let $k = UnaryOp::Clamp(lo, hi);
                $body
            }
            other => {
                let $k = other;
                $body
            }
        }
    };
}

fn apply<T: Float>(x: &Tensor<T>, kind: UnaryOp<T>) -> Tensor<T> {
    #[cfg(feature = "cuda")]
    if x.is_cuda() {
        return crate::backend::cuda::ops::unary(kind, x);
    }
    let mut out = vec![T::ZERO; x.numel()];
    match kind {
        // f32: the vectorised polynomial exp (≤ 2 ulp, same special values); f64: `f64::exp`.
        UnaryOp::Exp => simd::exp(x.data(), &mut out),
        _ => with_constant_kind!(kind, |k| simd::map(x.data(), &mut out, move |v| k
            .forward(v))),
    }
    Tensor::from_op(
        out,
        x.shape().clone(),
        Op::Unary {
            kind,
            input: x.clone(),
        },
    )
}

pub(crate) fn backward<T: Float>(
    kind: UnaryOp<T>,
    input: &Tensor<T>,
    out: &Tensor<T>,
    grad: &Tensor<T>,
) -> Result<Tensor<T>> {
    let mut dx = vec![T::ZERO; input.numel()];
    with_constant_kind!(kind, |k| simd::zip3_map(
        input.data(),
        out.data(),
        grad.data(),
        &mut dx,
        move |x, y, g| g * k.derivative(x, y)
    ));
    Tensor::from_vec(dx, input.shape().clone())
}

impl<T: Float> Tensor<T> {
    /// `−x`.
    pub fn neg(&self) -> Self {
        apply(self, UnaryOp::Neg)
    }
    /// `eˣ`; derivative `eˣ`.
    pub fn exp(&self) -> Self {
        apply(self, UnaryOp::Exp)
    }
    /// Natural logarithm; derivative `1/x`. Domain `x > 0`.
    pub fn log(&self) -> Self {
        apply(self, UnaryOp::Log)
    }
    /// `√x`; derivative `1/(2√x)`. Domain `x > 0` for a finite gradient.
    pub fn sqrt(&self) -> Self {
        apply(self, UnaryOp::Sqrt)
    }
    /// `|x|`; derivative `sign(x)`, 0 at 0.
    pub fn abs(&self) -> Self {
        apply(self, UnaryOp::Abs)
    }
    /// `max(x, 0)`; derivative 1 for `x > 0`, else 0 (0 at the kink).
    pub fn relu(&self) -> Self {
        apply(self, UnaryOp::Relu)
    }
    /// `x` for `x > 0`, else `slope·x`; derivative 1 or `slope` (`slope` at 0).
    pub fn leaky_relu(&self, slope: f64) -> Self {
        apply(self, UnaryOp::LeakyRelu(T::from_f64(slope)))
    }
    /// GELU, tanh form: `½x(1 + tanh(√(2/π)(x + 0.044715x³)))` (PyTorch `approximate="tanh"`).
    pub fn gelu(&self) -> Self {
        apply(self, UnaryOp::Gelu)
    }
    /// `tanh x`; derivative `1 − tanh²x`.
    pub fn tanh(&self) -> Self {
        apply(self, UnaryOp::Tanh)
    }
    /// `1/(1 + e^{−x})`, computed without overflow; derivative `σ(1 − σ)`.
    pub fn sigmoid(&self) -> Self {
        apply(self, UnaryOp::Sigmoid)
    }
    /// `log(1 + eˣ)`, computed as `max(x,0) + log1p(e^{−|x|})`; derivative `σ(x)`.
    pub fn softplus(&self) -> Self {
        apply(self, UnaryOp::Softplus)
    }
    /// `x^e`; derivative `e·x^{e−1}`. For non-integer `e` the domain is `x > 0`.
    pub fn powf(&self, e: f64) -> Self {
        apply(self, UnaryOp::PowScalar(T::from_f64(e)))
    }
    /// `x²`.
    pub fn square(&self) -> Self {
        apply(self, UnaryOp::PowScalar(T::from_f64(2.0)))
    }
    /// `x + c`.
    pub fn add_scalar(&self, c: f64) -> Self {
        apply(self, UnaryOp::AddScalar(T::from_f64(c)))
    }
    /// `c·x`.
    pub fn mul_scalar(&self, c: f64) -> Self {
        apply(self, UnaryOp::MulScalar(T::from_f64(c)))
    }
    /// `x / c`.
    pub fn div_scalar(&self, c: f64) -> Self {
        apply(self, UnaryOp::MulScalar(T::from_f64(1.0 / c)))
    }
    /// `min(max(x, lo), hi)`; derivative 1 for `lo ≤ x ≤ hi` (bounds included), else 0.
    pub fn clamp(&self, lo: f64, hi: f64) -> Self {
        apply(self, UnaryOp::Clamp(T::from_f64(lo), T::from_f64(hi)))
    }
}
