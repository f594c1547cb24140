//! # Optimisers, learning-rate schedules and gradient clipping
//!
//! An [`Optimizer`] updates named parameters from a backward pass's gradients, keeping its
//! state (momentum, moments, step counts) keyed by parameter *name*, so that the state survives
//! a checkpoint round trip ([`Optimizer::state_tensors`], [`Optimizer::load_state_tensors`]).
//! Updates follow PyTorch's `torch.optim` exactly ([`Sgd`], [`Adam`] and AdamW), and SimCLR's
//! reference implementation for [`Lars`]. Parameters are updated in place when nothing else
//! shares their buffer ([`Tensor::data_mut`]), otherwise through [`Tensor::set_data`]; either
//! way they keep their identity, so the next backward pass finds them.
//!
//! ```
//! use contrastive::nn::{Activation, Mlp, Mode, Module};
//! use contrastive::optim::{Adam, Optimizer, clip_grad_norm};
//! use contrastive::{Result, Tensor};
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! # fn main() -> Result<()> {
//! let mut rng = StdRng::seed_from_u64(0);
//! let mut model = Mlp::new::<f32>(&[4, 16, 3], Activation::Relu, false, &mut rng)?;
//! let mut opt = Adam::new(1e-2);
//! let x = Tensor::randn([8, 4], &mut rng);
//! for _ in 0..5 {
//!     let loss = model.forward(&x, Mode::Train)?.cross_entropy(&[0, 1, 2, 0, 1, 2, 0, 1])?;
//!     let grads = loss.backward()?;
//!     let mut params = model.parameters_mut();
//!     let (clipped, _norm) = clip_grad_norm(&params, &grads, 1.0)?;
//!     opt.step(&mut params, &clipped)?;
//! }
//! # Ok(())
//! # }
//! ```

mod adam;
mod lars;
mod schedule;
mod sgd;
mod state;

pub use adam::Adam;
pub use lars::{Lars, exclude_bias_and_norm};
pub use schedule::{Constant, LinearWarmupCosine, LrSchedule};
pub use sgd::Sgd;

use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor, TensorId};
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// Where an optimiser finds a parameter's gradient: a backward pass's [`Gradients`], or the
/// [`ClippedGradients`] made from them.
pub trait GradientSource<T: Float> {
    /// The gradient of `param`, or `None` when the loss does not depend on it (the parameter
    /// is then left alone, as PyTorch skips parameters whose `.grad` is `None`).
    fn gradient(&self, param: &Tensor<T>) -> Option<&Tensor<T>>;
}

impl<T: Float> GradientSource<T> for Gradients<T> {
    fn gradient(&self, param: &Tensor<T>) -> Option<&Tensor<T>> {
        self.get(param)
    }
}

/// Updates parameters from gradients.
pub trait Optimizer<T: Float>: fmt::Debug + Send {
    /// One update of every parameter that has a gradient. Names must be unique: they key the
    /// state. Take the list from [`Module::parameters_mut`](crate::nn::Module::parameters_mut).
    fn step(
        &mut self,
        params: &mut [(String, &mut Tensor<T>)],
        grads: &dyn GradientSource<T>,
    ) -> Result<()>;

    fn lr(&self) -> f64;

    /// Sets the learning rate (a schedule calls this before each step).
    fn set_lr(&mut self, lr: f64);

    /// The state as named tensors (`{param}.{slot}`, `{param}.step`), sorted by name.
    fn state_tensors(&self) -> Vec<(String, Tensor<T>)>;

    /// Replaces the state with tensors from [`state_tensors`](Optimizer::state_tensors).
    fn load_state_tensors(&mut self, tensors: &[(String, Tensor<T>)]) -> Result<()>;
}

/// Gradients scaled by [`clip_grad_norm`].
#[derive(Debug, Clone)]
pub struct ClippedGradients<T: Float> {
    map: HashMap<TensorId, Tensor<T>>,
}

impl<T: Float> GradientSource<T> for ClippedGradients<T> {
    fn gradient(&self, param: &Tensor<T>) -> Option<&Tensor<T>> {
        self.map.get(&param.id())
    }
}

/// The global L2 norm `‖g‖ = √(Σ_params Σ g²)` of the gradients of `params` (those without a
/// gradient count as zero), summed in f64. The training loop checks it every step, so a
/// non-finite gradient stops training before the update instead of poisoning the weights.
pub fn global_grad_norm<T: Float>(
    params: &[(String, &mut Tensor<T>)],
    grads: &dyn GradientSource<T>,
) -> Result<f64> {
    let found: Vec<&Tensor<T>> = params
        .iter()
        .filter_map(|(_, p)| grads.gradient(p))
        .collect();
    // Host gradients summed here; GPU ones reduced on their device.
    let squares = found
        .iter()
        .filter(|g| !g.is_cuda())
        .flat_map(|g| g.data())
        .map(|v| v.to_f64() * v.to_f64())
        .sum::<f64>();
    #[cfg(feature = "cuda")]
    let squares = squares
        + crate::backend::cuda::optim::sum_of_squares(
            found.iter().copied().filter(|g| g.is_cuda()),
        )?;
    Ok(squares.sqrt())
}

