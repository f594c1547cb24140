//! The training loop: builds everything from a [`Config`], trains with progress on stderr,
//! appends one JSON line per epoch to `metrics.jsonl`, checkpoints atomically, stops on request
//! (Ctrl-C) with a checkpoint of the exact position, resumes from it, stops with the step number
//! on a non-finite loss or gradient (leaving the last good checkpoint), and finishes with the
//! evaluation and its plots. The run folder holds `config.toml`, `metrics.jsonl`,
//! `checkpoint.safetensors`, `eval.json`, `loss.svg`, `pca.svg` and `class_cosines.svg`.

use super::checkpoint::{self, Position};
use super::config::Config;
use super::plots;
use super::report::{self, Evaluation};
use super::setup::{self, Splits};
use crate::distributed::{self, Collective, DEFAULT_CHECK_EVERY, DataParallel};
use crate::error::{Error, Result};
use crate::nn::{EncoderHead, Mode, Module};
use crate::optim::{Optimizer, clip_grad_norm, global_grad_norm};
use crate::tensor::Device;
use crate::tensor::Tensor;
use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How to run: where, whether to resume, whether to draw progress, and a flag that asks the
/// loop to stop (set by a Ctrl-C handler).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub run_dir: PathBuf,
    pub resume: bool,
    pub progress: bool,
    pub stop: Option<Arc<AtomicBool>>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    Finished,
    /// Stopped on request after a checkpoint at this position.
    Interrupted(Position),
}

#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub run_dir: PathBuf,
    /// Mean training loss of the last epoch run.
    pub last_loss: f64,
    pub evaluation: Option<Evaluation>,
}

pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const METRICS: &str = "metrics.jsonl";

/// Runs `f` on a rayon pool of `train.threads` threads (0: the global pool).
fn with_threads<R: Send>(config: &Config, f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    match config.usize("train.threads")? {
        0 => f(),
        n => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| Error::invalid("train", format!("cannot start {n} threads: {e}")))?
            .install(f),
    }
}

/// Trains as `config` says, in `options.run_dir`; under an MPI launcher (feature `mpi`), as
/// one rank of the MPI world ([`distributed::training_world`]).
pub fn train(config: &Config, options: &RunOptions) -> Result<RunOutcome> {
    train_with(config, options, distributed::training_world()?)
}

