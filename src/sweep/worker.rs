//! A worker: runs its share of a sweep, `jobs` runs at a time, each under its run lock, each
//! resumed from its checkpoint when an earlier worker left one. The order of writes is what
//! makes a kill at any moment harmless: lock → train (atomic checkpoints) → `result.json`
//! (atomic) → unlock; a run with a `result.json` is never started again.

use super::Shard;
use super::collect::{ERROR, LOCK, RESULT, result_json};
use super::lock::{self, RunLock};
use super::spec::{Run, Sweep, describe};
use crate::error::{Error, Result};
use crate::nn::write_atomic;
use crate::train::run::CHECKPOINT;
use crate::train::{RunOptions, RunStatus, train};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a running run checks for Ctrl-C and whether a heartbeat is due.
const POLL: Duration = Duration::from_millis(20);
/// How often a worker with nothing else to do looks again at runs other workers hold.
const BUSY_POLL: Duration = Duration::from_secs(2);
/// Lock temporaries older than this belong to no live acquirer (which needs microseconds).
const LOCK_LITTER_AGE: Duration = Duration::from_secs(60);

/// How a worker runs its share.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub shard: Shard,
    /// Runs trained at once in this process.
    pub jobs: usize,
    /// Threads per run (0: the cores divided by `jobs`). A run whose configuration sets
    /// `train.threads` uses that instead.
    pub threads: usize,
    pub stale_after: Duration,
    pub heartbeat: Duration,
    /// Run failed runs (those with `error.txt`) again.
    pub retry_failed: bool,
    /// Wait for runs of this share that other workers hold, taking them over if their holder
    /// dies, instead of leaving them.
    pub wait: bool,
    /// Set by Ctrl-C: running runs checkpoint and stop, no new run starts.
    pub stop: Option<Arc<AtomicBool>>,
    /// Progress lines on stderr.
    pub log: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            shard: Shard::ALL,
            jobs: 1,
            threads: 0,
            stale_after: Duration::from_secs(300),
            heartbeat: Duration::from_secs(30),
            retry_failed: false,
            wait: true,
            stop: None,
            log: true,
        }
    }
}

/// What a worker did, by run index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerReport {
    /// Finished by this worker.
    pub trained: Vec<usize>,
    /// Already finished before this worker reached them.
    pub already_done: Vec<usize>,
    /// Failed now or earlier (`error.txt`), with the message.
    pub failed: Vec<(usize, String)>,
    /// Stopped by Ctrl-C (checkpointed; the next worker resumes them).
    pub interrupted: Vec<usize>,
    /// Held by other workers when this one left (only without `wait`), or lost to a worker
    /// that judged this one dead.
    pub left_to_others: Vec<usize>,
}

enum Outcome {
    Trained,
    AlreadyDone,
    Failed(String),
    Interrupted,
    Busy,
    Lost,
}

struct Context<'a> {
    sweep: &'a Sweep,
    options: &'a WorkerOptions,
    owned: usize,
}

