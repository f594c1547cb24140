//! `contrastive sweep`: run a share of a sweep, list its runs, or collect its results. The
//! format, the folder layout and the lock rules are in [`crate::sweep`]; docs/cluster.md has
//! the Slurm and GNU parallel recipes.

use crate::Result;
use crate::error::Error;
use crate::sweep::{self, Shard, Sweep, WorkerOptions};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The sweep file ([sweep], [base], [grid], [variant.AXIS.LABEL] tables).
    file: PathBuf,
    /// Run only share I of N: the runs with index % N == I. Default: SLURM_ARRAY_TASK_ID of
    /// SLURM_ARRAY_TASK_COUNT inside a Slurm array job, else every run.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Runs trained at once by this process.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Threads per run (default: the cores divided by --jobs).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The sweep folder (default: [sweep] out, else runs/sweeps/NAME).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Merge the finished runs into OUT/results.jsonl, results.csv and results.md, and print
    /// the table.
    #[arg(long, conflicts_with = "list")]
    collect: bool,
    /// Print every run (of this shard) with its state, and exit.
    #[arg(long)]
    list: bool,
    /// Seconds without a heartbeat after which a lock held on another host is stale.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    stale_after: u64,
    /// Seconds between a holder's heartbeats (must be under half of --stale-after).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    heartbeat: u64,
    /// Run again the runs that failed (those with an error.txt).
    #[arg(long)]
    retry_failed: bool,
    /// Leave runs that other workers hold instead of waiting to take them over.
    #[arg(long)]
    no_wait: bool,
}

fn shard_of(args: &SweepArgs) -> Result<Shard> {
    if let Some(text) = &args.shard {
        return Shard::parse(text);
    }
    Ok(Shard::from_slurm(|k| std::env::var(k).ok())?.unwrap_or(Shard::ALL))
}

pub fn run(args: SweepArgs) -> Result<()> {
    let mut sweep = Sweep::load(&args.file)?;
    if let Some(out) = &args.out {
        sweep.out = out.clone();
    }
    let runs = sweep.expand()?;
    let stale_after = Duration::from_secs(args.stale_after);
    if args.collect {
        let collected = sweep::collect(&sweep, &runs)?;
        sweep::write_tables(&sweep, &runs, &collected)?;
        print!("{}", sweep::collect::markdown(&sweep, &runs, &collected));
        if !collected.missing.is_empty() {
            eprintln!(
                "{} of {} runs have no result yet (see --list)",
                collected.missing.len(),
                runs.len()
            );
        }
        eprintln!("wrote {}/results.{{jsonl,csv,md}}", sweep.out.display());
        return Ok(());
    }
    let shard = shard_of(&args)?;
    if args.list {
        for run in runs.iter().filter(|r| shard.owns(r.index)) {
            let state = sweep::run_state(&sweep.run_dir(run), stale_after)?;
            println!(
                "{:>4} {} {:<40} {state}",
                run.index,
                run.id,
                sweep::describe(&run.labels, run.seed)
            );
        }
        return Ok(());
    }
    if args.jobs == 0 {
        return Err(Error::invalid("sweep", "--jobs must be at least 1"));
    }
    sweep.check_runs(&runs)?;
    if args.heartbeat == 0 || 2 * args.heartbeat >= args.stale_after {
        return Err(Error::invalid(
            "sweep",
            "--heartbeat must be positive and under half of --stale-after",
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    super::signal::stop_on_interrupt(&stop);
    let owned = runs.iter().filter(|r| shard.owns(r.index)).count();
    eprintln!(
        "sweep {}: {} runs, shard {shard} owns {owned}, {} at a time → {}",
        sweep.name,
        runs.len(),
        args.jobs,
        sweep.out.display()
    );
    let started = std::time::Instant::now();
    let options = WorkerOptions {
        shard,
        jobs: args.jobs,
        threads: args.threads,
        stale_after,
        heartbeat: Duration::from_secs(args.heartbeat),
        retry_failed: args.retry_failed,
        wait: !args.no_wait,
        stop: Some(Arc::clone(&stop)),
        log: true,
    };
    let report = sweep::run_share(&sweep, &runs, &options)?;
    eprintln!(
        "shard {shard}: {} trained, {} already done, {} failed, {} interrupted, {} left to other workers in {:.1} s",
        report.trained.len(),
        report.already_done.len(),
        report.failed.len(),
        report.interrupted.len(),
        report.left_to_others.len(),
        started.elapsed().as_secs_f64()
    );
    // The last worker to finish writes the tables; any worker that sees every run finished
    // writes the same files, so concurrent finishers agree.
    let collected = sweep::collect(&sweep, &runs)?;
    if collected.missing.is_empty() {
        sweep::write_tables(&sweep, &runs, &collected)?;
        eprintln!(
            "every run is finished: wrote {}/results.{{jsonl,csv,md}}",
            sweep.out.display()
        );
    }
    let unfinished = collected.missing.iter().filter(|&&i| shard.owns(i)).count();
    if stop.load(Ordering::Relaxed) && unfinished > 0 {
        return Err(Error::invalid(
            "sweep",
            format!(
                "interrupted with {unfinished} runs of this shard unfinished; run the same command to continue"
            ),
        ));
    }
    if let Some((index, message)) = report.failed.first() {
        return Err(Error::invalid(
            "sweep",
            format!(
                "{} runs failed (first: run {index}: {message}); see their error.txt, fix, then --retry-failed",
                report.failed.len()
            ),
        ));
    }
    Ok(())
}