/// [`train`] as one rank of `comm`: every rank of the group calls it with the same `config`;
/// each trains on its share of every batch ([`DataParallel`]) and rank 0 alone writes the run
/// folder and evaluates (the others return no evaluation).
///
/// Tunes the process's allocator first
/// ([`tune_allocator`](crate::backend::cpu::alloc::tune_allocator)): without it a program that
/// trains through the library rather than the CLI refaulted every step's buffers and ran the
/// Fashion-MNIST configuration in 1,067 s instead of the CLI's 565 s. A thread that allocated
/// before the tuning keeps its own glibc arena, so training from such a thread (a test
/// harness's) still took 766 s: call `tune_allocator` first thing in `main`.
pub fn train_with(
    config: &Config,
    options: &RunOptions,
    comm: Arc<dyn Collective<f32>>,
) -> Result<RunOutcome> {
    crate::backend::cpu::alloc::tune_allocator();
    with_threads(config, || train_inner(config, options, comm))
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn train_inner(
    config: &Config,
    options: &RunOptions,
    comm: Arc<dyn Collective<f32>>,
) -> Result<RunOutcome> {
    let dp = DataParallel::new(comm, DEFAULT_CHECK_EVERY);
    let root = dp.is_root();
    let dir = &options.run_dir;
    setup::check_keys(config)?; // before any folder or data: a typo costs nothing
    if root {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    let checkpoint_path = dir.join(CHECKPOINT);
    let metrics_path = dir.join(METRICS);

    let splits = setup::load_splits(config)?;
    let loader = setup::train_loader(config, &splits.train)?;
    let (mut model, _) = setup::build_model(config, splits.train.item_shape())?;
    let loss = setup::build_loss(config)?;
    let mut optimizer = setup::build_optimizer(config)?;
    let steps_per_epoch = loader.batches_per_epoch();
    let schedule = setup::build_schedule(config, steps_per_epoch)?;
    let epochs = config.usize("train.epochs")?;
    let views = config.usize("data.views")?;
    dp.local_batch(config.usize("train.batch_size")?)?;

    let mut position = Position::default();
    if options.resume && checkpoint_path.exists() {
        let saved = checkpoint::load(&checkpoint_path)?;
        if saved.config.id() != config.id() {
            return Err(Error::invalid(
                "train --resume",
                format!(
                    "{} was written by a different configuration (id {} vs {}); \
                     resume with the same settings or use a new run folder",
                    checkpoint_path.display(),
                    saved.config.id(),
                    config.id()
                ),
            ));
        }
        model.load_state(&saved.model)?;
        optimizer.load_state_tensors(&saved.optimizer)?;
        position = saved.position;
        if root {
            drop_metrics_after(&metrics_path, position.epoch)?;
        }
    } else if root {
        // A fresh run: start the metrics log anew.
        std::fs::write(&metrics_path, b"").map_err(|e| io_error(&metrics_path, e))?;
    }
    // The model moves after any checkpoint was loaded into it; the batches move as they come.
    let device: Device = config.str("train.device")?.parse()?;
    device.check()?;
    model.to_device(&device)?;
    dp.check_start(&config.id(), position.global_step, &model)?;
    let mut metrics = if root {
        report::write_file(&dir.join("config.toml"), &config.to_toml())?;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&metrics_path)
            .map_err(|e| io_error(&metrics_path, e))?;
        Some(file)
    } else {
        None
    };
    let clip = config.f64("optim.clip_grad_norm")?;
    let every = config.usize("train.checkpoint_every")?.max(1);
    // Every rank checks the weights (the replicas are equal, so none waits for a root that
    // stopped); the root writes.
    let write_checkpoint =
        |model: &EncoderHead<f32>, optimizer: &dyn Optimizer<f32>, position: Position| {
            checkpoint::check_finite(model, position, &checkpoint_path)?;
            if root {
                checkpoint::save(&checkpoint_path, config, model, optimizer, position)?;
            }
            Ok::<(), Error>(())
        };
    let mut progress = Progress::new(
        options.progress && root && std::io::stderr().is_terminal(),
        epochs,
        steps_per_epoch,
    );
    let mut last_loss = f64::NAN;
    let (mut train_seconds, mut steps_run) = (0.0, 0usize);
    let stop_requested = || {
        options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    };

    for epoch in position.epoch..epochs {
        let start_step = if epoch == position.epoch {
            position.step
        } else {
            0
        };
        let started = Instant::now();
        let (mut loss_sum, mut batches, mut samples) = (0.0, 0usize, 0usize);
        for batch in loader.prefetch(epoch as u64, start_step) {
            let batch = batch?;
            let step = position.global_step;
            let lr = schedule.lr(step);
            optimizer.set_lr(lr);
            let b = batch.batch_size();
            let local = dp.local_views(&batch.views, views)?; // this rank's share, view-major
            let local = local.to_device(&device)?;
            let z = model.forward(&local, Mode::Train)?; // (V·B/K, p)
            let features = dp.global_features(&z, views)?; // (B, V, p), every rank's share
            if !features.all_finite() {
                let bad = features
                    .data()
                    .iter()
                    .find(|v| !v.is_finite())
                    .map_or(f64::NAN, |v| f64::from(*v));
                return Err(non_finite(
                    "model output",
                    bad,
                    step,
                    epoch,
                    batch.step,
                    &checkpoint_path,
                ));
            }
            let labels: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
            let l = setup::compute_loss(&loss, &features, &labels)?;
            let value = f64::from(l.item()?);
            if !value.is_finite() {
                return Err(non_finite(
                    "loss",
                    value,
                    step,
                    epoch,
                    batch.step,
                    &checkpoint_path,
                ));
            }
            let mut params = model.parameters_mut();
            // Gradients of the global loss, summed over the ranks; stop when any rank asks.
            let (grads, stop_all) = dp.backward(&l, &params, stop_requested())?;
            // The norm is checked on every step, clipped or not: a finite loss can still have
            // an overflowing gradient, and one update with it would poison every later checkpoint.
            let (clipped, norm) = if clip > 0.0 {
                let (clipped, norm) = clip_grad_norm(&params, &grads, clip)?;
                (Some(clipped), norm)
            } else {
                (None, global_grad_norm(&params, &grads)?)
            };
            if !norm.is_finite() {
                return Err(non_finite(
                    "gradient norm",
                    norm,
                    step,
                    epoch,
                    batch.step,
                    &checkpoint_path,
                ));
            }
            match &clipped {
                Some(clipped) => optimizer.step(&mut params, clipped)?,
                None => optimizer.step(&mut params, &grads)?,
            }
            drop(params);
            dp.sync_buffers(&mut model)?;
            if dp.check_due(step + 1) {
                dp.check_replicas(step + 1, &model)?;
            }
            position = Position {
                epoch,
                step: batch.step + 1,
                global_step: step + 1,
            };
            loss_sum += value;
            batches += 1;
            samples += b * views;
            progress.update(
                epoch,
                batch.step + 1,
                loss_sum / batches as f64,
                samples,
                started,
            );
            if stop_all {
                write_checkpoint(&model, optimizer.as_ref(), position)?;
                progress.finish();
                return Ok(RunOutcome {
                    status: RunStatus::Interrupted(position),
                    run_dir: dir.clone(),
                    last_loss: loss_sum / batches as f64,
                    evaluation: None,
                });
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        (train_seconds, steps_run) = (train_seconds + seconds, steps_run + batches);
        if batches > 0 {
            last_loss = loss_sum / batches as f64;
        }
        if let Some(metrics) = metrics.as_mut().filter(|_| batches > 0) {
            let line = format!(
                "{{\"epoch\": {}, \"global_step\": {}, \"loss\": {}, \"lr\": {}, \"samples_per_s\": {:.1}, \"seconds\": {:.3}}}\n",
                epoch + 1,
                position.global_step,
                last_loss,
                optimizer.lr(),
                samples as f64 / seconds.max(1e-9),
                seconds
            );
            metrics
                .write_all(line.as_bytes())
                .map_err(|e| io_error(&metrics_path, e))?;
        }
        position = Position {
            epoch: epoch + 1,
            step: 0,
            global_step: position.global_step,
        };
        if (epoch + 1) % every == 0 || epoch + 1 == epochs {
            write_checkpoint(&model, optimizer.as_ref(), position)?;
        }
    }
    progress.finish();
    if dp.size() > 1 && root {
        eprintln!("{}", dp.summary(steps_run, train_seconds));
    }
    if !root {
        return Ok(RunOutcome {
            status: RunStatus::Finished,
            run_dir: dir.clone(),
            last_loss,
            evaluation: None,
        });
    }
    if position.epoch < epochs || !checkpoint_path.exists() {
        checkpoint::save(
            &checkpoint_path,
            config,
            &model,
            optimizer.as_ref(),
            position,
        )?;
    }
    write_loss_plot(dir, &metrics_path)?;
    // Evaluation (embedding, probe, kNN) runs on the CPU.
    model.to_device(&Device::Cpu)?;
    let evaluation = report::evaluate(&mut model, &splits, config)?;
    evaluation.write(dir)?;
    Ok(RunOutcome {
        status: RunStatus::Finished,
        run_dir: dir.clone(),
        last_loss,
        evaluation: Some(evaluation),
    })
}

fn non_finite(
    what: &str,
    value: f64,
    step: usize,
    epoch: usize,
    batch: usize,
    checkpoint: &Path,
) -> Error {
    let kept = if checkpoint.exists() {
        format!(
            "the last good checkpoint is kept at {}",
            checkpoint.display()
        )
    } else {
        "no checkpoint had been written yet".to_string()
    };
    Error::invalid(
        "train",
        format!(
            "the {what} is {value} at step {step} (epoch {}, batch {}); training stopped and {kept}",
            epoch + 1,
            batch + 1
        ),
    )
}

/// Drops the `metrics.jsonl` lines of epochs after `epoch`: a run killed between logging an
/// epoch and checkpointing it logs that epoch again when it resumes.
fn drop_metrics_after(path: &Path, epoch: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| metric_field(line, "epoch").is_none_or(|e| e <= epoch as f64))
        .map(|line| format!("{line}\n"))
        .collect();
    if kept.len() != text.len() {
        report::write_file(path, &kept)?;
    }
    Ok(())
}

/// A numeric field of one `metrics.jsonl` line.
fn metric_field(line: &str, key: &str) -> Option<f64> {
    let at = line.find(&format!("\"{key}\": "))? + key.len() + 4;
    let rest = &line[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// `loss.svg` from the epoch losses logged in `metrics.jsonl` (including resumed runs).
fn write_loss_plot(dir: &Path, metrics_path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics_path).map_err(|e| io_error(metrics_path, e))?;
    let points: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| Some((metric_field(l, "epoch")?, metric_field(l, "loss")?)))
        .collect();
    let svg = plots::line_chart("Training loss", "epoch", "mean loss", &[("train", points)]);
    report::write_file(&dir.join("loss.svg"), &svg)
}

/// A one-line progress bar on stderr: epoch, bar, loss, throughput and ETA.
struct Progress {
    enabled: bool,
    epochs: usize,
    steps: usize,
    last_draw: Option<Instant>,
    run_started: Instant,
    steps_done: usize,
}

impl Progress {
    fn new(enabled: bool, epochs: usize, steps: usize) -> Self {
        Progress {
            enabled,
            epochs,
            steps,
            last_draw: None,
            run_started: Instant::now(),
            steps_done: 0,
        }
    }

    fn update(
        &mut self,
        epoch: usize,
        step: usize,
        loss: f64,
        samples: usize,
        epoch_started: Instant,
    ) {
        self.steps_done += 1;
        if !self.enabled
            || self
                .last_draw
                .is_some_and(|t| t.elapsed().as_millis() < 100)
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let (total, done) = (self.epochs * self.steps, epoch * self.steps + step);
        let rate = samples as f64 / epoch_started.elapsed().as_secs_f64().max(1e-9);
        let per_step = self.run_started.elapsed().as_secs_f64() / self.steps_done as f64;
        let eta = (total.saturating_sub(done)) as f64 * per_step;
        eprint!(
            "\r{}   ",
            progress_line(epoch, self.epochs, done, total, loss, rate, eta)
        );
    }

    fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            eprintln!();
        }
    }
}

