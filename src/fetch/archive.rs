//! Unpacking a downloaded archive into place: everything is extracted into
//! a temporary folder beside the destination, the folder the data set needs
//! is picked out of it and renamed into place in one step, and the rest is
//! removed. An interrupted unpack leaves only the temporary folder, which
//! the next one removes.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Unpacks `archive` (`.tar.gz`, `.tgz` or `.zip`) and moves the folder
/// `pick` finds in it to `dest`. `dest` must not exist yet.
pub fn unpack_into(
    archive: &Path,
    dest: &Path,
    pick: impl Fn(&Path) -> Option<PathBuf>,
) -> anyhow::Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let dest_name = dest
        .file_name()
        .context("the destination has no folder name")?
        .to_string_lossy()
        .into_owned();
    let _lock = crate::lock::Lock::acquire_waiting(
        &parent.join(format!(".{dest_name}.unpack.lock")),
        |holder| {
            crate::info!(
                "waiting for {holder}, which is unpacking into {}",
                dest.display()
            )
        },
    )?;
    if dest.exists() {
        bail!(
            "{} already exists; remove it to unpack {} again",
            dest.display(),
            archive.display()
        );
    }
    remove_stale_staging(parent, &dest_name);
    let staging = crate::io::temp_path(dest);
    let result = extract(archive, &staging).and_then(|()| {
        let found = pick(&staging).with_context(|| {
            format!(
                "{}: the archive does not hold the expected folder for {}",
                archive.display(),
                dest.display()
            )
        })?;
        std::fs::rename(&found, dest)
            .with_context(|| format!("moving {} into place", dest.display()))?;
        crate::io::sync_dir(parent)
    });
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Temporary folders of unpacks that died (the caller holds the lock).
fn remove_stale_staging(parent: &Path, dest_name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let start = format!(".{dest_name}");
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if crate::io::is_temp_name(&name) && name.starts_with(&start) && e.path().is_dir() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn extract(archive: &Path, into: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
    let name = archive.to_string_lossy();
    let file =
        std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let bar = crate::ui::byte_bar(file.metadata().ok().map(|m| m.len()), "unpacking");
    let reader = bar.wrap_read(std::io::BufReader::new(file));
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        // `unpack` refuses entries that would land outside `into`.
        tar::Archive::new(flate2::read::GzDecoder::new(reader))
            .unpack(into)
            .with_context(|| format!("unpacking {}", archive.display()))?;
    } else if name.ends_with(".zip") {
        // Zip needs to seek: read from the file itself.
        drop(reader);
        let file = std::fs::File::open(archive)?;
        zip::ZipArchive::new(file)
            .and_then(|mut z| z.extract(into))
            .with_context(|| format!("unpacking {}", archive.display()))?;
    } else {
        bail!("{}: not a .tar.gz or .zip archive", archive.display());
    }
    bar.finish_and_clear();
    Ok(())
}

/// The first folder at most `depth` levels below `root` (itself included)
/// that `is_it` accepts, in name order; macOS's `__MACOSX` copies skipped.
pub fn find_folder(root: &Path, depth: usize, is_it: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    if is_it(root) {
        return Some(root.to_path_buf());
    }
    if depth == 0 {
        return None;
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.ends_with("__MACOSX"))
        .collect();
    dirs.sort();
    dirs.iter().find_map(|d| find_folder(d, depth - 1, is_it))
}
