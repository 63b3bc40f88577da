//! A folder rebuilt as a whole (an experiment's report) and swapped in at
//! once: the new one is written beside it, `.<name>.staging/`, then exchanged
//! with the old one in one atomic rename (Linux's RENAME_EXCHANGE; where a
//! file system lacks it, two renames, and the next start puts a lone
//! `.<name>.old/` back). A killed rebuild leaves the previous folder whole.
//! One process rebuilds a folder at a time (`.<name>.lock` beside it).
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::lock::Lock;

pub struct StagedFolder {
    target: PathBuf,
    staging: PathBuf,
    _lock: Lock,
}

/// An abandoned rebuild (an error on the way) removes what it wrote; the
/// lock file stays, as lock files must (see `lock`).
impl Drop for StagedFolder {
    fn drop(&mut self) {
        if self.staging.exists() {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// `parent/.<name>.<suffix>`, beside `target`.
fn beside(target: &Path, suffix: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.{suffix}"))
}

impl StagedFolder {
    /// Starts rebuilding `target`; an error when another process is.
    pub fn begin(target: &Path) -> anyhow::Result<Self> {
        let lock_path = beside(target, "lock");
        let Some(lock) = Lock::try_acquire(&lock_path)? else {
            anyhow::bail!(
                "{} is being written by {}; wait for it to finish",
                target.display(),
                crate::lock::holder(&lock_path)
            );
        };
        let (staging, old) = (beside(target, "staging"), beside(target, "old"));
        // A swap interrupted between its two renames: the old folder goes back.
        if old.is_dir() && !target.exists() {
            std::fs::rename(&old, target).with_context(|| {
                format!("restoring {} from {}", target.display(), old.display())
            })?;
        }
        for leftover in [&staging, &old] {
            if leftover.exists() {
                std::fs::remove_dir_all(leftover)
                    .with_context(|| format!("removing {}", leftover.display()))?;
            }
        }
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        Ok(Self {
            target: target.to_path_buf(),
            staging,
            _lock: lock,
        })
    }

    /// Where the new folder is written.
    pub fn dir(&self) -> &Path {
        &self.staging
    }

    /// The folder being replaced (may not exist), to reuse from.
    pub fn previous(&self) -> &Path {
        &self.target
    }

    /// The folder's final place.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Puts the new folder in place of the old one.
    pub fn commit(self) -> anyhow::Result<()> {
        let parent = self.target.parent().unwrap_or(Path::new("."));
        if !self.target.exists() {
            std::fs::rename(&self.staging, &self.target)
                .with_context(|| format!("moving {} into place", self.target.display()))?;
        } else if exchange(&self.staging, &self.target).is_err() {
            let old = beside(&self.target, "old");
            std::fs::rename(&self.target, &old)
                .with_context(|| format!("moving {} aside", self.target.display()))?;
            crate::failpoint::hit("swap-half");
            std::fs::rename(&self.staging, &self.target)
                .with_context(|| format!("moving {} into place", self.target.display()))?;
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        // After an exchange the staging name holds the old folder; Drop removes it.
        crate::io::sync_dir(parent)
    }
}

/// Swaps two paths in one step (renameat2 with RENAME_EXCHANGE).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let (a, b) = (
        CString::new(a.as_os_str().as_bytes())?,
        CString::new(b.as_os_str().as_bytes())?,
    );
    // SAFETY: two NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_folder_replaces_the_old_whole_and_an_abandoned_one_changes_nothing() {
        let root = std::env::temp_dir().join(format!("nave-staging-{}", std::process::id()));
        let target = root.join("report");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("index.html"), "old").unwrap();

        let abandoned = StagedFolder::begin(&target).unwrap();
        assert!(
            StagedFolder::begin(&target).is_err(),
            "one writer at a time"
        );
        std::fs::write(abandoned.dir().join("index.html"), "half").unwrap();
        drop(abandoned); // an error on the way: what it wrote is removed
        assert!(!root.join(".report.staging").exists());
        // What a killed rebuild leaves: its staging folder, half written.
        std::fs::create_dir_all(root.join(".report.staging")).unwrap();
        std::fs::write(root.join(".report.staging/index.html"), "half").unwrap();
        assert_eq!(
            std::fs::read_to_string(target.join("index.html")).unwrap(),
            "old"
        );

        let staged = StagedFolder::begin(&target).unwrap();
        assert!(
            !staged.dir().join("index.html").exists(),
            "leftovers removed"
        );
        std::fs::write(staged.dir().join("index.html"), "new").unwrap();
        staged.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(target.join("index.html")).unwrap(),
            "new"
        );
        let names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".staging") || n.ends_with(".old")),
            "{names:?}"
        );

        // A swap killed between its two renames (file systems without
        // RENAME_EXCHANGE): the next start puts the old folder back.
        std::fs::rename(&target, root.join(".report.old")).unwrap();
        let staged = StagedFolder::begin(&target).unwrap();
        assert_eq!(
            std::fs::read_to_string(target.join("index.html")).unwrap(),
            "new"
        );
        drop(staged);
        assert!(
            !root.join(".report.staging").exists(),
            "an abandoned rebuild cleans up"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
