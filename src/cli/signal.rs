//! Ctrl-C asks a training run to stop: the first SIGINT sets a flag that the loop checks after
//! each step (it then writes a checkpoint and exits cleanly); a second one ends the process.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

const SIGINT: i32 = 2;

extern "C" fn on_interrupt(_signal: i32) {
    // Only atomics here: this runs inside a signal handler.
    if let Some(flag) = FLAG.get()
        && flag.swap(true, Ordering::SeqCst)
    {
        std::process::exit(130);
    }
}

/// Installs the SIGINT handler that sets `flag` (Unix; elsewhere Ctrl-C ends the process).
pub fn stop_on_interrupt(flag: &Arc<AtomicBool>) {
    if FLAG.set(Arc::clone(flag)).is_err() {
        return;
    }
    #[cfg(unix)]
    #[allow(unsafe_code)]
    {
        unsafe extern "C" {
            fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        }
        // SAFETY: `signal` is the C library's (linked by std on Unix); the handler only reads a
        // OnceLock that is already set and touches atomics, which is async-signal-safe, apart
        // from `exit` on the second interrupt, where ending the process is the intent.
        unsafe {
            signal(SIGINT, on_interrupt);
        }
    }
}
