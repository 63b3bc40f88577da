//! Unpacking a downloaded archive into place: everything is extracted into
//! a temporary folder beside the destination, the folder the data set needs
//! is picked out of it and renamed into place in one step, and the rest is
//! removed. An interrupted unpack leaves only the temporary folder, which
//! the next one removes. An archive is a file from outside: only folders
//! and plain files are unpacked (a link could make a later step read or
//! move what lies elsewhere), no name leaves the temporary folder, and what
//! it unpacks to is bounded.
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Unpacks `archive` (`.tar.gz`, `.tgz` or `.zip`) and moves the folder
/// `pick` finds in it to `dest`. `dest` must not exist yet.
///
/// Only folders and plain files are unpacked (links are refused), no name
/// leaves the staging folder, the picked folder must resolve to a place
/// inside it, and at most `limit` bytes are written (default
/// [`default_unpack_limit`]; past it the error is a [`TooLarge`]).
pub fn unpack_into(
    archive: &Path,
    dest: &Path,
    limit: Option<u64>,
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
    let result = extract(archive, &staging, limit).and_then(|()| {
        let found = pick(&staging).with_context(|| {
            format!(
                "{}: the archive does not hold the expected folder for {}",
                archive.display(),
                dest.display()
            )
        })?;
        let (root, resolved) = (staging.canonicalize()?, found.canonicalize()?);
        anyhow::ensure!(
            resolved.starts_with(&root) && !is_link(&found),
            "{}: the folder picked for {} resolves to {}, outside the unpacked archive; refused",
            archive.display(),
            dest.display(),
            resolved.display()
        );
        std::fs::rename(&found, dest)
            .with_context(|| format!("moving {} into place", dest.display()))?;
        crate::io::sync_dir(parent)
    });
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
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

/// An archive that unpacks to more bytes than its limit: likely a good
/// file larger than expected (raise the limit) or a decompression bomb, so
/// the archive is kept and the error says which flag raises the limit.
#[derive(Debug, thiserror::Error)]
#[error("{archive}: unpacks to more than {limit} bytes, the limit for an archive of its size; if the data set really is this large, raise it with --max-unpacked (e.g. --max-unpacked {suggest})")]
pub struct TooLarge {
    pub archive: String,
    pub limit: u64,
    pub suggest: String,
}

/// The default limit on what an archive of `len` bytes may unpack to: four
/// times its size (images hardly compress; STL-10 unpacks to 1.2 times its
/// archive), and at least 64 MiB.
pub fn default_unpack_limit(len: u64) -> u64 {
    (4 * len).max(64 << 20)
}

/// Counts what is written against the limit.
struct Budget<'a> {
    archive: &'a Path,
    left: u64,
    limit: u64,
}

impl Budget<'_> {
    fn too_large(&self) -> anyhow::Error {
        TooLarge {
            archive: self.archive.display().to_string(),
            limit: self.limit,
            suggest: format!("{}G", (self.limit >> 30) * 2 + 1),
        }
        .into()
    }

    /// Copies at most what is left of the budget from `from` into a new
    /// file at `to`; an entry's declared size may lie, so the bytes count.
    fn copy(&mut self, from: &mut dyn Read, to: &Path) -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .with_context(|| format!("creating {}", to.display()))?;
        let written = std::io::copy(&mut from.take(self.left + 1), &mut file)
            .with_context(|| format!("unpacking {}", to.display()))?;
        if written > self.left {
            return Err(self.too_large());
        }
        self.left -= written;
        Ok(())
    }
}

/// Where an entry named `name` lands under `into`, or an error when the name
/// would leave it (absolute, `..`, a drive prefix).
fn inside(into: &Path, name: &Path, archive: &Path) -> anyhow::Result<PathBuf> {
    use std::path::Component;
    let mut out = into.to_path_buf();
    for part in name.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => bail!(
                "{}: the entry {} points outside the folder it unpacks into; refused",
                archive.display(),
                name.display()
            ),
        }
    }
    Ok(out)
}

