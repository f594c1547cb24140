//! `contrastive train`, `eval` and `embed`.

use crate::Result;
use crate::data::npy;
use crate::error::Error;
use crate::train::run::{self, Representation};
use crate::train::{Config, RunOptions, RunStatus};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A TOML configuration (tables flatten to dotted keys); defaults fill the rest.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one key, e.g. `--set optim.lr=3e-4` (repeatable; applied after --config).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The run folder (default: runs/<config id>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the run folder's checkpoint.
    #[arg(long)]
    resume: bool,
    /// List every configuration key with its default and meaning, and exit.
    #[arg(long)]
    keys: bool,
    /// Where to train: cpu, cuda or cuda:N (sets `train.device`; GPU builds need
    /// `--features cuda`, see docs/cuda.md).
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A checkpoint written by `contrastive train`.
    checkpoint: PathBuf,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// A checkpoint written by `contrastive train`.
    checkpoint: PathBuf,
    /// Where to write the (N, d) f32 embeddings.
    #[arg(long)]
    out: PathBuf,
    /// Also write the labels (int64) here.
    #[arg(long)]
    labels_out: Option<PathBuf>,
    /// Embed the training split instead of the test split.
    #[arg(long)]
    train_split: bool,
    /// Write the projector output instead of the encoder output.
    #[arg(long)]
    projector: bool,
}

/// Resolves the configuration: defaults, then the file, then the overrides.
pub fn resolve_config(file: Option<&PathBuf>, overrides: &[String]) -> Result<Config> {
    let mut config = Config::default();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        config.apply_toml(&text, &path.display().to_string())?;
    }
    for o in overrides {
        config.set_assignment(o)?;
    }
    Ok(config)
}

pub fn train(args: TrainArgs) -> Result<()> {
    if args.keys {
        for (key, default, meaning) in Config::schema() {
            println!("{key:<28} {default:<38} {meaning}");
        }
        return Ok(());
    }
    let mut overrides = args.set.clone();
    if let Some(d) = &args.device {
        overrides.push(format!("train.device={d}"));
    }
    let config = resolve_config(args.config.as_ref(), &overrides)?;
    let run_dir = args
        .out
        .unwrap_or_else(|| PathBuf::from("runs").join(config.id()));
    let stop = Arc::new(AtomicBool::new(false));
    super::signal::stop_on_interrupt(&stop);
    // Under mpirun every rank runs this; only rank 0 talks (it alone writes the run folder).
    let world = crate::distributed::training_world()?;
    let root = world.rank() == 0;
    if root {
        eprintln!(
            "training {} with {} on {} for {} epochs → {}",
            config.str("model.encoder")?,
            config.str("loss.name")?,
            config.str("data.name")?,
            config.usize("train.epochs")?,
            run_dir.display()
        );
    }
    let started = std::time::Instant::now();
    let outcome = run::train_with(
        &config,
        &RunOptions {
            run_dir,
            resume: args.resume,
            progress: root,
            stop: Some(stop),
        },
        world,
    )?;
    if !root {
        return Ok(());
    }
    match outcome.status {
        RunStatus::Interrupted(p) => {
            eprintln!(
                "interrupted: checkpoint at epoch {} batch {} in {}; continue with --resume",
                p.epoch + 1,
                p.step,
                outcome.run_dir.display()
            );
        }
        RunStatus::Finished => {
            // The time covers loading, training and the evaluation; a run of 0 epochs (only
            // the evaluation of the initial model) has no epoch loss to show.
            let loss = if outcome.last_loss.is_nan() {
                "no epochs trained".to_string()
            } else {
                format!("final epoch loss {:.4}", outcome.last_loss)
            };
            println!(
                "done in {:.1} s (training and evaluation), {loss}",
                started.elapsed().as_secs_f64()
            );
            if let Some(e) = &outcome.evaluation {
                print!("{}", e.summary());
            }
            // The files written, in the order a reader wants them (the cosine heat map is left
            // out when a class had no test sample).
            let files: Vec<&str> = [
                "config.toml",
                "metrics.jsonl",
                "checkpoint.safetensors",
                "eval.json",
                "loss.svg",
                "pca.svg",
                "class_cosines.svg",
            ]
            .into_iter()
            .filter(|f| outcome.run_dir.join(f).exists())
            .collect();
            println!(
                "run folder: {} ({})",
                outcome.run_dir.display(),
                files.join(", ")
            );
        }
    }
    Ok(())
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let e = run::evaluate_checkpoint(&args.checkpoint)?;
    print!("{}", e.summary());
    println!("{}", e.to_json());
    Ok(())
}

pub fn embed(args: EmbedArgs) -> Result<()> {
    let which = if args.projector {
        Representation::Projector
    } else {
        Representation::Encoder
    };
    let (emb, labels) = run::embed_checkpoint(&args.checkpoint, args.train_split, which)?;
    npy::write_f32(&args.out, emb.dims(), emb.data())?;
    if let Some(path) = &args.labels_out {
        let l: Vec<i64> = labels.iter().map(|&v| v as i64).collect();
        npy::write_i64(path, &[l.len()], &l)?;
    }
    eprintln!(
        "wrote {:?} embeddings to {}",
        emb.dims(),
        args.out.display()
    );
    Ok(())
}
