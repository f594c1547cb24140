//! LARS (You et al., 2017) as in SimCLR's reference implementation (`lars_optimizer.py`, with
//! classic momentum): a per-layer trust ratio scales the learning rate so that every layer moves
//! by about the same fraction of its norm, which keeps large-batch training stable.
//!
//! ```text
//! g = g + λ·p                                  (unless excluded)
//! r = η·‖p‖/‖g‖ if ‖p‖ > 0 and ‖g‖ > 0, else 1  (unless excluded: then r = 1)
//! v = μ·v + lr·r·g                             (v starts at 0)
//! p = p − (μ·v + lr·r·g)   (Nesterov)   or   p = p − v
//! ```
//! Excluded parameters (by default biases and batch-norm γ/β, see [`exclude_bias_and_norm`])
//! get neither weight decay nor adaptation, as SimCLR excludes `bias` and `batch_normalization`.

use super::state::State;
use super::{GradientSource, Optimizer, check_hyper, for_each_param, l2_norm, update_values};
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};

const SLOTS: &[&str] = &["momentum"];

/// The default exclusion filter: parameters whose name ends in `bias`, and every parameter of
/// rank ≤ 1 — which covers biases and batch-norm γ (`weight`) and β, whose names do not say
/// "batch norm" in a [`Sequential`](crate::nn::Sequential).
pub fn exclude_bias_and_norm(name: &str, dims: &[usize]) -> bool {
    name.ends_with("bias") || dims.len() <= 1
}

/// LARS with SimCLR's semantics; hyper-parameters are public fields.
#[derive(Debug, Clone)]
pub struct Lars<T: Float> {
    pub lr: f64,
    /// μ (SimCLR: 0.9).
    pub momentum: f64,
    /// λ (SimCLR: 1e-6).
    pub weight_decay: f64,
    /// η, the trust coefficient (SimCLR: 0.001).
    pub trust_coefficient: f64,
    pub nesterov: bool,
    /// `exclude(name, shape)`: true for parameters that get no weight decay and no adaptation.
    pub exclude: fn(&str, &[usize]) -> bool,
    state: State<T>,
}

impl<T: Float> Lars<T> {
    /// Momentum 0.9, trust coefficient 0.001, no weight decay, biases and norms excluded.
    pub fn new(lr: f64) -> Self {
        Lars {
            lr,
            momentum: 0.9,
            weight_decay: 0.0,
            trust_coefficient: 0.001,
            nesterov: false,
            exclude: exclude_bias_and_norm,
            state: State::new(),
        }
    }
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    pub fn with_trust_coefficient(mut self, eta: f64) -> Self {
        self.trust_coefficient = eta;
        self
    }
    pub fn with_nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }
    pub fn with_exclude(mut self, exclude: fn(&str, &[usize]) -> bool) -> Self {
        self.exclude = exclude;
        self
    }
}

impl<T: Float> Optimizer<T> for Lars<T> {
    fn step(
        &mut self,
        params: &mut [(String, &mut Tensor<T>)],
        grads: &dyn GradientSource<T>,
    ) -> Result<()> {
        check_hyper("Lars", "lr", self.lr, 0.0)?;
        check_hyper("Lars", "momentum", self.momentum, 0.0)?;
        check_hyper("Lars", "weight_decay", self.weight_decay, 0.0)?;
        check_hyper("Lars", "trust_coefficient", self.trust_coefficient, 0.0)?;
        if self.nesterov && self.momentum == 0.0 {
            return Err(Error::invalid(
                "Lars",
                "Nesterov momentum needs momentum > 0",
            ));
        }
        let (lr, eta, wd) = (self.lr, self.trust_coefficient, self.weight_decay);
        let mu = T::from_f64(self.momentum);
        let (nesterov, exclude) = (self.nesterov, self.exclude);
        let state = &mut self.state;
        #[cfg(feature = "cuda")]
        super::for_each_gpu_param("Lars", params, grads, |name, p, g| {
            let excluded = exclude(name, p.dims());
            let h = crate::backend::cuda::optim::LarsStep {
                lr,
                eta,
                adapt: !excluded,
                mu,
                wd: T::from_f64(if excluded { 0.0 } else { wd }),
                nesterov,
            };
            let entry = state.device_entry("Lars", name, p, SLOTS.len())?;
            entry.step += 1;
            let v = entry.device.first_mut().ok_or_else(|| {
                crate::Error::invalid("Lars", "internal: LARS keeps a momentum buffer")
            })?;
            crate::backend::cuda::optim::lars(p, g, v, &h)
        })?;
        for_each_param("Lars", params, grads, |name, p, g| {
            let excluded = exclude(name, p.dims());
            let wd = T::from_f64(if excluded { 0.0 } else { wd });
            let g: Vec<T> = g.iter().zip(p.data()).map(|(&g, &w)| g + wd * w).collect();
            let mut trust = 1.0;
            if !excluded {
                let (w_norm, g_norm) = (l2_norm(p.data()), l2_norm(&g));
                if w_norm > 0.0 && g_norm > 0.0 {
                    trust = eta * w_norm / g_norm;
                }
            }
            let scaled_lr = T::from_f64(lr * trust);
            let entry = state.entry("Lars", name, p.dims(), SLOTS.len())?;
            entry.step += 1;
            let v = &mut entry.bufs[0];
            update_values(p, |w| {
                for ((w, g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                    *v = mu * *v + scaled_lr * g;
                    *w -= if nesterov {
                        mu * *v + scaled_lr * g
                    } else {
                        *v
                    };
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
        self.state.import("Lars", SLOTS, tensors)
    }
}
