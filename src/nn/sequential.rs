//! [`Sequential`]: boxed modules applied in order, their tensors named `layers.{i}.…` (the
//! names a PyTorch module with `self.layers = nn.Sequential(…)` gives its `state_dict`).

use super::{Mode, Module, join};
use crate::error::Result;
use crate::tensor::{Float, Tensor};

/// Modules applied one after another.
#[derive(Debug)]
pub struct Sequential<T: Float> {
    layers: Vec<Box<dyn Module<T>>>,
}

impl<T: Float> Default for Sequential<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Sequential<T> {
    pub fn new() -> Self {
        Sequential { layers: Vec::new() }
    }

    /// Appends a layer (builder style): `Sequential::new().with(a).with(b)`.
    pub fn with(mut self, layer: impl Module<T> + 'static) -> Self {
        self.push(layer);
        self
    }

    pub fn push(&mut self, layer: impl Module<T> + 'static) {
        self.layers.push(Box::new(layer));
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    pub fn layers(&self) -> &[Box<dyn Module<T>>] {
        &self.layers
    }

    pub fn layers_mut(&mut self) -> &mut [Box<dyn Module<T>>] {
        &mut self.layers
    }

    fn layer_prefix(prefix: &str, i: usize) -> String {
        join(prefix, &format!("layers.{i}"))
    }
}

impl<T: Float> Module<T> for Sequential<T> {
    /// The layers in order; a layer followed by a ReLU applies it itself when it can
    /// ([`Module::forward_relu`]), and the ReLU is then skipped.
    fn forward(&mut self, x: &Tensor<T>, mode: Mode) -> Result<Tensor<T>> {
        let mut h = x.clone();
        let mut i = 0;
        while i < self.layers.len() {
            let relu_next = self.layers.get(i + 1).is_some_and(|l| l.is_relu());
            if relu_next && let Some(fused) = self.layers[i].forward_relu(&h, mode) {
                h = fused?;
                i += 2;
            } else {
                h = self.layers[i].forward(&h, mode)?;
                i += 1;
            }
        }
        Ok(h)
    }

    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<T>)) {
        for (i, layer) in self.layers.iter().enumerate() {
            layer.visit_parameters(&Self::layer_prefix(prefix, i), f);
        }
    }

    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, &'a mut Tensor<T>),
    ) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_parameters_mut(&Self::layer_prefix(prefix, i), f);
        }
    }

    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<T>)) {
        for (i, layer) in self.layers.iter().enumerate() {
            layer.visit_buffers(&Self::layer_prefix(prefix, i), f);
        }
    }

    fn visit_buffers_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, &'a mut Tensor<T>),
    ) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_buffers_mut(&Self::layer_prefix(prefix, i), f);
        }
    }
}