impl Context<'_> {
    fn stopped(&self) -> bool {
        self.options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }

    fn log(&self, position: usize, run: &Run, message: &str) {
        if self.options.log {
            eprintln!(
                "[shard {}] {}/{} {} {}: {message}",
                self.options.shard,
                position + 1,
                self.owned,
                run.id,
                describe(&run.labels, run.seed)
            );
        }
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Runs the runs of `runs` that `options.shard` owns; returns what happened to each.
pub fn run_share(sweep: &Sweep, runs: &[Run], options: &WorkerOptions) -> Result<WorkerReport> {
    std::fs::create_dir_all(&sweep.out).map_err(|e| io_error(&sweep.out, e))?;
    write_atomic(sweep.out.join("sweep.toml"), sweep.text.as_bytes())?;
    let owned: Vec<(usize, &Run)> = runs
        .iter()
        .filter(|r| options.shard.owns(r.index))
        .enumerate()
        .collect();
    let ctx = Context {
        sweep,
        options,
        owned: owned.len(),
    };
    let queue = Mutex::new(owned.iter().copied().collect::<VecDeque<_>>());
    let waiting: Mutex<Vec<(usize, &Run)>> = Mutex::new(Vec::new());
    let report = Mutex::new(WorkerReport::default());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let jobs = options.jobs.clamp(1, owned.len().max(1));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if options.threads > 0 {
        options.threads
    } else {
        (cores / jobs).max(1)
    };
    let lock_poison = || Error::invalid("sweep", "a worker thread panicked");

    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                let job = || -> Result<()> {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .map_err(|e| {
                            Error::invalid("sweep", format!("cannot start {threads} threads: {e}"))
                        })?;
                    loop {
                        if ctx.stopped() || first_error.lock().map_err(|_| lock_poison())?.is_some()
                        {
                            return Ok(());
                        }
                        let next = queue.lock().map_err(|_| lock_poison())?.pop_front();
                        let (position, run) = match next {
                            Some(item) => item,
                            None if options.wait => {
                                match waiting.lock().map_err(|_| lock_poison())?.pop() {
                                    Some(item) => {
                                        std::thread::sleep(BUSY_POLL);
                                        item
                                    }
                                    None => return Ok(()),
                                }
                            }
                            None => return Ok(()),
                        };
                        let outcome = attempt(&ctx, position, run, &pool)?;
                        let mut r = report.lock().map_err(|_| lock_poison())?;
                        match outcome {
                            Outcome::Trained => r.trained.push(run.index),
                            Outcome::AlreadyDone => r.already_done.push(run.index),
                            Outcome::Failed(m) => r.failed.push((run.index, m)),
                            Outcome::Interrupted => r.interrupted.push(run.index),
                            Outcome::Lost => r.left_to_others.push(run.index),
                            Outcome::Busy if options.wait && !ctx.stopped() => {
                                waiting
                                    .lock()
                                    .map_err(|_| lock_poison())?
                                    .push((position, run));
                            }
                            Outcome::Busy => r.left_to_others.push(run.index),
                        }
                    }
                };
                if let Err(e) = job()
                    && let Ok(mut slot) = first_error.lock()
                {
                    slot.get_or_insert(e);
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().map_err(|_| lock_poison())? {
        return Err(e);
    }
    let mut report = report.into_inner().map_err(|_| lock_poison())?;
    for list in [
        &mut report.trained,
        &mut report.already_done,
        &mut report.interrupted,
        &mut report.left_to_others,
    ] {
        list.sort_unstable();
    }
    report.failed.sort_by_key(|(i, _)| *i);
    Ok(report)
}

/// One try at one run.
fn attempt(ctx: &Context, position: usize, run: &Run, pool: &rayon::ThreadPool) -> Result<Outcome> {
    let dir = ctx.sweep.run_dir(run);
    if dir.join(RESULT).exists() {
        // A holder killed between writing the row and unlocking leaves a lock behind.
        if let Ok(lock::LockState::Stale { .. }) =
            lock::inspect(&dir.join(LOCK), ctx.options.stale_after)
        {
            let _ = std::fs::remove_file(dir.join(LOCK));
        }
        return Ok(Outcome::AlreadyDone);
    }
    if !ctx.options.retry_failed
        && let Ok(message) = std::fs::read_to_string(dir.join(ERROR))
    {
        return Ok(Outcome::Failed(message));
    }
    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    let Some(lock) = RunLock::try_acquire(&dir.join(LOCK), ctx.options.stale_after)? else {
        ctx.log(position, run, "held by another worker");
        return Ok(Outcome::Busy);
    };
    // The run may have finished between the check above and taking the lock.
    if dir.join(RESULT).exists() {
        lock.release()?;
        return Ok(Outcome::AlreadyDone);
    }
    remove_litter(&dir);
    let resuming = dir.join(CHECKPOINT).exists();
    ctx.log(
        position,
        run,
        if resuming {
            "resuming from its checkpoint"
        } else {
            "starting"
        },
    );
    let run_stop = Arc::new(AtomicBool::new(false));
    let lost = AtomicBool::new(false);
    let started = Instant::now();
    let options = RunOptions {
        run_dir: dir.clone(),
        resume: true,
        progress: ctx.options.log && ctx.options.jobs <= 1,
        stop: Some(Arc::clone(&run_stop)),
    };
    let outcome = std::thread::scope(|s| {
        let (done, finished) = channel::<()>();
        let (lock, run_stop, lost) = (&lock, &run_stop, &lost);
        s.spawn(move || {
            // Forwards Ctrl-C to this run and keeps the lock's heartbeat.
            let mut last_beat = Instant::now();
            while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(POLL) {
                if ctx.stopped() {
                    run_stop.store(true, Ordering::Relaxed);
                }
                if last_beat.elapsed() >= ctx.options.heartbeat {
                    last_beat = Instant::now();
                    // An I/O error is retried at the next beat; only a replaced lock stops the run.
                    if let Ok(false) = lock.beat() {
                        lost.store(true, Ordering::Relaxed);
                        run_stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        let outcome = pool.install(|| train(&run.config, &options));
        drop(done);
        outcome
    });
    let seconds = started.elapsed().as_secs_f64();
    if lost.load(Ordering::Relaxed) || !lock.is_ours() {
        ctx.log(
            position,
            run,
            "lost its lock to another worker; leaving the run to it",
        );
        return Ok(Outcome::Lost);
    }
    match outcome {
        Ok(out) => match (out.status, out.evaluation) {
            (RunStatus::Finished, Some(evaluation)) => {
                let worker = format!("{}:{}", lock::host_name(), std::process::id());
                let row = result_json(&ctx.sweep.name, run, seconds, &worker, &evaluation);
                write_atomic(dir.join(RESULT), row.as_bytes())?;
                let _ = std::fs::remove_file(dir.join(ERROR));
                lock.release()?;
                let probe = evaluation.probe.as_ref().map_or(String::new(), |p| {
                    format!(", probe {:.2}%", 100.0 * p.test_accuracy)
                });
                ctx.log(
                    position,
                    run,
                    &format!(
                        "done in {seconds:.1} s{probe}, kNN {:.2}%",
                        100.0 * evaluation.knn.accuracy
                    ),
                );
                Ok(Outcome::Trained)
            }
            (RunStatus::Finished, None) => Err(Error::invalid(
                "sweep",
                "training finished without an evaluation",
            )),
            (RunStatus::Interrupted(p), _) => {
                lock.release()?;
                ctx.log(
                    position,
                    run,
                    &format!(
                        "interrupted at epoch {} batch {}; checkpointed",
                        p.epoch + 1,
                        p.step
                    ),
                );
                Ok(Outcome::Interrupted)
            }
        },
        Err(e) => {
            let message = e.to_string();
            write_atomic(dir.join(ERROR), format!("{message}\n").as_bytes())?;
            lock.release()?;
            ctx.log(position, run, &format!("failed: {message}"));
            Ok(Outcome::Failed(message))
        }
    }
}

/// Removes what killed holders left in a run folder: temporaries of atomic writes (only the
/// lock holder writes there, and that is now us) and old lock temporaries.
fn remove_litter(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let lock_side = name.starts_with(".lock.");
        let old = || {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > LOCK_LITTER_AGE))
        };
        if name.starts_with('.')
            && (name.contains(".tmp-") || name.contains(".stale-"))
            && (!lock_side || old())
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
