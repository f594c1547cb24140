//! Sweeps: many training runs from one file, run by any number of workers (one machine with
//! `--jobs`, GNU parallel, a Slurm array), resumable after any crash, collected into one table.
//!
//! # The sweep file
//!
//! The TOML subset of run configurations, with four kinds of tables:
//!
//! ```toml
//! [sweep]
//! name = "coarse_to_fine"            # default: the file's stem
//! out = "runs/sweeps/coarse_to_fine" # default: runs/sweeps/NAME (relative to the working dir)
//! seeds = [0, 1, 2]                  # each run's train.seed, the innermost loop
//! metrics = ["probe.test_accuracy"]  # columns of results.md (default: every metric)
//!
//! [base]                             # fixed keys for every run ([base.data] coarse = … also works)
//! data.coarse = "halves"
//!
//! [grid]                             # one axis per key: the cartesian product of the lists
//! optim.lr = [0.001, 0.0003]
//!
//! [variant.loss.supcon]              # axis `loss`, value `supcon`: keys that change together
//! loss.name = "supcon"
//! loss.params = "tau=0.1"
//! ```
//!
//! A `[variant.AXIS.LABEL]` table is one value of the axis `AXIS`; all tables of one axis form
//! it, in file order. This couples keys that only make sense together (a loss and its
//! parameters) without a mini-language inside strings, and it is valid TOML. Each run starts
//! from the defaults, then `[base]`, then one value of every axis, then its seed. A key may be
//! set by `[base]` and one axis (the axis wins) but not by two axes, and `train.seed` not next
//! to `seeds`. Every key is checked against the configuration schema when the file is read.
//!
//! # Runs, order and shards
//!
//! [`Sweep::expand`] lists the runs deterministically: axes in file order, the first varying
//! slowest, seeds innermost. A run's id is [`Config::id`](crate::train::Config::id) of its
//! resolved configuration, so editing the sweep keeps the ids (and finished results) of the
//! runs it still contains. The worker with shard `I/N` owns the runs with `index % N == I`.
//!
//! # The sweep folder
//!
//! ```text
//! OUT/sweep.toml                     the sweep file, as last run
//! OUT/runs/<id>/                     the run folder of `contrastive train` (config.toml, …)
//! OUT/runs/<id>/lock                 held while a worker trains the run (see below)
//! OUT/runs/<id>/result.json          the run's result row: the run is finished
//! OUT/runs/<id>/error.txt            the run failed (skipped until --retry-failed)
//! OUT/results.jsonl, .csv, .md       written by --collect (and by the last worker to finish)
//! ```
//!
//! # Why results cannot be lost, duplicated or torn
//!
//! A result row is a file per run, `result.json`, written to a temporary file and renamed into
//! place only after training and evaluation finished: a run has at most one row by
//! construction, and a reader sees either nothing or the whole row. A worker killed at any
//! moment leaves either a finished run (the row exists; it is never run again) or an unfinished
//! one (no row; the next worker resumes it from `checkpoint.safetensors`, itself written
//! atomically). Rows are gathered into `results.jsonl`, `.csv` and `.md` by `--collect`, whose
//! output depends only on the set of rows, so concurrent collectors write identical files.
//! A shared appended log was rejected: `O_APPEND` is not atomic on NFS, and a kill between
//! "finished" and "appended" would lose or (on a retry) duplicate a row.
//!
//! # Locks
//!
//! A worker takes `OUT/runs/<id>/lock` before training (see [`lock`]): created exclusively
//! (a temporary file hard-linked into place, atomic on local file systems and NFS) and holding
//! the holder's host, pid, boot id and process start time. A lock is stale, and is taken over,
//! when its holder is on this host (same host name and boot id) and that process is gone (no
//! `/proc/<pid>`, a zombie, or another process with a reused pid); for a holder on another host,
//! when the lock's modification time is older than `--stale-after` (default 300 s): holders
//! touch their locks every `--heartbeat` seconds (default 30). A holder that finds its lock
//! replaced stops that run and writes no row.

pub mod collect;
pub mod lock;
pub mod spec;
mod syntax;
pub mod worker;

