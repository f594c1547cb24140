//! Parameter initialisation, following `torch.nn.init` and the default `reset_parameters` of
//! `torch.nn.Linear` and `torch.nn.Conv2d`, drawing from an explicit seeded generator (so a run
//! is reproducible; the values differ from PyTorch's, whose generator is another).
//!
//! Fans are PyTorch's: for a weight `(out, in, k…)`, `fan_in = in·Πk` and `fan_out = out·Πk`.
//! The default weight init is Kaiming-uniform with `a = √5`, i.e. `U(−1/√fan_in, 1/√fan_in)`
//! (gain `√(2/(1+a²)) = √(1/3)`, bound `gain·√(3/fan_in)`); the default bias is
//! `U(−1/√fan_in, 1/√fan_in)` with the weight's `fan_in`.

use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use rand::rngs::StdRng;

/// `(fan_in, fan_out)` of a weight of shape `dims` (rank ≥ 2), as
/// `torch.nn.init._calculate_fan_in_and_fan_out`.
pub fn fans(dims: &[usize]) -> Result<(usize, usize)> {
    if dims.len() < 2 {
        return Err(Error::BadRank {
            op: "init::fans",
            expected: "a weight of rank ≥ 2 (out, in, kernel…)",
            shape: dims.to_vec(),
        });
    }
    let receptive: usize = dims[2..].iter().product();
    Ok((dims[1] * receptive, dims[0] * receptive))
}

/// Entries uniform in `[−bound, bound)`; all zeros when `bound` is 0.
pub fn uniform<T: Float>(dims: &[usize], bound: f64, rng: &mut StdRng) -> Result<Tensor<T>> {
    if !(bound.is_finite() && bound >= 0.0) {
        return Err(Error::invalid(
            "init::uniform",
            format!("bound {bound} must be finite and ≥ 0"),
        ));
    }
    if bound == 0.0 {
        return Ok(Tensor::zeros(dims));
    }
    Tensor::rand_uniform(dims, -bound, bound, rng)
}

/// The gain of `leaky_relu` with negative slope `a` (`a = 0` is ReLU): `√(2/(1+a²))`.
pub fn leaky_relu_gain(a: f64) -> f64 {
    (2.0 / (1.0 + a * a)).sqrt()
}

fn fan_in_of(op: &'static str, dims: &[usize]) -> Result<f64> {
    let (fan_in, _) = fans(dims)?;
    if fan_in == 0 {
        return Err(Error::invalid(op, format!("weight {dims:?} has fan_in 0")));
    }
    Ok(fan_in as f64)
}

/// Kaiming (He) uniform, fan-in mode: `U(−b, b)` with `b = gain(a)·√(3/fan_in)`.
pub fn kaiming_uniform<T: Float>(dims: &[usize], a: f64, rng: &mut StdRng) -> Result<Tensor<T>> {
    let fan_in = fan_in_of("init::kaiming_uniform", dims)?;
    uniform(dims, leaky_relu_gain(a) * (3.0 / fan_in).sqrt(), rng)
}

/// Kaiming (He) normal, fan-in mode: `N(0, σ²)` with `σ = gain(a)/√fan_in` (`a = 0` for ReLU).
pub fn kaiming_normal<T: Float>(dims: &[usize], a: f64, rng: &mut StdRng) -> Result<Tensor<T>> {
    let fan_in = fan_in_of("init::kaiming_normal", dims)?;
    Ok(Tensor::randn(dims, rng).mul_scalar(leaky_relu_gain(a) / fan_in.sqrt()))
}

/// Xavier (Glorot) uniform: `U(−b, b)` with `b = gain·√(6/(fan_in + fan_out))`.
pub fn xavier_uniform<T: Float>(dims: &[usize], gain: f64, rng: &mut StdRng) -> Result<Tensor<T>> {
    let (fan_in, fan_out) = fans(dims)?;
    if fan_in + fan_out == 0 {
        return Err(Error::invalid(
            "init::xavier_uniform",
            format!("weight {dims:?} has no fan"),
        ));
    }
    uniform(dims, gain * (6.0 / (fan_in + fan_out) as f64).sqrt(), rng)
}

/// PyTorch's default weight for `Linear` and `Conv2d`: Kaiming-uniform with `a = √5`, which is
/// `U(−1/√fan_in, 1/√fan_in)`.
pub fn default_weight<T: Float>(dims: &[usize], rng: &mut StdRng) -> Result<Tensor<T>> {
    kaiming_uniform(dims, 5f64.sqrt(), rng)
}

/// PyTorch's default bias of a layer whose weight has shape `weight_dims`:
/// `U(−1/√fan_in, 1/√fan_in)`, of length `weight_dims[0]`.
pub fn default_bias<T: Float>(weight_dims: &[usize], rng: &mut StdRng) -> Result<Tensor<T>> {
    let fan_in = fan_in_of("init::default_bias", weight_dims)?;
    uniform(&weight_dims[..1], 1.0 / fan_in.sqrt(), rng)
}
