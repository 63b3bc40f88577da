//! Advisory locks on folders (a run folder, a report, a dataset cache entry):
//! one process at a time works in one, so a requeued or doubled job cannot
//! interleave its files with another's. The lock is the operating system's
//! (`flock`, through std's `File::try_lock`): it goes away with the process
//! that holds it, SIGKILL included, and is never left behind.
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct Lock {
    _file: File,
    pub path: PathBuf,
}

/// Who holds a lock, as the holder wrote it: "pid 123 on host, since ...".
pub fn holder(path: &Path) -> String {
    let mut text = String::new();
    let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    let text = text.trim();
    if text.is_empty() {
        "another process".to_string()
    } else {
        text.to_string()
    }
}

fn open(path: &Path) -> anyhow::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Not truncated on open: that would erase the holder's note.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))
}

fn note_holder(mut file: File, path: &Path) -> Lock {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let note = format!(
        "pid {} on {}, since unix time {since}",
        std::process::id(),
        crate::io::host_name()
    );
    // The note only informs whoever waits; failing to write it changes nothing.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(note.as_bytes()));
    Lock {
        _file: file,
        path: path.to_path_buf(),
    }
}

impl Lock {
    /// The lock at `path` (created if missing), or `None` when another
    /// process holds it (see [`holder`]).
    pub fn try_acquire(path: &Path) -> anyhow::Result<Option<Lock>> {
        let file = open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(note_holder(file, path))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }

    /// The lock at `path`, waiting as long as another process holds it;
    /// `waiting` is called once, with the holder, when it has to wait.
    pub fn acquire_waiting(path: &Path, waiting: impl FnOnce(&str)) -> anyhow::Result<Lock> {
        if let Some(lock) = Self::try_acquire(path)? {
            return Ok(lock);
        }
        waiting(&holder(path));
        loop {
            std::thread::sleep(Duration::from_millis(200));
            if let Some(lock) = Self::try_acquire(path)? {
                return Ok(lock);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_and_names_its_holder_until_dropped() {
        let path = std::env::temp_dir().join(format!("nave-lock-{}/.lock", std::process::id()));
        let first = Lock::try_acquire(&path).unwrap().expect("free at first");
        assert!(Lock::try_acquire(&path).unwrap().is_none(), "held");
        let who = holder(&path);
        assert!(
            who.contains(&format!("pid {}", std::process::id())),
            "{who}"
        );
        drop(first);
        assert!(
            Lock::try_acquire(&path).unwrap().is_some(),
            "released on drop"
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
