//! The MPI check of data-parallel training: `K` MPI ranks with `B/K` samples each must train
//! exactly like one process with the whole batch of `B` (f64 MLP, NT-Xent and SupCon, SGD and
//! Adam, to 1e-6), after the collectives themselves are checked (gather order, sums in rank
//! order, broadcast) in f32 and f64. Exits non-zero on any mismatch. `.ci/run` runs it:
//!
//! ```sh
//! cargo build --features mpi --example mpi_data_parallel
//! mpirun -n 2 --oversubscribe --allow-run-as-root target/debug/examples/mpi_data_parallel
//! ```
//!
//! With `--bench` it instead times the collectives of one step of the digits default run
//! (batch 256 × 2 views, projector 128, 115k parameters), each after a barrier, so the times are
//! the transfers alone, without waiting for a slower rank (docs/mpi.md).

use std::process::ExitCode;

#[cfg(feature = "mpi")]
fn main() -> ExitCode {
    let result = if std::env::args().any(|a| a == "--bench") {
        check::bench().map(|()| true)
    } else {
        check::run()
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "mpi"))]
fn main() -> ExitCode {
    eprintln!(
        "built without MPI: cargo build --features mpi --example mpi_data_parallel, \
         then run it under mpirun -n 2"
    );
    ExitCode::from(2)
}

#[cfg(feature = "mpi")]
mod check {
    use contrastive::distributed::equivalence::{ReplicaSpec, max_abs_diff, train_replica};
    use contrastive::distributed::{Collective, Mpi, solo};
    use contrastive::{Float, Result};
    use std::sync::Arc;

    /// The issue's bound for K ranks against one process, in f64.
    const TOLERANCE: f64 = 1e-6;

    /// Gather order, rank-order sums and broadcast, checked in `T`; true when all hold.
    fn collectives<T: Float>(comm: &dyn Collective<T>) -> Result<bool> {
        let (r, k) = (comm.rank(), comm.size());
        let gathered = comm.all_gather(&[T::from_usize(r), T::from_usize(100 + r)])?;
        let expected: Vec<T> = (0..k)
            .flat_map(|s| [T::from_usize(s), T::from_usize(100 + s)])
            .collect();
        // Values whose sum depends on the order of the additions: 2^60, −2^60, then ones.
        let value = |s: usize| match s {
            0 => T::from_f64(2f64.powi(60)),
            1 => T::from_f64(-(2f64.powi(60))),
            _ => T::ONE,
        };
        let mut sum = [value(r)];
        comm.all_reduce_sum(&mut sum)?;
        let in_order = (1..k).fold(value(0), |acc, s| acc + value(s));
        let mut b = [T::from_usize(r); 3];
        comm.broadcast(&mut b, k - 1)?;
        comm.barrier()?;
        let ok = gathered == expected && sum[0] == in_order && b == [T::from_usize(k - 1); 3];
        if !ok {
            eprintln!(
                "rank {r}: {:?} collectives wrong: gathered {gathered:?}, sum {:?} (expected {in_order:?}), broadcast {b:?}",
                T::DTYPE,
                sum[0]
            );
        }
        Ok(ok)
    }

    /// Median seconds of `f` over `reps` calls, each after a barrier.
    fn median(
        comm: &dyn Collective<f32>,
        reps: usize,
        mut f: impl FnMut() -> Result<()>,
    ) -> Result<f64> {
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            comm.barrier()?;
            let t = std::time::Instant::now();
            f()?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        Ok(times[reps / 2])
    }

    /// The collectives of one data-parallel step of the digits default run, timed.
    pub fn bench() -> Result<()> {
        let world: Arc<dyn Collective<f32>> = Arc::new(Mpi::init()?);
        let k = world.size();
        let (views, batch, p, params) = (2, 256, 128, 115_328);
        let local = vec![0.5f32; views * batch / k * p];
        let mut gathered_grad = vec![0.5f32; views * batch * p];
        let mut grads = vec![0.5f32; params + 1];
        let gather = median(world.as_ref(), 200, || world.all_gather(&local).map(drop))?;
        let backward = median(world.as_ref(), 200, || {
            world.all_reduce_sum(&mut gathered_grad)
        })?;
        let reduce = median(world.as_ref(), 200, || world.all_reduce_sum(&mut grads))?;
        if world.rank() == 0 {
            println!(
                "{k} ranks, median of 200: all-gather of the features ({} KB each) {:.1} µs, \
                 its backward all-reduce ({} KB) {:.1} µs, gradient all-reduce ({} KB) {:.1} µs; \
                 {:.2} ms per step",
                local.len() * 4 / 1024,
                gather * 1e6,
                gathered_grad.len() * 4 / 1024,
                backward * 1e6,
                grads.len() * 4 / 1024,
                reduce * 1e6,
                (gather + backward + reduce) * 1e3
            );
        }
        Ok(())
    }

    pub fn run() -> Result<bool> {
        let world = Arc::new(Mpi::init()?);
        let (w32, w64): (Arc<dyn Collective<f32>>, Arc<dyn Collective<f64>>) =
            (world.clone(), world.clone());
        let (r, k) = (w64.rank(), w64.size());
        let mut ok = collectives(w32.as_ref())? & collectives(w64.as_ref())?;
        for loss in ["nt_xent", "supcon"] {
            for optimizer in ["sgd", "adam"] {
                // B = 8 per rank, K·8 in all; the reference trains on all of it alone.
                let spec = ReplicaSpec::new(loss, optimizer, 8 * k);
                let ranks = train_replica(&spec, Arc::clone(&w64))?;
                let single = train_replica(&spec, solo())?;
                let diff = max_abs_diff(&ranks, &single);
                let pass = diff < TOLERANCE;
                println!(
                    "rank {r}/{k}: {loss}/{optimizer}, {} steps, batch {} = {k}×8: max |θ_K − θ_1| = {diff:.3e} {}",
                    spec.steps,
                    spec.global_batch,
                    if pass { "ok" } else { "MISMATCH" }
                );
                ok &= pass;
            }
        }
        Ok(ok)
    }
}
