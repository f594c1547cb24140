//! CPU–GPU parity: every op of the op table (forward and backward, random shapes) and every
//! loss of `losses::registry` runs on the CPU and on the GPU, and the outputs and input
//! gradients must agree within f32 tolerances. On a machine without a usable GPU each test
//! prints `skipped <name>: <reason>` and passes.
#![cfg(feature = "cuda")]

mod common;
mod elementwise;
mod losses;
mod movement;
mod nn;
mod reduce;
mod training;
