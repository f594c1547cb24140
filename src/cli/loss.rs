//! `contrastive loss`: the reference oracle. Reads `.npy` features (and labels, type ids, a
//! queue), computes one registered loss in f64, prints `{"loss": …, "name": …, "params": {…}}`
//! on stdout and optionally writes dL/dF (same shape as F, f64) as `.npy`, so that users can
//! test their own implementations from any language. Every bad input is an `Err` whose one-line
//! message names the file or the loss and the problem; the tool prints it and exits with 1.

use crate::data::npy::{self, NpyArray, NpyData};
use crate::error::{Error, Result};
use crate::losses::{Loss, LossInputs, NAMES, ParamValue};
use crate::tensor::Tensor;
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const CMD: &str = "loss";

#[derive(Debug, Args)]
pub struct LossArgs {
    /// The loss to compute (one of `contrastive loss --list`).
    name: Option<String>,
    /// List every loss with its default parameters, and exit.
    #[arg(long)]
    list: bool,
    /// Features (N, V, d), f32 or f64, little-endian, C order.
    #[arg(long, value_name = "F.npy")]
    features: Option<PathBuf>,
    /// Per-sample labels (N,), int64 or int32 (entity ids for `tabi`).
    #[arg(long, value_name = "L.npy")]
    labels: Option<PathBuf>,
    /// Per-query type ids (N,), int64 or int32, −1 = untyped (`tabi`).
    #[arg(long, value_name = "T.npy")]
    types: Option<PathBuf>,
    /// Queue of negative keys (K, d), f32 or f64 (`moco`).
    #[arg(long, value_name = "Q.npy")]
    queue: Option<PathBuf>,
    /// Set one parameter, e.g. `--set tau=0.2` or `--set denominator=negatives` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Write dLoss/dFeatures (same shape as the features, f64) to this `.npy` file.
    #[arg(long, value_name = "G.npy")]
    grad_out: Option<PathBuf>,
}

/// Runs `contrastive loss`.
pub fn run(args: LossArgs) -> Result<()> {
    if args.list {
        print!("{}", list());
        return Ok(());
    }
    let name = args.name.as_deref().ok_or_else(|| {
        Error::invalid(
            CMD,
            "give a loss NAME (see `contrastive loss --list`) and --features F.npy",
        )
    })?;
    let params = parse_settings(&args.set)?;
    let loss = Loss::with_params(name, &params)?;
    let path = args
        .features
        .as_deref()
        .ok_or_else(|| Error::invalid(CMD, "--features F.npy is required"))?;
    let features = float_tensor(path, "features")?.requires_grad_();
    let labels = args
        .labels
        .as_deref()
        .map(|p| ids(p, "labels"))
        .transpose()?;
    let types = args
        .types
        .as_deref()
        .map(|p| ids(p, "type ids"))
        .transpose()?;
    let queue = args
        .queue
        .as_deref()
        .map(|p| float_tensor(p, "queue"))
        .transpose()?;
    let inputs = LossInputs {
        features: &features,
        labels: labels.as_deref(),
        types: types.as_deref(),
        queue: queue.as_ref(),
    };
    let value = loss.compute(&inputs)?;
    let v = value.item()?;
    if !v.is_finite() {
        return Err(Error::invalid(
            loss.name(),
            format!("the loss is not finite ({v})"),
        ));
    }
    if let Some(out) = &args.grad_out {
        let grad = value.backward()?.get_or_zeros(&features);
        npy::write_f64(out, features.dims(), grad.data())?;
    }
    println!("{}", json(&loss, v));
    Ok(())
}

/// `key=value` strings as pairs; an error names the malformed one.
fn parse_settings(set: &[String]) -> Result<Vec<(&str, &str)>> {
    set.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim(), v))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    Error::invalid(CMD, format!("--set '{kv}' is not of the form key=value"))
                })
        })
        .collect()
}

/// A float array (f32 or f64) as an f64 tensor of its own shape.
fn float_tensor(path: &Path, what: &str) -> Result<Tensor<f64>> {
    let array = npy::read(path)?;
    match array.data {
        NpyData::F64(_) | NpyData::F32(_) => array.to_tensor(),
        _ => Err(Error::invalid(
            CMD,
            format!(
                "{what} {} must be a float array (f32 or f64), got {}",
                path.display(),
                type_name(&array)
            ),
        )),
    }
}

/// A 1-d integer array (int64 or int32) of ids (labels, type ids; negative values allowed).
fn ids(path: &Path, what: &str) -> Result<Vec<i64>> {
    let array = npy::read(path)?;
    if array.shape.len() != 1 {
        return Err(Error::invalid(
            CMD,
            format!(
                "{what} {} must be a 1-d array (N,), got shape {:?}",
                path.display(),
                array.shape
            ),
        ));
    }
    match array.data {
        NpyData::I64(v) => Ok(v),
        NpyData::I32(v) => Ok(v.into_iter().map(i64::from).collect()),
        _ => Err(Error::invalid(
            CMD,
            format!(
                "{what} {} must be an integer array (int64 or int32), got {}",
                path.display(),
                type_name(&array)
            ),
        )),
    }
}

fn type_name(array: &NpyArray) -> &'static str {
    match array.data {
        NpyData::F64(_) => "float64",
        NpyData::F32(_) => "float32",
        NpyData::I64(_) => "int64",
        NpyData::I32(_) => "int32",
    }
}

/// `{"loss": v, "name": "…", "params": {…}}` with every number at full precision (Rust's
/// shortest round-trip form, which is valid JSON for finite values).
fn json(loss: &Loss, value: f64) -> String {
    let mut out = format!(
        "{{\"loss\": {value:?}, \"name\": \"{}\", \"params\": {{",
        loss.name()
    );
    for (i, (key, v)) in loss.params().into_iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        // Parameter values are finite numbers or fixed choice names: nothing to escape.
        let _ = match v {
            ParamValue::Number(x) => write!(out, "{sep}\"{key}\": {}", json_number(x)),
            ParamValue::Choice(c) => write!(out, "{sep}\"{key}\": \"{c}\""),
        };
    }
    out.push_str("}}");
    out
}

/// A JSON number; a non-finite parameter (JSON has none) is written as `null`.
fn json_number(x: f64) -> String {
    if x.is_finite() {
        format!("{x:?}")
    } else {
        "null".to_string()
    }
}

/// One line per loss: its name and default parameters.
fn list() -> String {
    let mut out = String::new();
    for &name in NAMES {
        let params = Loss::by_name(name)
            .map(|l| {
                l.params()
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let line = format!("{name:<15} {params}");
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}