/// Creates `dir` and the folders above it under `into`, refusing to go
/// through anything that is not a plain folder (there are no links in the
/// staging folder, but an earlier entry must not be mistaken for one).
fn create_folders(into: &Path, dir: &Path) -> anyhow::Result<()> {
    let rel = dir.strip_prefix(into).unwrap_or(Path::new(""));
    let mut at = into.to_path_buf();
    for part in rel.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!(
                "{} is a file where the archive needs a folder",
                at.display()
            ),
            Err(_) => {
                std::fs::create_dir(&at).with_context(|| format!("creating {}", at.display()))?
            }
        }
    }
    Ok(())
}

fn extract(archive: &Path, into: &Path, limit: Option<u64>) -> anyhow::Result<()> {
    std::fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
    let name = archive.to_string_lossy();
    let file =
        std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let limit = limit.unwrap_or_else(|| default_unpack_limit(len));
    let mut budget = Budget {
        archive,
        left: limit,
        limit,
    };
    let bar = crate::ui::byte_bar(Some(len), "unpacking");
    let reader = bar.wrap_read(std::io::BufReader::new(file));
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        extract_tar(reader, archive, into, &mut budget)?;
    } else if name.ends_with(".zip") {
        // Zip needs to seek: read from the file itself.
        drop(reader);
        let file = std::fs::File::open(archive)?;
        extract_zip(file, archive, into, &mut budget)?;
    } else {
        bail!("{}: not a .tar.gz or .zip archive", archive.display());
    }
    bar.finish_and_clear();
    Ok(())
}

/// A tar.gz's folders and plain files; a link (symbolic or hard), a device,
/// a FIFO or a sparse file is refused: a link could make a later step
/// read or move what lies elsewhere on disk.
fn extract_tar(
    reader: impl Read,
    archive: &Path,
    into: &Path,
    budget: &mut Budget,
) -> anyhow::Result<()> {
    use tar::EntryType;
    let unpacking = || format!("unpacking {}", archive.display());
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    for entry in tar.entries().with_context(unpacking)? {
        let mut entry = entry.with_context(unpacking)?;
        let path = entry.path().with_context(unpacking)?.into_owned();
        let to = inside(into, &path, archive)?;
        match entry.header().entry_type() {
            EntryType::Directory => create_folders(into, &to)?,
            EntryType::Regular | EntryType::Continuous => {
                create_folders(into, to.parent().unwrap_or(into))?;
                budget.copy(&mut entry, &to)?;
            }
            // Metadata records that the reader applies itself.
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName => {}
            other => bail!(
                "{}: the entry {} is {}; nave-lab unpacks only folders and plain files (refused)",
                archive.display(),
                path.display(),
                match other {
                    EntryType::Symlink => "a symbolic link".to_string(),
                    EntryType::Link => "a hard link".to_string(),
                    other => format!("of type {other:?}"),
                }
            ),
        }
    }
    Ok(())
}

/// A zip's folders and plain files; a symbolic link is refused.
fn extract_zip(
    file: std::fs::File,
    archive: &Path,
    into: &Path,
    budget: &mut Budget,
) -> anyhow::Result<()> {
    let unpacking = || format!("unpacking {}", archive.display());
    let mut zip = zip::ZipArchive::new(file).with_context(unpacking)?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).with_context(unpacking)?;
        let raw = PathBuf::from(entry.name());
        let to = inside(into, &raw, archive)?;
        if entry.is_symlink() {
            bail!(
                "{}: the entry {} is a symbolic link; nave-lab unpacks only folders and plain files (refused)",
                archive.display(),
                raw.display()
            );
        }
        if entry.is_dir() {
            create_folders(into, &to)?;
        } else {
            create_folders(into, to.parent().unwrap_or(into))?;
            budget.copy(&mut entry, &to)?;
        }
    }
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
        // symlink_metadata: a link to a folder is not a folder here.
        .filter(|p| {
            std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) && !p.ends_with("__MACOSX")
        })
        .collect();
    dirs.sort();
    dirs.iter().find_map(|d| find_folder(d, depth - 1, is_it))
}
