//! Compute backends. Only the CPU exists so far; the kernels here are the crate's only
//! `unsafe` code.

pub mod cpu;
