//! Parameter-free layers: activations, dropout, flattening and pooling, each a thin [`Module`]
//! around one tensor op so that it can sit in a [`Sequential`](super::Sequential).

use super::{Mode, Module};
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// `max(x, 0)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Relu;

/// GELU, `x·Φ(x)` (the engine's [`Tensor::gelu`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gelu;

/// `tanh(x)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tanh;

/// `1/(1 + e^{−x})`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sigmoid;

/// `x` for `x ≥ 0`, `slope·x` otherwise.
#[derive(Debug, Clone, Copy)]
pub struct LeakyRelu {
    pub slope: f64,
}

impl Default for LeakyRelu {
    /// PyTorch's default slope, 0.01.
    fn default() -> Self {
        LeakyRelu { slope: 0.01 }
    }
}

/// The input unchanged (a placeholder head, or a no-op stage).
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

/// `(N, d₁, d₂, …) → (N, d₁·d₂·…)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flatten;

/// `(N, C, H, W) → (N, C)`, the mean over each feature map.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalAvgPool;

impl<T: Float> Module<T> for Relu {
    fn forward(&mut self, x: &Tensor<T>, _mode: Mode) -> Result<Tensor<T>> {
        Ok(x.relu())
    }

    fn is_relu(&self) -> bool {
        true
    }
}

impl<T: Float> Module<T> for Gelu {
    fn forward(&mut self, x: &Tensor<T>, _mode: Mode) -> Result<Tensor<T>> {
        Ok(x.gelu())
    }
}

impl<T: Float> Module<T> for Tanh {
    fn forward(&mut self, x: &Tensor<T>, _mode: Mode) -> Result<Tensor<T>> {
        Ok(x.tanh())
    }
}

impl<T: Float> Module<T> for Sigmoid {
    fn forward(&mut self, x: &Tensor<T>, _mode: Mode) -> Result<Tensor<T>> {
        Ok(x.sigmoid())
    }
}

impl<T: Float> Module<T> for LeakyRelu {
    fn forward(&mut self, x: &Tensor<T>, _mode: Mode) -> Result<Tensor<T>> {
        Ok(x.leaky_relu(self.slope))
    }
}

impl<T: Float> Module<T> for Identity {
    fn forward(&mut self, x: &Tensor<T>, _mode: Mode) -> Result<Tensor<T>> {
        Ok(x.clone())
    }
}

impl<T: Float> Module<T> for Flatten {
    fn forward(&mut self, x: &Tensor<T>, _mode: Mode) -> Result<Tensor<T>> {
        if x.rank() < 2 {
            return Err(Error::BadRank {
                op: "Flatten",
                expected: "a batch (N, …) of rank ≥ 2",
                shape: x.dims().to_vec(),
            });
        }
        x.flatten_from(1)
    }
}

impl<T: Float> Module<T> for GlobalAvgPool {
    fn forward(&mut self, x: &Tensor<T>, _mode: Mode) -> Result<Tensor<T>> {
        x.global_avg_pool2d()
    }
}

/// Max over `kernel × kernel` windows moved by `stride`, with implicit −∞ `padding`.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl MaxPool2d {
    /// `torch.nn.MaxPool2d(kernel)`: stride equal to the kernel, no padding.
    pub fn new(kernel: usize) -> Self {
        MaxPool2d {
            kernel,
            stride: kernel,
            padding: 0,
        }
    }
}

impl<T: Float> Module<T> for MaxPool2d {
    fn forward(&mut self, x: &Tensor<T>, _mode: Mode) -> Result<Tensor<T>> {
        x.max_pool2d(self.kernel, self.stride, self.padding)
    }
}

/// Inverted dropout with its own generator, seeded at construction, so that a model's masks
/// are reproducible and independent of any other random stream (data order, augmentation).
#[derive(Debug)]
pub struct Dropout {
    p: f64,
    rng: StdRng,
}

impl Dropout {
    /// Zeroes each element with probability `p` in training (scaling the rest by `1/(1−p)`).
    pub fn new(p: f64, seed: u64) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(
                "Dropout",
                format!("probability {p} is outside [0, 1]"),
            ));
        }
        Ok(Dropout {
            p,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    pub fn p(&self) -> f64 {
        self.p
    }
}

impl<T: Float> Module<T> for Dropout {
    fn forward(&mut self, x: &Tensor<T>, mode: Mode) -> Result<Tensor<T>> {
        x.dropout(self.p, mode.is_train(), &mut self.rng)
    }
}
