//! Named moments where a test can kill the process as a scheduler or the OOM
//! killer would (SIGKILL, no clean-up): `NAVE_LAB_FAILPOINT=<name>` at the
//! first time the point is reached, `<name>@<k>` at the k-th. A timer cannot
//! land reliably between, say, an epoch's files and its manifest; these can,
//! and tests/reliability.rs checks that a rerun recovers from each.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static ARMED: OnceLock<Option<(String, usize)>> = OnceLock::new();
static HITS: AtomicUsize = AtomicUsize::new(0);

fn armed() -> &'static Option<(String, usize)> {
    ARMED.get_or_init(|| {
        let spec = std::env::var("NAVE_LAB_FAILPOINT").ok()?;
        match spec.split_once('@') {
            Some((name, k)) => Some((name.to_string(), k.parse().ok()?)),
            None => Some((spec, 1)),
        }
    })
}

/// Kills the process here if the environment names this point.
pub fn hit(name: &str) {
    if let Some((armed, k)) = armed() {
        if armed == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *k {
            // SAFETY: raising a signal takes no pointers.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
        }
    }
}
