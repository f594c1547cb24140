//! # Data-parallel training over a group of ranks
//!
//! `mpirun -n K contrastive train` (feature `mpi`) splits every global batch over `K` processes:
//! each encodes its share, the projector outputs are all-gathered with gradient so the loss sees
//! the whole batch as negatives, the parameter gradients are summed over the ranks, and every
//! rank applies the same update. The result is the single-process run with the whole batch
//! (exactly, for models without batch norm or dropout; see [`data_parallel`]).
//!
//! - [`Collective`]: rank, size, all-gather, deterministic all-reduce, broadcast, barrier;
//!   [`Solo`] (one rank), [`ThreadGroup`] (ranks as threads, for tests) and `Mpi` (feature
//!   `mpi`, the world of an MPI job).
//! - [`Tensor::all_gather_rows`](crate::Tensor::all_gather_rows): the differentiable gather.
//! - [`DataParallel`]: the hooks of the training loop (shares, gathered features, scaled and
//!   summed gradients, replica checks).
//! - [`equivalence`]: the `K` ranks ≡ one process self-check.
//!
//! `docs/mpi.md` has the commands, the design and measured scaling.

mod collective;
pub mod data_parallel;
pub mod equivalence;
pub(crate) mod gather;
#[cfg(feature = "mpi")]
mod mpi;
mod threads;

pub use collective::{Collective, CommTimes, Solo, Timed, solo};
pub use data_parallel::{DEFAULT_CHECK_EVERY, DataParallel, SyncedGradients, state_hash};
#[cfg(feature = "mpi")]
pub use mpi::Mpi;
pub use threads::ThreadGroup;

use crate::error::Result;
use std::sync::Arc;

/// The number of ranks an MPI launcher said this process belongs to, from the environment it
/// sets: `OMPI_COMM_WORLD_SIZE` (OpenMPI's `mpirun`), `PMI_SIZE` (MPICH's `mpiexec`, `srun`
/// with PMI), or `SLURM_STEP_NUM_TASKS` under `srun --mpi=pmix`. `None` when not launched so.
pub fn launcher_world_size() -> Option<usize> {
    let var = |name: &str| std::env::var(name).ok()?.trim().parse().ok();
    var("OMPI_COMM_WORLD_SIZE")
        .or_else(|| var("PMI_SIZE"))
        .or_else(|| std::env::var_os("PMIX_RANK").and_then(|_| var("SLURM_STEP_NUM_TASKS")))
}

/// The group `contrastive train` runs in: the MPI world when an MPI launcher started this
/// process as one of several ranks (with the `mpi` feature), otherwise [`Solo`] — also for a
/// single rank, so that one process may train several runs (a sweep) without MPI. Without the
/// feature, a launch of several ranks is an error: each rank would train alone and all would
/// write the same run folder.
pub fn training_world() -> Result<Arc<dyn Collective<f32>>> {
    match launcher_world_size() {
        #[cfg(feature = "mpi")]
        Some(k) if k > 1 => Ok(Arc::new(Mpi::init()?)),
        #[cfg(not(feature = "mpi"))]
        Some(k) if k > 1 => Err(crate::error::Error::invalid(
            "train",
            format!(
                "started by an MPI launcher as one of {k} ranks, but this build has no MPI \
                 support; rebuild with `cargo build --release --features mpi` (see docs/mpi.md)"
            ),
        )),
        _ => Ok(solo()),
    }
}
