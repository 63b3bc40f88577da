//! Advisory locks on folders (a run folder, a report, a dataset cache entry):
//! one process at a time works in one, so a requeued or doubled job cannot
//! interleave its files with another's. The lock is the operating system's
//! (`flock`, through std's `File::try_lock`): it goes away with the process
//! that holds it, SIGKILL included, and is never left behind.
//!
//! Some cluster file systems refuse `flock` (Lustre mounted `noflock`, NFS
//! mounted `nolock`): `NAVE_LAB_LOCKS=<folder>` keeps the lock files in a
//! local folder instead (named by the path they stand for; every process
//! that shares a study must see the same folder, so one machine), and
//! `NAVE_LAB_LOCKS=off` takes no locks at all, which is unsafe as soon as
//! two processes work on one study.
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct Lock {
    /// `None` under `NAVE_LAB_LOCKS=off`.
    _file: Option<File>,
    pub path: PathBuf,
}

/// Where locks are kept (`NAVE_LAB_LOCKS`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placement {
    /// Beside what they lock (the default).
    Beside,
    /// In this folder, named after the path they stand for.
    In(PathBuf),
    /// Not at all.
    Off,
}

fn placement() -> Placement {
    match std::env::var_os("NAVE_LAB_LOCKS") {
        None => Placement::Beside,
        Some(v) if v.is_empty() => Placement::Beside,
        Some(v) if v == "off" => Placement::Off,
        Some(v) => Placement::In(PathBuf::from(v)),
    }
}

/// The file that holds the lock for `path`: itself, or under
/// `NAVE_LAB_LOCKS=<folder>` a file there named by the SHA-256 of its
/// absolute path (so that every process finds the same one).
fn lock_file(path: &Path) -> PathBuf {
    match placement() {
        Placement::In(dir) => {
            use sha2::{Digest, Sha256};
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            let digest = Sha256::digest(absolute.as_os_str().as_encoded_bytes());
            let stem = path
                .parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            dir.join(format!("{stem}-{}.lock", &crate::io::hex(&digest)[..16]))
        }
        _ => path.to_path_buf(),
    }
}

/// The error for a file system that refuses locks, with the way round it.
fn lock_error(e: std::io::Error, path: &Path) -> anyhow::Error {
    let refused = matches!(
        e.raw_os_error(),
        Some(libc::ENOLCK) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
    );
    if refused {
        anyhow::anyhow!(
            "locking {}: the file system refuses locks ({e}; Lustre mounted noflock or NFS mounted nolock?). \
             Keep the locks on a local folder with NAVE_LAB_LOCKS=/tmp/nave-lab-locks (every process of a study \
             must then run on this machine), or turn them off with NAVE_LAB_LOCKS=off, which is unsafe as soon \
             as two processes work on one study",
            path.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("locking {}", path.display()))
    }
}

/// Who holds a lock, as the holder wrote it: "pid 123 on host, since ...".
pub fn holder(path: &Path) -> String {
    let mut text = String::new();
    let _ = File::open(lock_file(path)).and_then(|mut f| f.read_to_string(&mut text));
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
    let since = crate::io::unix_seconds();
    // Written to the file the lock lives in (`lock_file`), which `file` is.
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
        _file: Some(file),
        path: path.to_path_buf(),
    }
}

impl Lock {
    /// The lock at `path` (created if missing), or `None` when another
    /// process holds it (see [`holder`]).
    pub fn try_acquire(path: &Path) -> anyhow::Result<Option<Lock>> {
        if placement() == Placement::Off {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                crate::warn!(
                    "NAVE_LAB_LOCKS=off: nothing is locked; two processes working on one study will corrupt it"
                );
            });
            return Ok(Some(Lock {
                _file: None,
                path: path.to_path_buf(),
            }));
        }
        let file = open(&lock_file(path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(note_holder(file, path))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(lock_error(e, path)),
        }
    }

    /// The lock at `path`, waiting as long as another process holds it;
    /// `waiting` is called once, with the holder, when it has to wait.
    pub fn acquire_waiting(path: &Path, waiting: impl FnOnce(&str)) -> anyhow::Result<Lock> {
        Ok(Self::acquire_within(path, waiting, None)?.expect("no time limit"))
    }

    /// The lock at `path`, waiting at most `limit` (`None`: as long as it
    /// takes) while another process holds it; `None` when the time ran out.
    pub fn acquire_within(
        path: &Path,
        waiting: impl FnOnce(&str),
        limit: Option<Duration>,
    ) -> anyhow::Result<Option<Lock>> {
        if let Some(lock) = Self::try_acquire(path)? {
            return Ok(Some(lock));
        }
        waiting(&holder(path));
        let started = std::time::Instant::now();
        loop {
            if limit.is_some_and(|l| started.elapsed() >= l) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(200));
            if let Some(lock) = Self::try_acquire(path)? {
                return Ok(Some(lock));
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

    #[test]
    fn a_file_system_without_locks_is_named_with_the_fix() {
        for code in [libc::ENOLCK, libc::ENOSYS] {
            let e = lock_error(
                std::io::Error::from_raw_os_error(code),
                Path::new("/lustre/ck/x/.lock"),
            );
            let text = format!("{e:#}");
            assert!(
                text.contains("/lustre/ck/x/.lock")
                    && text.contains("NAVE_LAB_LOCKS=/")
                    && text.contains("NAVE_LAB_LOCKS=off")
                    && text.contains("unsafe"),
                "{text}"
            );
        }
        let other = format!(
            "{:#}",
            lock_error(
                std::io::Error::from_raw_os_error(libc::EACCES),
                Path::new("/x")
            )
        );
        assert!(!other.contains("NAVE_LAB_LOCKS"), "{other}");
    }

    #[test]
    fn waiting_gives_up_after_its_limit() {
        let path =
            std::env::temp_dir().join(format!("nave-lock-wait-{}/.lock", std::process::id()));
        let _held = Lock::try_acquire(&path).unwrap().expect("free at first");
        let started = std::time::Instant::now();
        let mut told = None;
        let got = Lock::acquire_within(
            &path,
            |h| told = Some(h.to_string()),
            Some(Duration::from_millis(300)),
        )
        .unwrap();
        assert!(got.is_none() && started.elapsed() >= Duration::from_millis(300));
        assert!(told.unwrap().contains("pid"));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
