//! Adam and AdamW, exactly as `torch.optim.Adam` / `torch.optim.AdamW` (without amsgrad):
//!
//! ```text
//! Adam:  g = g + λ·p                 AdamW:  p = p·(1 − lr·λ)
//! t = t + 1
//! m = β₁·m + (1 − β₁)·g
//! v = β₂·v + (1 − β₂)·g²
//! p = p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//! with a step count `t` per parameter.

use super::state::State;
use super::{GradientSource, Optimizer, check_hyper, for_each_param, update_values};
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};

const SLOTS: &[&str] = &["exp_avg", "exp_avg_sq"];

/// Adam (L2 weight decay added to the gradient) or AdamW (decoupled weight decay).
#[derive(Debug, Clone)]
pub struct Adam<T: Float> {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// λ.
    pub weight_decay: f64,
    /// AdamW: decay the weights directly (`p·(1 − lr·λ)`) instead of adding `λ·p` to `g`.
    pub decoupled: bool,
    state: State<T>,
}

impl<T: Float> Adam<T> {
    /// `torch.optim.Adam` defaults: β = (0.9, 0.999), ε = 1e-8, no weight decay.
    pub fn new(lr: f64) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            state: State::new(),
        }
    }

    /// `torch.optim.AdamW` defaults: as Adam, with decoupled weight decay λ = 0.01.
    pub fn adamw(lr: f64) -> Self {
        Adam {
            weight_decay: 0.01,
            decoupled: true,
            ..Self::new(lr)
        }
    }

    pub fn with_betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    fn op(&self) -> &'static str {
        if self.decoupled { "AdamW" } else { "Adam" }
    }

    fn validate(&self) -> Result<()> {
        let op = self.op();
        check_hyper(op, "lr", self.lr, 0.0)?;
        check_hyper(op, "eps", self.eps, 0.0)?;
        check_hyper(op, "weight_decay", self.weight_decay, 0.0)?;
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::invalid(
                    op,
                    format!("{name} = {b} must lie in [0, 1)"),
                ));
            }
        }
        Ok(())
    }
}

impl<T: Float> Optimizer<T> for Adam<T> {
    fn step(
        &mut self,
        params: &mut [(String, &mut Tensor<T>)],
        grads: &dyn GradientSource<T>,
    ) -> Result<()> {
        self.validate()?;
        let op = self.op();
        let (lr, b1, b2, eps, wd) = (self.lr, self.beta1, self.beta2, self.eps, self.weight_decay);
        let decoupled = self.decoupled;
        let state = &mut self.state;
        #[cfg(feature = "cuda")]
        super::for_each_gpu_param(op, params, grads, |name, p, g| {
            let entry = state.device_entry(op, name, p, SLOTS.len())?;
            entry.step += 1;
            let t = entry.step as f64;
            // The CPU's values, computed the same way.
            let h = crate::backend::cuda::optim::AdamStep {
                b1: T::from_f64(b1),
                b2: T::from_f64(b2),
                step_size: T::from_f64(lr / (1.0 - b1.powf(t))),
                sqrt_bc2: T::from_f64((1.0 - b2.powf(t)).sqrt()),
                eps: T::from_f64(eps),
                l2: T::from_f64(wd),
                decay: T::from_f64(1.0 - lr * wd),
                decoupled,
            };
            let [m, v] = entry.device.as_mut_slice() else {
                return Err(Error::invalid(op, "internal: Adam keeps two buffers"));
            };
            crate::backend::cuda::optim::adam(p, g, m, v, &h)
        })?;
        for_each_param(op, params, grads, |name, p, g| {
            let entry = state.entry(op, name, p.dims(), SLOTS.len())?;
            entry.step += 1;
            let t = entry.step as f64;
            // Bias corrections in f64, as PyTorch computes them as Python floats.
            let step_size = T::from_f64(lr / (1.0 - b1.powf(t)));
            let sqrt_bc2 = T::from_f64((1.0 - b2.powf(t)).sqrt());
            let decay = T::from_f64(1.0 - lr * wd);
            let (l2, eps) = (T::from_f64(wd), T::from_f64(eps));
            let (b1, b2) = (T::from_f64(b1), T::from_f64(b2));
            let [m, v] = entry.bufs.as_mut_slice() else {
                return Err(Error::invalid(op, "internal: Adam keeps two buffers"));
            };
            update_values(p, |w| {
                for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let g = if decoupled {
                        *w *= decay;
                        g
                    } else {
                        g + l2 * *w
                    };
                    *m = b1 * *m + (T::ONE - b1) * g;
                    *v = b2 * *v + (T::ONE - b2) * g * g;
                    *w -= step_size * (*m / (v.sqrt() / sqrt_bc2 + eps));
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
        self.state.export(SLOTS)
    }

    fn load_state_tensors(&mut self, tensors: &[(String, Tensor<T>)]) -> Result<()> {
        let op = self.op();
        self.state.import(op, SLOTS, tensors)
    }
}