/// One line of the progress bar: epoch, a bar over the whole run (`done` of `total` steps), the
/// epoch's mean loss, throughput and the time left.
fn progress_line(
    epoch: usize,
    epochs: usize,
    done: usize,
    total: usize,
    loss: f64,
    samples_per_s: f64,
    eta_s: f64,
) -> String {
    const WIDTH: usize = 24;
    let filled = (WIDTH * done)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH);
    let eta = eta_s.max(0.0).round() as u64;
    format!(
        "epoch {:>4}/{epochs} [{}{}] loss {loss:.4} | {samples_per_s:.0} samples/s | ETA {}:{:02}",
        epoch + 1,
        "=".repeat(filled),
        " ".repeat(WIDTH - filled),
        eta / 60,
        eta % 60
    )
}

/// Rebuilds the model of a checkpoint with its data splits.
pub fn load_model(path: &Path) -> Result<(Config, EncoderHead<f32>, Splits)> {
    let saved = checkpoint::load(path)?;
    let splits = setup::load_splits(&saved.config)?;
    let (mut model, _) = setup::build_model(&saved.config, splits.train.item_shape())?;
    model.load_state(&saved.model)?;
    Ok((saved.config, model, splits))
}

/// `contrastive eval`: the evaluation of a checkpoint.
pub fn evaluate_checkpoint(path: &Path) -> Result<Evaluation> {
    let (config, mut model, splits) = load_model(path)?;
    with_threads(&config, || report::evaluate(&mut model, &splits, &config))
}

