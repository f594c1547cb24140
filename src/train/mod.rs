//! Training: the run configuration ([`config`]), building a run from it ([`setup`]), the loop
//! ([`run`]), checkpoints ([`checkpoint`]), the end-of-run evaluation ([`report`]) and SVG
//! plots ([`plots`]).

pub mod checkpoint;
pub mod config;
pub mod plots;
pub mod report;
pub mod run;
pub mod setup;
pub(crate) mod toml;

pub use config::{Config, Value};
pub use run::{RunOptions, RunOutcome, RunStatus, train};
