//! SIGTERM and SIGINT during training: what a scheduler sends before it kills
//! a job (and Ctrl-C). The first one is only noted; the training loop ends
//! the current step, keeps the last finished epoch's checkpoint and stops with
//! an error. A second one kills at once (the handler is reset on delivery).
use std::sync::atomic::{AtomicI32, Ordering};

/// The signal received, or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn note(signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// Routes SIGTERM and SIGINT to [`received`] from now on.
pub fn catch_termination() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installs a handler that only stores to an atomic; the
        // struct is zeroed, then its handler, mask and flags are set.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = note as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The termination signal received since [`catch_termination`], if any.
pub fn received() -> Option<Stopped> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(Stopped { signal }),
    }
}

/// A run stopped by a signal; the process exits with 128 + the signal's number.
#[derive(Debug, thiserror::Error)]
#[error("stopped by {}", signal_name(*.signal))]
pub struct Stopped {
    pub signal: i32,
}

impl Stopped {
    pub fn exit_code(&self) -> i32 {
        128 + self.signal
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT (Ctrl-C)",
        _ => "a signal",
    }
}
