//! Training: the run configuration ([`config`]) and SVG reports ([`plots`]).
// TODO(issue 4): the training loop, checkpoints and the run folder land here next.

pub mod config;
pub mod plots;

pub use config::{Config, Value};
