//! # Neural-network layers
//!
//! Layers are structs that own their parameters (tracked leaf [`Tensor`]s) and implement
//! [`Module`]: a `forward` pass in a [`Mode`] (training or evaluation) and visitors that name
//! every parameter and buffer, so that optimisers key their state by name and checkpoints are
//! written in the [safetensors](https://github.com/huggingface/safetensors) format with
//! PyTorch-style names (`encoder.layers.0.weight`).
//!
//! - Layers: [`Linear`], [`Conv2d`], [`BatchNorm`] (1-d and 2-d, with running statistics),
//!   [`Relu`], [`Gelu`], [`Tanh`], [`Sigmoid`], [`LeakyRelu`], [`Dropout`] (owns a seeded
//!   generator), [`Flatten`], [`GlobalAvgPool`], [`MaxPool2d`], [`Identity`].
//! - Composition: [`Sequential`] (children named `layers.0`, `layers.1`, …) and the builders
//!   [`Mlp`], [`ConvEncoder`] (conv–BN–ReLU–pool blocks, or a small ResNet of [`ResidualBlock`]s),
//!   [`ProjectionHead`]; [`EncoderHead`] pairs an encoder with a projection head.
//! - Initialisation ([`init`]): PyTorch's defaults, from an explicit seeded generator.
//! - Persistence: [`save_safetensors`], [`load_safetensors`], [`Module::load_state`].
//!
//! Parameters are created with `requires_grad_()`, so a forward pass outside
//! [`no_grad`](crate::no_grad) records the graph and `loss.backward()` returns their gradients;
//! an optimiser then updates them in place (see [`crate::optim`]).
//!
//! ```
//! use contrastive::nn::{Activation, Mlp, Mode, Module};
//! use contrastive::{Result, Tensor};
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! # fn main() -> Result<()> {
//! let mut rng = StdRng::seed_from_u64(0);
//! let mut mlp = Mlp::new::<f32>(&[4, 8, 2], Activation::Relu, false, &mut rng)?;
//! let y = mlp.forward(&Tensor::randn([3, 4], &mut rng), Mode::Train)?;
//! assert_eq!(y.dims(), &[3, 2]);
//! let names: Vec<String> = mlp.named_parameters().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]);
//! # Ok(())
//! # }
//! ```

mod conv;
pub mod init;
pub(crate) mod json;
mod layers;
mod linear;
mod models;
mod norm;
mod safetensors;
mod sequential;
mod state;

pub use conv::Conv2d;
pub use layers::{
    Dropout, Flatten, Gelu, GlobalAvgPool, Identity, LeakyRelu, MaxPool2d, Relu, Sigmoid, Tanh,
};
pub use linear::Linear;
pub use models::{Activation, ConvEncoder, EncoderHead, Mlp, ProjectionHead, ResidualBlock};
pub use norm::BatchNorm;
pub use safetensors::{Metadata, NamedTensors, load_safetensors, save_safetensors, write_atomic};
pub use sequential::Sequential;

use crate::error::Result;
use crate::tensor::{Float, Tensor};
use std::fmt;

/// Whether a forward pass trains (batch statistics, dropout on) or evaluates (running
/// statistics, dropout off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Train,
    Eval,
}

impl Mode {
    pub fn is_train(self) -> bool {
        self == Mode::Train
    }
}

/// The name of child `name` under `prefix`: `join("layers.0", "weight") == "layers.0.weight"`,
/// and a top-level name has no leading dot.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A layer or a model: a forward pass and named parameters.
///
/// `forward` takes `&mut self` because batch norm updates its running statistics and dropout
/// advances its generator. The visitors report each tensor under its full dotted name (the
/// given `prefix` joined with the layer's own names); *parameters* are what an optimiser
/// updates, *buffers* (running mean and variance) are state that is saved and loaded but not
/// trained. Both visitors default to "nothing", which is right for parameter-free layers.
pub trait Module<T: Float>: fmt::Debug + Send {
    fn forward(&mut self, x: &Tensor<T>, mode: Mode) -> Result<Tensor<T>>;