/// Which representation `contrastive embed` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    Encoder,
    Projector,
}

/// `contrastive embed`: the representations of the test (or train) split, with their labels.
pub fn embed_checkpoint(
    path: &Path,
    train_split: bool,
    which: Representation,
) -> Result<(Tensor<f32>, Vec<usize>)> {
    let (config, mut model, splits) = load_model(path)?;
    let data = if train_split {
        &splits.train
    } else {
        &splits.test
    };
    let (h, z) = with_threads(&config, || report::embed(&mut model, data))?;
    let labels = data.fine_labels().unwrap_or(data.labels()).to_vec();
    Ok((
        if which == Representation::Encoder {
            h
        } else {
            z
        },
        labels,
    ))
}

#[cfg(test)]
mod tests {
    use super::progress_line;

    #[test]
    fn the_progress_line_shows_epoch_bar_loss_throughput_and_eta() {
        assert_eq!(
            progress_line(1, 4, 10, 20, 1.23456, 9876.4, 125.4),
            "epoch    2/4 [============            ] loss 1.2346 | 9876 samples/s | ETA 2:05"
        );
        // The bar is full at the end, and never overflows; no steps at all counts as done.
        assert!(
            progress_line(3, 4, 20, 20, 0.5, 1.0, 0.0).contains(&format!("[{}]", "=".repeat(24)))
        );
        assert!(
            progress_line(3, 4, 25, 20, 0.5, 1.0, 0.0).contains(&format!("[{}]", "=".repeat(24)))
        );
        assert!(progress_line(0, 0, 0, 0, 0.5, 1.0, 0.0).ends_with("ETA 0:00"));
        // 59.6 s rounds to a minute, not to "0:60".
        assert!(progress_line(0, 1, 0, 1, 0.5, 1.0, 59.6).ends_with("ETA 1:00"));
    }
}
