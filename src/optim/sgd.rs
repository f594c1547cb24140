//! Stochastic gradient descent with momentum, Nesterov momentum, dampening and (L2) weight
//! decay, exactly as `torch.optim.SGD`:
//!
//! ```text
//! d = g + λ·p
//! b = d                      (first step)
//! b = μ·b + (1 − τ)·d        (later steps)
//! d = d + μ·b   (Nesterov)   or   d = b
//! p = p − lr·d
//! ```
//! (with μ = 0 there is no buffer and `d` is applied directly).

use super::state::State;
use super::{GradientSource, Optimizer, check_hyper, for_each_param, update_values};
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};

/// SGD with PyTorch's semantics; hyper-parameters are public fields (builders below).
#[derive(Debug, Clone)]
pub struct Sgd<T: Float> {
    pub lr: f64,
    /// μ.
    pub momentum: f64,
    /// τ, the fraction of the new gradient held back from the buffer.
    pub dampening: f64,
    pub nesterov: bool,
    /// λ, added to the gradient as `λ·p`.
    pub weight_decay: f64,
    state: State<T>,
}

impl<T: Float> Sgd<T> {
    /// Plain SGD: no momentum, no weight decay.
    pub fn new(lr: f64) -> Self {
        Sgd {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            state: State::new(),
        }
    }
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    pub fn with_nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }
    pub fn with_dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    fn slots(&self) -> &'static [&'static str] {
        if self.momentum != 0.0 {
            &["momentum_buffer"]
        } else {
            &[]
        }
    }

    fn validate(&self) -> Result<()> {
        check_hyper("Sgd", "lr", self.lr, 0.0)?;
        check_hyper("Sgd", "momentum", self.momentum, 0.0)?;
        check_hyper("Sgd", "dampening", self.dampening, 0.0)?;
        check_hyper("Sgd", "weight_decay", self.weight_decay, 0.0)?;
        if self.nesterov && (self.momentum == 0.0 || self.dampening != 0.0) {
            return Err(Error::invalid(
                "Sgd",
                "Nesterov momentum needs momentum > 0 and zero dampening",
            ));
        }
        Ok(())
    }
}

impl<T: Float> Optimizer<T> for Sgd<T> {
    fn step(
        &mut self,
        params: &mut [(String, &mut Tensor<T>)],
        grads: &dyn GradientSource<T>,
    ) -> Result<()> {
        self.validate()?;
        let lr = T::from_f64(self.lr);
        let mu = T::from_f64(self.momentum);
        let keep = T::from_f64(1.0 - self.dampening);
        let wd = T::from_f64(self.weight_decay);
        let (nesterov, slots) = (self.nesterov, self.slots().len());
        let state = &mut self.state;
        #[cfg(feature = "cuda")]
        super::for_each_gpu_param("Sgd", params, grads, |name, p, g| {
            let entry = state.device_entry("Sgd", name, p, slots)?;
            let first = entry.step == 0;
            entry.step += 1;
            let h = crate::backend::cuda::optim::SgdStep {
                lr,
                mu,
                keep,
                wd,
                first,
                nesterov,
            };
            crate::backend::cuda::optim::sgd(p, g, entry.device.first_mut(), &h)
        })?;
        for_each_param("Sgd", params, grads, |name, p, g| {
            let entry = state.entry("Sgd", name, p.dims(), slots)?;
            let first = entry.step == 0;
            entry.step += 1;
            let buf = entry.bufs.first_mut();
            // One branch-free loop per case (the branches hoisted out), so each vectorises;
            // the arithmetic per element is unchanged.
            update_values(p, |w| match buf {
                None => w
                    .iter_mut()
                    .zip(g)
                    .for_each(|(w, &g)| *w -= lr * (g + wd * *w)),
                Some(b) => {
                    let items = w.iter_mut().zip(g).zip(b.iter_mut());
                    match (first, nesterov) {
                        (true, false) => items.for_each(|((w, &g), b)| {
                            *b = g + wd * *w;
                            *w -= lr * *b;
                        }),
                        (false, false) => items.for_each(|((w, &g), b)| {
                            *b = mu * *b + keep * (g + wd * *w);
                            *w -= lr * *b;
                        }),
                        (true, true) => items.for_each(|((w, &g), b)| {
                            let d = g + wd * *w;
                            *b = d;
                            *w -= lr * (d + mu * *b);
                        }),
                        (false, true) => items.for_each(|((w, &g), b)| {
                            let d = g + wd * *w;
                            *b = mu * *b + keep * d;
                            *w -= lr * (d + mu * *b);
                        }),
                    }
                }
            })
        })
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn state_tensors(&self) -> Vec<(String, Tensor<T>)> {
        self.state.export(self.slots())
    }

    fn load_state_tensors(&mut self, tensors: &[(String, Tensor<T>)]) -> Result<()> {
        let slots = self.slots();
        self.state.import("Sgd", slots, tensors)
    }
}