    fn visit_parameters(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &Tensor<T>)) {}

    /// The mutable twin of [`visit_parameters`](Module::visit_parameters). The borrows live as
    /// long as `self`'s, so they can be collected ([`parameters_mut`](Module::parameters_mut)).
    fn visit_parameters_mut<'a>(
        &'a mut self,
        _prefix: &str,
        _f: &mut dyn FnMut(&str, &'a mut Tensor<T>),
    ) {
    }

    fn visit_buffers(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &Tensor<T>)) {}

    fn visit_buffers_mut<'a>(
        &'a mut self,
        _prefix: &str,
        _f: &mut dyn FnMut(&str, &'a mut Tensor<T>),
    ) {
    }

    /// Whether this layer is a plain ReLU, which the layer before it may apply in its own pass
    /// ([`forward_relu`](Module::forward_relu)).
    fn is_relu(&self) -> bool {
        false
    }

    /// `relu(forward(x))` computed in one pass, for layers that can (batch norm: the fused
    /// [`Tensor::batch_norm_relu`]); `None` for the others. [`Sequential`] calls it for a layer
    /// followed by a ReLU: the same values and gradients, one pass over the activations less.
    fn forward_relu(&mut self, _x: &Tensor<T>, _mode: Mode) -> Option<Result<Tensor<T>>> {
        None
    }

    /// Moves every parameter and buffer to `device`, keeping each tensor's identity (so
    /// optimiser state and gradients stay keyed to it). Optimisers then update the parameters
    /// where they are.
    fn to_device(&mut self, device: &crate::tensor::Device) -> Result<()> {
        let mut first_error = None;
        let mut mv = |_: &str, t: &mut Tensor<T>| {
            if first_error.is_none()
                && let Err(e) = t.to_device_in_place(device)
            {
                first_error = Some(e);
            }
        };
        self.visit_parameters_mut("", &mut mv);
        self.visit_buffers_mut("", &mut mv);
        first_error.map_or(Ok(()), Err)
    }

    /// Every parameter with its name, in visiting order (cheap clones sharing the data).
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        let mut out = Vec::new();
        self.visit_parameters("", &mut |name, t| out.push((name.to_string(), t.clone())));
        out
    }

    /// Every parameter, mutably, with its name: what [`Optimizer::step`](crate::optim::Optimizer::step) takes.
    fn parameters_mut(&mut self) -> Vec<(String, &mut Tensor<T>)> {
        let mut out = Vec::new();
        self.visit_parameters_mut("", &mut |name, t| out.push((name.to_string(), t)));
        out
    }

    fn named_buffers(&self) -> Vec<(String, Tensor<T>)> {
        let mut out = Vec::new();
        self.visit_buffers("", &mut |name, t| out.push((name.to_string(), t.clone())));
        out
    }

    /// The number of trainable scalars.
    fn parameter_count(&self) -> usize {
        let mut n = 0;
        self.visit_parameters("", &mut |_, t| n += t.numel());
        n
    }

    /// Parameters and buffers, sorted by name: what a checkpoint saves.
    fn state_tensors(&self) -> Vec<(String, Tensor<T>)> {
        let mut out = self.named_parameters();
        out.extend(self.named_buffers());
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Replaces every parameter and buffer with the tensor of the same name. Fails, changing
    /// nothing, when a tensor is missing, unexpected, duplicated or of the wrong shape (the
    /// error names each). Parameters keep their identity, so optimiser state stays attached.
    fn load_state(&mut self, tensors: &[(String, Tensor<T>)]) -> Result<()> {
        state::load_state(self, tensors)
    }
}

impl<T: Float, M: Module<T> + ?Sized> Module<T> for Box<M> {
    fn forward(&mut self, x: &Tensor<T>, mode: Mode) -> Result<Tensor<T>> {
        (**self).forward(x, mode)
    }
    fn is_relu(&self) -> bool {
        (**self).is_relu()
    }
    fn forward_relu(&mut self, x: &Tensor<T>, mode: Mode) -> Option<Result<Tensor<T>>> {
        (**self).forward_relu(x, mode)
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<T>)) {
        (**self).visit_parameters(prefix, f)
    }
    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, &'a mut Tensor<T>),
    ) {
        (**self).visit_parameters_mut(prefix, f)
    }
    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<T>)) {
        (**self).visit_buffers(prefix, f)
    }
    fn visit_buffers_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, &'a mut Tensor<T>),
    ) {
        (**self).visit_buffers_mut(prefix, f)
    }
}
