//! `train --parallel N`: N worker processes of this binary, each running the
//! same `train` command. Each takes the next run no other holds (the run
//! folder's lock), so every run is trained once. SIGTERM or Ctrl-C reaches
//! every worker, and each keeps its last finished epoch.
use std::path::Path;
use std::process::Command;

use anyhow::Context;

/// Starts `workers` processes of `exe` with `words`, with their progress bars
/// hidden and the CPU's cores shared among them (unless OMP_NUM_THREADS is
/// set), forwards a termination signal to each, and waits for all. Returns
/// the workers that failed, named by number and exit status.
pub fn run_workers(exe: &Path, words: &[String], workers: usize) -> anyhow::Result<Vec<String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() / workers.max(1));
    crate::signals::catch_termination();
    let mut children = Vec::with_capacity(workers);
    for w in 0..workers {
        let mut command = Command::new(exe);
        command.args(words).env(crate::ui::NO_PROGRESS_ENV, "1");
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            command.env("OMP_NUM_THREADS", threads.max(1).to_string());
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting worker {} ({})", w + 1, exe.display()))?;
        children.push(Some(child));
        // A moment between starts, so that each takes a different first run
        // instead of all racing for the first lock.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mut failed = Vec::new();
    let mut forwarded = false;
    while children.iter().any(Option::is_some) {
        if let (Some(stopped), false) = (crate::signals::received(), forwarded) {
            for child in children.iter().flatten() {
                // SAFETY: kill(2) on the pid of a child not yet reaped.
                unsafe { libc::kill(child.id() as libc::pid_t, stopped.signal) };
            }
            forwarded = true;
        }
        for (w, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    failed.push(format!("worker {} ({status})", w + 1));
                }
                *slot = None;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(failed)
}
