//! Allocator tuning for training loops that allocate and free the same large buffers every step.
//!
//! Every activation and gradient of a step is a fresh `Vec`, and most are megabytes. glibc's
//! `malloc` serves blocks above its mmap threshold (128 KiB, rising to at most 32 MiB as such
//! blocks are freed) with a fresh `mmap`, and `free` hands them straight back with `munmap`;
//! below the threshold, freed memory at the top of the heap is returned once it exceeds the trim
//! threshold. Either way the next step faults every page in again, and the kernel zeroes each
//! one: a Fashion-MNIST run spent 7 m 45 s of its 10 minutes in system time that way.
//! [`tune_allocator`] tells glibc to serve every block from its heaps and never to shrink them,
//! so a step reuses the pages of the step before. It also keeps every thread on the main heap:
//! the heaps of glibc's other arenas (one per thread that allocates, so the rayon workers that
//! run a training step) are unmapped whenever they fall entirely free, whatever the trim
//! threshold says, and with some batch shapes that happened every step (measured: 11k page
//! faults a step on `cnn_step`, +30% time). The cost is that the process keeps its peak memory
//! until it exits, which a training run reaches anyway on its first step, and that threads
//! share one allocator lock, which the kernels here take only a few times per op.

use std::sync::OnceLock;

/// Keeps freed memory for reuse instead of returning it to the kernel (glibc only; elsewhere a
/// no-op). Idempotent; call it once at the start of a program that trains or benchmarks.
/// Returns whether the settings were applied.
pub fn tune_allocator() -> bool {
    static APPLIED: OnceLock<bool> = OnceLock::new();
    *APPLIED.get_or_init(apply)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // glibc's parameter numbers (malloc.h).
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_MAX: i32 = -4;
    const M_ARENA_MAX: i32 = -8;
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: `mallopt` is glibc's (linked by std on this target); it takes two integers, only
    // changes the allocator's tuning parameters, and is thread-safe (it takes the arena locks).
    // -1 disables trimming; a maximum of 0 mmapped blocks makes every block come from a heap;
    // one arena puts every thread on the main heap (threads that already allocated keep theirs).
    unsafe {
        mallopt(M_TRIM_THRESHOLD, -1) == 1
            && mallopt(M_MMAP_MAX, 0) == 1
            && mallopt(M_ARENA_MAX, 1) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}
