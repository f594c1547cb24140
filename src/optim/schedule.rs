//! Learning-rate schedules: a function from the step number (0-based, counting optimiser
//! steps) to a learning rate, applied with [`Optimizer::set_lr`](super::Optimizer::set_lr)
//! before each step.

use crate::error::{Error, Result};
use std::f64::consts::PI;
use std::fmt;

/// A learning rate for every step.
pub trait LrSchedule: fmt::Debug + Send + Sync {
    fn lr(&self, step: usize) -> f64;
}

/// The same learning rate at every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constant(pub f64);

impl LrSchedule for Constant {
    fn lr(&self, _step: usize) -> f64 {
        self.0
    }
}

/// Linear warm-up to `base_lr`, then a cosine decay to `final_lr` at `total_steps` (SimCLR's
/// schedule):
///
/// ```text
/// lr(s) = base·(s + 1)/W                                         s < W
/// lr(s) = final + (base − final)·½·(1 + cos(π·(s − W)/(S − W)))  W ≤ s < S
/// lr(s) = final                                                  s ≥ S
/// ```
/// with `W = warmup_steps`, `S = total_steps`. The warm-up counts from `s + 1` so that the
/// first step already learns (a zero rate would waste it); it reaches `base` at `s = W − 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearWarmupCosine {
    pub base_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub final_lr: f64,
}

impl LinearWarmupCosine {
    /// A checked schedule: rates finite and ≥ 0, `warmup_steps ≤ total_steps`.
    pub fn new(
        base_lr: f64,
        warmup_steps: usize,
        total_steps: usize,
        final_lr: f64,
    ) -> Result<Self> {
        for (name, v) in [("base_lr", base_lr), ("final_lr", final_lr)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(
                    "LinearWarmupCosine",
                    format!("{name} = {v} must be finite and ≥ 0"),
                ));
            }
        }
        if warmup_steps > total_steps {
            return Err(Error::invalid(
                "LinearWarmupCosine",
                format!("warmup_steps {warmup_steps} exceeds total_steps {total_steps}"),
            ));
        }
        Ok(LinearWarmupCosine {
            base_lr,
            warmup_steps,
            total_steps,
            final_lr,
        })
    }
}

impl LrSchedule for LinearWarmupCosine {
    fn lr(&self, step: usize) -> f64 {
        let (w, s) = (self.warmup_steps, self.total_steps);
        if step < w {
            self.base_lr * (step + 1) as f64 / w as f64
        } else if step >= s {
            self.final_lr
        } else {
            let progress = (step - w) as f64 / (s - w) as f64;
            self.final_lr + (self.base_lr - self.final_lr) * 0.5 * (1.0 + (PI * progress).cos())
        }
    }
}
