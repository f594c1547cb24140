//! [`ThreadGroup`]: `K` ranks as threads of one process, exchanging buffers through shared
//! memory. It runs the data-parallel code without MPI (in plain `cargo test`) and is exactly
//! as deterministic as the MPI group: the same gather-and-sum-in-rank-order reductions.
//!
//! Every collective is one *exchange*: each rank deposits a buffer, the last to arrive publishes
//! all `K` of them, and every rank reads the published set. A rank that drops its handle (it
//! finished, returned an error or panicked) marks the group as broken, so the others get an
//! error instead of waiting forever.

use super::collective::{Collective, check_root};
use crate::error::{Error, Result};
use crate::tensor::Float;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// One rank's handle on a group of threads. Make the group with [`ThreadGroup::new`], move one
/// handle into each thread (or use [`ThreadGroup::run`]).
pub struct ThreadGroup<T: Float> {
    shared: Arc<Shared<T>>,
    rank: usize,
}

struct Shared<T> {
    size: usize,
    state: Mutex<State<T>>,
    turn: Condvar,
}

struct State<T> {
    /// Deposits of the exchange in progress.
    slots: Vec<Option<Vec<T>>>,
    arrived: usize,
    /// Counts completed exchanges; a waiter leaves when it changes.
    generation: u64,
    /// The buffers of the last completed exchange, in rank order.
    published: Arc<Vec<Vec<T>>>,
    /// The first rank that dropped its handle.
    left: Option<usize>,
}

impl<T: Float> fmt::Debug for ThreadGroup<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThreadGroup(rank {} of {})", self.rank, self.shared.size)
    }
}

impl<T: Float> ThreadGroup<T> {
    /// The `size` handles of a new group, rank 0 first.
    pub fn new(size: usize) -> Result<Vec<ThreadGroup<T>>> {
        if size == 0 {
            return Err(Error::invalid(
                "ThreadGroup::new",
                "a group needs at least one rank",
            ));
        }
        let shared = Arc::new(Shared {
            size,
            state: Mutex::new(State {
                slots: (0..size).map(|_| None).collect(),
                arrived: 0,
                generation: 0,
                published: Arc::new(Vec::new()),
                left: None,
            }),
            turn: Condvar::new(),
        });
        Ok((0..size)
            .map(|rank| ThreadGroup {
                shared: Arc::clone(&shared),
                rank,
            })
            .collect())
    }

    /// Runs `f` on `size` scoped threads, one per rank, and returns their results in rank
    /// order. A panic in any rank is re-raised here (the other ranks see the group break).
    pub fn run<R: Send>(
        size: usize,
        f: impl Fn(Arc<dyn Collective<T>>) -> R + Sync,
    ) -> Result<Vec<R>> {
        let handles = Self::new(size)?;
        let f = &f;
        Ok(std::thread::scope(|scope| {
            let running: Vec<_> = handles
                .into_iter()
                .map(|h| scope.spawn(move || f(Arc::new(h))))
                .collect();
            running
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        }))
    }

    fn lock(&self) -> Result<MutexGuard<'_, State<T>>> {
        self.shared
            .state
            .lock()
            .map_err(|_| Error::invalid("ThreadGroup", "a rank panicked inside a collective"))
    }

    fn broken(rank: usize) -> Error {
        Error::invalid(
            "ThreadGroup",
            format!("rank {rank} left the group while the others were in a collective"),
        )
    }

    /// Deposits `local` and returns every rank's deposit of this exchange, in rank order.
    fn exchange(&self, local: Vec<T>) -> Result<Arc<Vec<Vec<T>>>> {
        let mut state = self.lock()?;
        if let Some(rank) = state.left {
            return Err(Self::broken(rank));
        }
        state.slots[self.rank] = Some(local);
        state.arrived += 1;
        if state.arrived == self.shared.size {
            let all: Vec<Vec<T>> = state.slots.iter_mut().filter_map(Option::take).collect();
            state.published = Arc::new(all);
            state.arrived = 0;
            state.generation += 1;
            self.shared.turn.notify_all();
            return Ok(Arc::clone(&state.published));
        }
        let generation = state.generation;
        while state.generation == generation {
            if let Some(rank) = state.left {
                return Err(Self::broken(rank));
            }
            state = self.shared.turn.wait(state).map_err(|_| {
                Error::invalid("ThreadGroup", "a rank panicked inside a collective")
            })?;
        }
        // No newer exchange can have completed: it would need this rank's deposit.
        Ok(Arc::clone(&state.published))
    }
}

impl<T: Float> Drop for ThreadGroup<T> {
    fn drop(&mut self) {
        // Wake anyone waiting for this rank; they would otherwise wait forever.
        if let Ok(mut state) = self.shared.state.lock() {
            state.left.get_or_insert(self.rank);
        }
        self.shared.turn.notify_all();
    }
}

impl<T: Float> Collective<T> for ThreadGroup<T> {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn all_gather(&self, local: &[T]) -> Result<Vec<T>> {
        let all = self.exchange(local.to_vec())?;
        let counts: Vec<usize> = all.iter().map(Vec::len).collect();
        if counts.iter().any(|&c| c != local.len()) {
            return Err(Error::invalid(
                "all_gather",
                format!("ranks passed different counts {counts:?}; every rank must pass as many"),
            ));
        }
        Ok(all.concat())
    }
    fn broadcast(&self, values: &mut [T], root: usize) -> Result<()> {
        check_root("broadcast", root, self.shared.size)?;
        let mine = if self.rank == root {
            values.to_vec()
        } else {
            Vec::new()
        };
        let all = self.exchange(mine)?;
        let from_root = &all[root];
        if from_root.len() != values.len() {
            return Err(Error::invalid(
                "broadcast",
                format!(
                    "rank {root} sent {} values, rank {} expected {}",
                    from_root.len(),
                    self.rank,
                    values.len()
                ),
            ));
        }
        values.copy_from_slice(from_root);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.exchange(Vec::new()).map(drop)
    }
}
