//! # contrastive
//!
//! Contrastive representation learning from scratch: an n-d [`Tensor`] (`f32` for speed, `f64`
//! for exact gradient checks), reverse-mode autodiff ([`Tensor::backward`]), CPU kernels
//! (GEMM through `matrixmultiply`, runtime-dispatched AVX2/FMA elementwise code, `rayon`
//! threads) and a public gradient checker ([`check_gradients`]).
//!
//! ```
//! use contrastive::{Tensor, Result};
//!
//! # fn main() -> Result<()> {
//! let w = Tensor::<f64>::from_f64s(&[0.5, -1.0, 2.0, 0.0], [2, 2])?.requires_grad_();
//! let x = Tensor::<f64>::from_f64s(&[1.0, 2.0], [1, 2])?;
//! let loss = x.matmul(&w)?.tanh().sum_all()?;
//! let grads = loss.backward()?;
//! assert_eq!(grads.get(&w).unwrap().dims(), &[2, 2]);
//! # Ok(())
//! # }
//! ```
//!
//! Layout: [`tensor`] (tensors, shapes, element types), [`autograd`] (the graph and backward),
//! [`ops`] (every op family with its gradient), [`backend`] (kernels, the only `unsafe`),
//! [`gradcheck`] (finite-difference checks).

#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod autograd;
#[allow(unsafe_code)]
pub mod backend;
#[cfg(feature = "cli")]
pub mod cli;
pub mod data;
pub mod distributed;
pub mod error;
pub mod eval;
pub mod gradcheck;
pub mod losses;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod sweep;
pub mod tensor;
pub mod train;
pub mod workloads;

pub use autograd::{Gradients, NoGradGuard, OpKind, PRIMITIVE_OPS, is_grad_enabled, no_grad};
pub use error::{Error, Result};
pub use gradcheck::{CheckMode, Discrepancy, GradCheckOptions, GradCheckReport, check_gradients};
pub use ops::conv::Conv2dParams;
pub use ops::norm::{BatchNormMode, RunningStats};
pub use tensor::{DType, Device, Float, Shape, Tensor, TensorId};
