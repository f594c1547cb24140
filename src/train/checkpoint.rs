//! Checkpoints: one safetensors file holding the model (`model.…`), the optimiser state
//! (`optim.…`) and, as metadata, the resolved configuration and the position in training.
//! Written atomically (temporary file + rename), so a crash never leaves a torn checkpoint.

use super::config::Config;
use crate::error::{Error, Result};
use crate::nn::{Metadata, Module, load_safetensors, save_safetensors};
use crate::optim::Optimizer;
use crate::tensor::Tensor;
use std::path::Path;

/// Where training stands: `epoch` is the epoch in progress and `step` the number of its batches
/// already applied (0 at an epoch boundary); `global_step` counts every batch so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub epoch: usize,
    pub step: usize,
    pub global_step: usize,
}

/// An error when a parameter or buffer of `model` is not finite, naming it; the checkpoint at
/// `path` is then not to be written. Every rank of a data-parallel run calls this before the
/// root saves, so all of them stop together.
pub fn check_finite(model: &dyn Module<f32>, position: Position, path: &Path) -> Result<()> {
    let state = model.state_tensors();
    let Some((name, _)) = state.iter().find(|(_, t)| !t.all_finite()) else {
        return Ok(());
    };
    let kept = if path.exists() {
        format!("the checkpoint at {} is left as it was", path.display())
    } else {
        "no checkpoint is written".to_string()
    };
    Err(Error::invalid(
        "train",
        format!(
            "the model's {name} is not finite after {} steps; training stopped and {kept}",
            position.global_step
        ),
    ))
}

/// Saves model, optimiser and position. Refuses ([`check_finite`]), leaving the file at `path`
/// as it was, when a parameter or buffer is not finite: the checkpoint on disk is always the
/// last good one.
pub fn save(
    path: &Path,
    config: &Config,
    model: &dyn Module<f32>,
    optimizer: &dyn Optimizer<f32>,
    position: Position,
) -> Result<()> {
    check_finite(model, position, path)?;
    let mut tensors: Vec<(String, Tensor<f32>)> = model
        .state_tensors()
        .into_iter()
        .map(|(n, t)| (format!("model.{n}"), t))
        .collect();
    tensors.extend(
        optimizer
            .state_tensors()
            .into_iter()
            .map(|(n, t)| (format!("optim.{n}"), t)),
    );
    let mut meta = Metadata::new();
    meta.insert("format".into(), "contrastive-checkpoint-1".into());
    meta.insert("config".into(), config.to_toml());
    meta.insert("epoch".into(), position.epoch.to_string());
    meta.insert("step".into(), position.step.to_string());
    meta.insert("global_step".into(), position.global_step.to_string());
    save_safetensors(path, &tensors, &meta)
}

/// A checkpoint read back: its configuration, position and tensors split by owner.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub position: Position,
    pub model: Vec<(String, Tensor<f32>)>,
    pub optimizer: Vec<(String, Tensor<f32>)>,
}

/// Reads a checkpoint written by [`save`].
pub fn load(path: &Path) -> Result<Loaded> {
    let (tensors, meta) = load_safetensors::<f32>(path)?;
    let bad = |what: &str| Error::Data {
        file: path.display().to_string(),
        at: 0,
        message: format!("not a contrastive checkpoint: {what}"),
    };
    let number = |key: &str| -> Result<usize> {
        meta.get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad(&format!("metadata '{key}' missing or not a number")))
    };
    let mut config = Config::default();
    let text = meta
        .get("config")
        .ok_or_else(|| bad("no 'config' metadata"))?;
    config.apply_toml(text, &path.display().to_string())?;
    let position = Position {
        epoch: number("epoch")?,
        step: number("step")?,
        global_step: number("global_step")?,
    };
    let mut model = Vec::new();
    let mut optimizer = Vec::new();
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix("model.") {
            model.push((n.to_string(), t));
        } else if let Some(n) = name.strip_prefix("optim.") {
            optimizer.push((n.to_string(), t));
        } else {
            return Err(bad(&format!("unexpected tensor '{name}'")));
        }
    }
    Ok(Loaded {
        config,
        position,
        model,
        optimizer,
    })
}