pub use collect::{Collected, ResultRow, RunState, collect, run_state, write_tables};
pub use spec::{Run, Sweep, describe};
pub use worker::{WorkerOptions, WorkerReport, run_share};

use crate::error::{Error, Result};

/// The runs a worker owns: those with `index % count == index_of_this_worker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Every run: one worker, or several that share the runs through the locks.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` with `I < N`.
    pub fn parse(text: &str) -> Result<Shard> {
        let bad = || {
            Error::invalid(
                "sweep --shard",
                format!("expected I/N with 0 <= I < N, got '{text}'"),
            )
        };
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard of a Slurm array task, from `SLURM_ARRAY_TASK_ID`, `_COUNT`, `_MIN` and
    /// `_STEP` as `var` returns them; `None` outside an array job. The array must be a range
    /// (`--array=0-7`, optionally with a step or a `%` throttle): the task's shard is
    /// `(ID - MIN) / STEP` of `COUNT`.
    pub fn from_slurm(var: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
        let Some(id) = var("SLURM_ARRAY_TASK_ID") else {
            return Ok(None);
        };
        let number = |name: &str, default: Option<usize>| -> Result<usize> {
            match var(name) {
                Some(v) => v.trim().parse().map_err(|_| {
                    Error::invalid("sweep", format!("{name}={v} is not a non-negative integer"))
                }),
                None => default.ok_or_else(|| {
                    Error::invalid(
                        "sweep",
                        format!("SLURM_ARRAY_TASK_ID is set but {name} is not"),
                    )
                }),
            }
        };
        let id: usize = id.trim().parse().map_err(|_| {
            Error::invalid("sweep", format!("SLURM_ARRAY_TASK_ID={id} is not a number"))
        })?;
        let (count, min, step) = (
            number("SLURM_ARRAY_TASK_COUNT", None)?,
            number("SLURM_ARRAY_TASK_MIN", Some(0))?,
            number("SLURM_ARRAY_TASK_STEP", Some(1))?.max(1),
        );
        let offset = id.checked_sub(min).filter(|o| o % step == 0).ok_or_else(|| {
            Error::invalid(
                "sweep",
                format!("array task {id} is not on the range min {min} step {step}; use --array=0-(N-1)"),
            )
        })?;
        let index = offset / step;
        if index >= count {
            return Err(Error::invalid(
                "sweep",
                format!(
                    "array task {id} gives shard {index} of {count}; use a range --array=0-(N-1)"
                ),
            ));
        }
        Ok(Some(Shard { index, count }))
    }

    /// Whether run `index` of the expansion is this shard's.
    pub fn owns(&self, index: usize) -> bool {
        index % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn shard_text_and_ownership() {
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 1, count: 3 });
        for bad in ["3/3", "1", "a/3", "0/0", "-1/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let s = Shard::parse("2/3").unwrap();
        assert_eq!(
            (0..9).filter(|&i| s.owns(i)).collect::<Vec<_>>(),
            vec![2, 5, 8]
        );
    }

    #[test]
    fn slurm_array_variables() {
        assert_eq!(Shard::from_slurm(env(&[])).unwrap(), None);
        let plain = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(
            Shard::from_slurm(env(&plain)).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        // --array=1-4: ids start at 1.
        let shifted = [
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(
            Shard::from_slurm(env(&shifted)).unwrap(),
            Some(Shard { index: 0, count: 4 })
        );
        // --array=0-6:2 → ids 0, 2, 4, 6.
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert_eq!(
            Shard::from_slurm(env(&stepped)).unwrap(),
            Some(Shard { index: 3, count: 4 })
        );
        assert!(Shard::from_slurm(env(&[("SLURM_ARRAY_TASK_ID", "0")])).is_err());
        assert!(
            Shard::from_slurm(env(&[
                ("SLURM_ARRAY_TASK_ID", "5"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ]))
            .is_err()
        );
        assert!(
            Shard::from_slurm(env(&[
                ("SLURM_ARRAY_TASK_ID", "x"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ]))
            .is_err()
        );
    }
}
