//! File writing that a kill, a full disk or a second writer cannot leave half
//! done: write to a temporary name unique to this writer in the same folder,
//! fsync it, rename it into place, then fsync the folder. Any error on the
//! way (at write, fsync or rename) is returned, and the temporary file removed.
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What marks a temporary file: `.<name>.tmp-<host>-<pid>-<random>`.
const TEMP_MARK: &str = ".tmp-";

/// This machine's name, for temporary names and lock holders (containers on
/// one shared volume often all run as PID 1).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if ok && !name.is_empty() {
        name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    } else {
        "unknown-host".to_string()
    }
}

/// The temporary name used while `path` is being written: unique to this
/// host, process and call, so two writers never share one.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}{TEMP_MARK}{}-{}-{:08x}",
        host_name(),
        std::process::id(),
        rand::random::<u32>()
    ))
}

/// Whether `name` is a temporary file of [`temp_path`].
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARK)
}

/// Removes from `dir` the temporary files of dead writers whose target's
/// name starts with `of` ("" for every file): the caller holds the lock that
/// covers those files, so no live writer owns one. Returns how many.
pub fn remove_stale_temps(dir: &Path, of: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let start = format!(".{of}");
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            is_temp_name(&name) && name.starts_with(&start)
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Flushes a folder's entries (a rename) to the disk. File systems that
/// cannot fsync a folder say so with EINVAL; that is not an error.
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let f = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    match f.sync_all() {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other.with_context(|| format!("syncing {}", dir.display())),
    }
}

/// fsyncs `tmp`, renames it to `path` and fsyncs the folder.
fn commit(tmp: &Path, path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {} (flushing to disk)", path.display()))?;
    std::fs::rename(tmp, path).with_context(|| format!("moving {} into place", path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f =
            std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", path.display()))
    })
}

/// Runs `write` on a temporary path, then moves the result to `path` (see
/// the module's comment). On any error the temporary file is removed.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp = temp_path(path);
    let done = write(&tmp).and_then(|()| commit(&tmp, path));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// `value` as indented JSON, written atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
}

/// `value` as JSON, refused when it holds NaN or an infinity: serde_json
/// writes those as `null`, which reads back as a missing figure (or fails
/// to read at all). Checked by reading the text back as `T`.
pub fn finite_json<T>(value: &T, pretty: bool, what: &Path) -> anyhow::Result<String>
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let text = if pretty {
        serde_json::to_string_pretty(value)?
    } else {
        serde_json::to_string(value)?
    };
    serde_json::from_str::<T>(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: a figure to be written is not a finite number (NaN or infinite; {e}); nothing was written",
            what.display()
        )
    })?;
    Ok(text)
}

/// A file's size and SHA-256, as run-folder manifests record them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
}

/// Reads a file in 1 MiB chunks, handing each to `each` (digests of large
/// files without holding them); returns the number of bytes read.
pub fn for_each_chunk(path: &Path, mut each: impl FnMut(&[u8])) -> anyhow::Result<u64> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(bytes);
        }
        each(&buf[..n]);
        bytes += n as u64;
    }
}

impl FileDigest {
    pub fn of_file(path: &Path) -> anyhow::Result<Self> {
        let mut hasher = Sha256::new();
        let bytes = for_each_chunk(path, |chunk| hasher.update(chunk))?;
        Ok(Self {
            bytes,
            sha256: hex(&hasher.finalize()),
        })
    }

    pub fn of_bytes(data: &[u8]) -> Self {
        Self {
            bytes: data.len() as u64,
            sha256: hex(&Sha256::digest(data)),
        }
    }

