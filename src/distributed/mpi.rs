//! [`Mpi`]: the world communicator of an MPI job (`mpirun -n K …`) as a [`Collective`], for
//! `f32` and `f64`, through the `mpi` crate (feature `mpi`).
//!
//! `mpi::topology::SimpleCommunicator` wraps a raw MPI handle and so is neither `Send` nor
//! `Sync`; the handle must live inside the autograd graph, which is. [`Mpi`] therefore owns the
//! `Universe` (whose drop calls `MPI_Finalize`) and takes the world communicator, a constant
//! handle, for each call. MPI is initialised with `MPI_THREAD_SERIALIZED` and a mutex makes
//! sure only one thread of the process is inside MPI at a time.

use super::collective::{Collective, check_root};
use crate::error::{Error, Result};
use crate::tensor::Float;
use mpi::datatype::Equivalence;
use mpi::environment::{Threading, Universe};
use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use std::fmt;
use std::sync::{Mutex, MutexGuard};

/// The MPI world. Keep one per process: MPI cannot be initialised again after it is dropped.
pub struct Mpi {
    universe: Universe,
    rank: usize,
    size: usize,
    lock: Mutex<()>,
}

impl fmt::Debug for Mpi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mpi(rank {} of {})", self.rank, self.size)
    }
}

impl Mpi {
    /// Initialises MPI and returns the world. An error when MPI was already initialised in
    /// this process (by an earlier `Mpi`, which finalised it when dropped, or by other code).
    pub fn init() -> Result<Mpi> {
        let (universe, _level) =
            mpi::initialize_with_threading(Threading::Serialized).ok_or_else(|| {
                Error::invalid(
                    "Mpi::init",
                    "MPI is already initialised in this process (one Mpi per process)",
                )
            })?;
        let world = universe.world();
        let (rank, size) = (world.rank(), world.size());
        Ok(Mpi {
            universe,
            rank: usize::try_from(rank).unwrap_or(0),
            size: usize::try_from(size).unwrap_or(1),
            lock: Mutex::new(()),
        })
    }

    fn serialize(&self) -> Result<MutexGuard<'_, ()>> {
        self.lock
            .lock()
            .map_err(|_| Error::invalid("Mpi", "a thread panicked inside an MPI call"))
    }
}

impl<T: Float + Equivalence> Collective<T> for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_gather(&self, local: &[T]) -> Result<Vec<T>> {
        let _serial = self.serialize()?;
        let world = self.universe.world();
        // Unequal counts would make MPI truncate or overrun: compare them first, everywhere.
        let count = local.len() as u64;
        let mut counts = vec![0u64; self.size];
        world.all_gather_into(&count, &mut counts[..]);
        if counts.iter().any(|&c| c != count) {
            return Err(Error::invalid(
                "all_gather",
                format!("ranks passed different counts {counts:?}; every rank must pass as many"),
            ));
        }
        let mut all = vec![T::ZERO; local.len() * self.size];
        world.all_gather_into(local, &mut all[..]);
        Ok(all)
    }
    fn broadcast(&self, values: &mut [T], root: usize) -> Result<()> {
        check_root("broadcast", root, self.size)?;
        let _serial = self.serialize()?;
        let world = self.universe.world();
        // `root < size`, which came from an i32.
        let root = i32::try_from(root).unwrap_or(0);
        world.process_at_rank(root).broadcast_into(values);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        let _serial = self.serialize()?;
        self.universe.world().barrier();
        Ok(())
    }
}