/// Clips the gradients of `params` by their global L2 norm ([`global_grad_norm`]), as
/// `torch.nn.utils.clip_grad_norm_`: when `‖g‖ > max_norm` every gradient is multiplied by
/// `max_norm/(‖g‖ + 1e-6)`. Returns the (possibly) scaled gradients and `‖g‖` before clipping.
/// A non-finite norm is returned with the gradients unscaled, for the caller to act on.
pub fn clip_grad_norm<T: Float>(
    params: &[(String, &mut Tensor<T>)],
    grads: &dyn GradientSource<T>,
    max_norm: f64,
) -> Result<(ClippedGradients<T>, f64)> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(Error::invalid(
            "clip_grad_norm",
            format!("max_norm {max_norm} must be finite and positive"),
        ));
    }
    let total = global_grad_norm(params, grads)?;
    let found: Vec<(TensorId, &Tensor<T>)> = params
        .iter()
        .filter_map(|(_, p)| grads.gradient(p).map(|g| (p.id(), g)))
        .collect();
    let scale = max_norm / (total + 1e-6);
    let clip = total.is_finite() && scale < 1.0;
    let map = found
        .into_iter()
        .map(|(id, g)| (id, if clip { g.mul_scalar(scale) } else { g.clone() }))
        .collect();
    Ok((ClippedGradients { map }, total))
}

/// Runs `update(name, param, grad)` for every parameter with a gradient, after checking that
/// names are unique and gradients have their parameter's shape.
pub(crate) fn for_each_param<T: Float>(
    op: &'static str,
    params: &mut [(String, &mut Tensor<T>)],
    grads: &dyn GradientSource<T>,
    mut update: impl FnMut(&str, &mut Tensor<T>, &[T]) -> Result<()>,
) -> Result<()> {
    check_unique_names(op, params)?;
    for (name, p) in params.iter_mut() {
        // Parameters on a GPU are [`for_each_gpu_param`]'s.
        #[cfg(feature = "cuda")]
        if p.is_cuda() {
            continue;
        }
        let Some(g) = grads.gradient(p) else {
            continue;
        };
        if g.dims() != p.dims() {
            return Err(Error::ShapeMismatch {
                op,
                lhs: p.dims().to_vec(),
                rhs: g.dims().to_vec(),
            });
        }
        update(name, p, g.data())?;
    }
    Ok(())
}

fn check_unique_names<T: Float>(
    op: &'static str,
    params: &[(String, &mut Tensor<T>)],
) -> Result<()> {
    let mut names = BTreeSet::new();
    for (name, _) in params.iter() {
        if !names.insert(name.as_str()) {
            return Err(Error::invalid(
                op,
                format!("parameter name `{name}` appears twice"),
            ));
        }
    }
    Ok(())
}

/// [`for_each_param`] for the parameters on a GPU: `update(name, param, grad)` with the
/// gradient as a tensor on the parameter's device, for the fused GPU updates
/// (`backend::cuda::optim`). Returns at once when no parameter is on a GPU.
#[cfg(feature = "cuda")]
pub(crate) fn for_each_gpu_param<T: Float>(
    op: &'static str,
    params: &mut [(String, &mut Tensor<T>)],
    grads: &dyn GradientSource<T>,
    mut update: impl FnMut(&str, &mut Tensor<T>, &Tensor<T>) -> Result<()>,
) -> Result<()> {
    if !params.iter().any(|(_, p)| p.is_cuda()) {
        return Ok(());
    }
    check_unique_names(op, params)?;
    for (name, p) in params.iter_mut() {
        if !p.is_cuda() {
            continue;
        }
        let Some(g) = grads.gradient(p) else {
            continue;
        };
        if g.dims() != p.dims() {
            return Err(Error::ShapeMismatch {
                op,
                lhs: p.dims().to_vec(),
                rhs: g.dims().to_vec(),
            });
        }
        if g.device() != p.device() {
            return Err(Error::invalid(
                op,
                format!(
                    "the gradient of `{name}` is on {}, the parameter on {}",
                    g.device(),
                    p.device()
                ),
            ));
        }
        update(name, p, g)?;
    }
    Ok(())
}

/// Applies `f` to the parameter's values: in place when the buffer is unshared, otherwise on a
/// copy that replaces the data (keeping the parameter's identity).
pub(crate) fn update_values<T: Float>(p: &mut Tensor<T>, f: impl FnOnce(&mut [T])) -> Result<()> {
    if let Some(values) = p.data_mut() {
        f(values);
        return Ok(());
    }
    let mut values = p.to_vec();
    f(&mut values);
    p.set_data(values)
}

/// Checks that a hyper-parameter is finite and at least `min`.
pub(crate) fn check_hyper(op: &'static str, name: &str, value: f64, min: f64) -> Result<()> {
    if value.is_finite() && value >= min {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("{name} = {value} must be finite and ≥ {min}"),
        ))
    }
}

/// The L2 norm of a slice, accumulated in `f64`.
pub(crate) fn l2_norm<T: Float>(values: &[T]) -> f64 {
    values
        .iter()
        .map(|v| v.to_f64() * v.to_f64())
        .sum::<f64>()
        .sqrt()
}