    /// An error naming `path` and `manifest` when the file is not this one.
    pub fn check(&self, path: &Path, manifest: &Path) -> anyhow::Result<()> {
        let found = Self::of_file(path).with_context(|| {
            format!(
                "{} names {}, which cannot be read",
                manifest.display(),
                path.display()
            )
        })?;
        if &found != self {
            anyhow::bail!(
                "{} does not match {} ({} bytes, sha256 {}..., recorded {} bytes, {}...): it was changed or damaged after it was written",
                path.display(),
                manifest.display(),
                found.bytes,
                &found.sha256[..12],
                self.bytes,
                &self.sha256[..self.sha256.len().min(12)]
            );
        }
        Ok(())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes an image (RGB, gray, ...) as a PNG, atomically.
pub fn write_png<P>(
    img: &image::ImageBuffer<P, Vec<P::Subpixel>>,
    path: &Path,
) -> anyhow::Result<()>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
{
    write_atomic_with(path, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .with_context(|| format!("writing {}", path.display()))
    })
}

/// Writes a float32 array in NumPy's .npy format (version 1.0, C order), atomically.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> anyhow::Result<()> {
    anyhow::ensure!(
        shape.iter().product::<usize>() == data.len(),
        "npy: shape {shape:?} does not match {} values",
        data.len()
    );
    let dims = shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let shape_text = if shape.len() == 1 {
        format!("({dims},)")
    } else {
        format!("({dims})")
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    let pad = 64 - (10 + header.len() + 1) % 64;
    header.push_str(&" ".repeat(pad % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, &bytes)
}

/// Reads a little-endian float32 .npy file in C order; returns (shape, data).
pub fn read_npy_f32(path: &Path) -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() > 10 && &bytes[..6] == b"\x93NUMPY",
        "{}: not a .npy file",
        path.display()
    );
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).context("npy header")?;
    anyhow::ensure!(
        header.contains("'<f4'") && header.contains("'fortran_order': False"),
        "{}: only little-endian float32 in C order is supported (header {header})",
        path.display()
    );
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .context("npy shape")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let data: Vec<f32> = bytes[start + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    anyhow::ensure!(
        data.len() == shape.iter().product::<usize>(),
        "{}: {} values for shape {shape:?}",
        path.display(),
        data.len()
    );
    Ok((shape, data))
}

/// Seconds since the Unix epoch (0 on a clock set before it).
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A word for the shell, single-quoted where it needs to be: what a message
/// prints for a user to paste, and what a Slurm script runs.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_with_nan_is_refused_before_it_is_written() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Figures {
            loss: f64,
        }
        let path = std::path::Path::new("metrics.jsonl");
        assert!(super::finite_json(&Figures { loss: 0.5 }, false, path).is_ok());
        let err = super::finite_json(&Figures { loss: f64::NAN }, false, path).unwrap_err();
        assert!(
            err.to_string().contains("metrics.jsonl")
                && err.to_string().contains("not a finite number"),
            "{err}"
        );
    }

    #[test]
    fn temporary_names_are_unique_and_recognised() {
        let p = std::path::Path::new("/x/model.safetensors");
        let (a, b) = (super::temp_path(p), super::temp_path(p));
        assert_ne!(a, b, "two writers in one process get two names");
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".model.safetensors.tmp-"), "{name}");
        assert!(
            name.contains(&format!("-{}-", std::process::id())),
            "{name}"
        );
        assert!(super::is_temp_name(&name));
        assert!(!super::is_temp_name("model.safetensors"));
    }

    #[test]
    fn a_failed_write_leaves_neither_the_file_nor_a_temporary() {
        let dir = std::env::temp_dir().join(format!("nave-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("out.bin");
        let err = super::write_atomic_with(&target, |tmp| {
            std::fs::write(tmp, b"half")?;
            anyhow::bail!("disk full")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("disk full"));
        assert!(!target.exists());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "temporary removed"
        );
        super::write_atomic(&target, b"whole").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
        let digest = super::FileDigest::of_file(&target).unwrap();
        assert_eq!(digest, super::FileDigest::of_bytes(b"whole"));
        assert_eq!(digest.bytes, 5);
        digest.check(&target, &dir.join("MANIFEST")).unwrap();
        std::fs::write(&target, b"whale").unwrap();
        let err = digest.check(&target, &dir.join("MANIFEST")).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        std::fs::write(dir.join(".x.tmp-host-1-0"), b"").unwrap();
        assert_eq!(super::remove_stale_temps(&dir, ""), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn npy_round_trip() {
        let p = std::env::temp_dir().join(format!("nave-npy-{}.npy", std::process::id()));
        super::write_npy_f32(&p, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 24) % 64, 0, "header padded to 64 bytes");
        assert_eq!(
            super::read_npy_f32(&p).unwrap(),
            (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5])
        );
        std::fs::remove_file(&p).unwrap();
    }
}
