//! The differentiable operations, one file per family. Each file holds the public methods on
//! [`crate::Tensor`], their forward kernels (or calls into `backend::cpu`) and their backward
//! rules side by side. Primitive ops record an `autograd::Op`; composite ops (softmax,
//! normalisation, batch norm, cross-entropy, ...) are built from primitives and inherit exact
//! gradients from them.

pub mod binary;
pub mod conv;
pub mod functional;
pub mod index;
pub mod matmul;
pub mod movement;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod similarity;
pub mod unary;
