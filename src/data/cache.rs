//! On-disk cache of decoded, resized image folders, so that every run of a
//! grid (often one process per run) decodes the JPEGs only once.
//!
//! The key hashes the folder, split, image size, bad-file policy and every
//! file's path, size and modification time: a changed dataset is re-read.
//! An entry is the tensors file and a sidecar written after it that records
//! its size, hash and shape: an entry that does not match its sidecar is
//! rebuilt. Processes building one entry at once take turns (a lock per
//! entry): the second reads what the first wrote.
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{folder, BadFiles, Split, SplitData};

pub struct Cache {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Sidecar {
    class_names: Vec<String>,
    skipped: Vec<PathBuf>,
    /// The tensors file this sidecar describes.
    #[serde(default)]
    tensors: Option<crate::io::FileDigest>,
    /// The images' shape [N, 3, S, S].
    #[serde(default)]
    shape: Vec<i64>,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$NAVE_LAB_CACHE`, else `$XDG_CACHE_HOME/nave-lab`, else `~/.cache/nave-lab`.
    pub fn default_location() -> Option<Self> {
        if let Some(dir) = std::env::var_os("NAVE_LAB_CACHE") {
            return Some(Self::new(PathBuf::from(dir)));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(Self::new(base.join("nave-lab")))
    }

    fn key(
        root: &Path,
        split: Split,
        image_size: i64,
        bad_files: BadFiles,
    ) -> anyhow::Result<String> {
        let (_, files) = folder::list_split(root, split)?;
        let mut h = DefaultHasher::new();
        std::fs::canonicalize(root)
            .unwrap_or_else(|_| root.to_path_buf())
            .hash(&mut h);
        (split.as_str(), image_size, bad_files == BadFiles::Skip).hash(&mut h);
        for (path, label) in &files {
            path.hash(&mut h);
            label.hash(&mut h);
            if let Ok(m) = std::fs::metadata(path) {
                m.len().hash(&mut h);
                m.modified().ok().hash(&mut h);
            }
        }
        Ok(format!(
            "{}-{image_size}-{:016x}",
            split.as_str(),
            h.finish()
        ))
    }

    pub fn get_or_build(
        &self,
        root: &Path,
        split: Split,
        image_size: i64,
        bad_files: BadFiles,
        build: impl FnOnce() -> Result<SplitData, super::DataError>,
    ) -> anyhow::Result<SplitData> {
        let key = Self::key(root, split, image_size, bad_files)?;
        let tensors = self.dir.join(format!("{key}.safetensors"));
        let sidecar = self.dir.join(format!("{key}.json"));
        // One process builds an entry; another waits, then reads it. The
        // cache is an optimisation: when its folder cannot be used, build.
        let lock = std::fs::create_dir_all(&self.dir).ok().and_then(|()| {
            crate::lock::Lock::acquire_waiting(&self.dir.join(format!("{key}.lock")), |holder| {
                crate::info!(
                    "waiting for {holder}, which is decoding the {split} split into the cache"
                );
            })
            .ok()
        });
        if lock.is_some() {
            // Temporaries of this entry left by a dead writer (the lock is held).
            crate::io::remove_stale_temps(&self.dir, &format!("{key}."));
            match Self::read(&tensors, &sidecar, split) {
                Ok(Some(data)) => {
                    crate::detail!("read {split} from the cache {}", tensors.display());
                    return Ok(data);
                }
                Ok(None) => {}
                Err(e) => {
                    crate::warn!("the dataset cache entry is rebuilt: {e:#}");
                }
            }
        }
        let data = build()?;
        if lock.is_some() {
            if let Err(e) = Self::write(&tensors, &sidecar, &data) {
                crate::detail!(
                    "could not write the dataset cache in {}: {e:#}",
                    self.dir.display()
                );
            }
        }
        Ok(data)
    }

    /// The entry, checked against its sidecar; `None` when there is none.
    fn read(tensors: &Path, sidecar: &Path, split: Split) -> anyhow::Result<Option<SplitData>> {
        let Ok(text) = std::fs::read_to_string(sidecar) else {
            return Ok(None);
        };
        let meta: Sidecar = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a cache sidecar", sidecar.display()))?;
        let Some(digest) = &meta.tensors else {
            anyhow::bail!("{} records no checksum (an older cache)", sidecar.display());
        };
        digest.check(tensors, sidecar)?;
        let loaded = Tensor::read_safetensors(tensors)
            .with_context(|| format!("reading {}", tensors.display()))?;
        let get = |name: &str| {
            loaded
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.shallow_clone())
                .with_context(|| format!("{}: no tensor {name}", tensors.display()))
        };
        let (images, labels) = (get("images")?, get("labels")?);
        let labels: Vec<i64> = Vec::try_from(&labels)?;
        anyhow::ensure!(
            images.size() == meta.shape
                && images.kind() == tch::Kind::Uint8
                && meta.shape.first() == Some(&(labels.len() as i64)),
            "{}: images {:?} {:?} and {} labels, the sidecar says {:?}",
            tensors.display(),
            images.kind(),
            images.size(),
            labels.len(),
            meta.shape
        );
        Ok(Some(SplitData {
            split,
            images,
            labels,
            class_names: meta.class_names,
            skipped: meta.skipped,
        }))
    }

    /// The tensors first, then the sidecar that vouches for them.
    fn write(tensors: &Path, sidecar: &Path, data: &SplitData) -> anyhow::Result<()> {
        let labels = Tensor::from_slice(&data.labels);
        crate::io::write_atomic_with(tensors, |tmp| {
            Ok(Tensor::write_safetensors(
                &[("images", &data.images), ("labels", &labels)],
                tmp,
            )?)
        })?;
        let meta = Sidecar {
            class_names: data.class_names.clone(),
            skipped: data.skipped.clone(),
            tensors: Some(crate::io::FileDigest::of_file(tensors)?),
            shape: data.images.size(),
        };
        crate::io::write_atomic(sidecar, serde_json::to_string(&meta)?.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn an_entry_that_does_not_match_its_sidecar_is_rebuilt() {
        let root = std::env::temp_dir().join(format!("nave-cache-{}", std::process::id()));
        for class in ["A", "B"] {
            std::fs::create_dir_all(root.join("train").join(class)).unwrap();
            std::fs::write(root.join("train").join(class).join("x.png"), class).unwrap();
        }
        let cache = Cache::new(root.join("cache"));
        let builds = Cell::new(0);
        let get = || {
            cache
                .get_or_build(&root, Split::Train, 4, BadFiles::Fail, || {
                    builds.set(builds.get() + 1);
                    Ok(SplitData {
                        split: Split::Train,
                        images: Tensor::arange(96, (tch::Kind::Uint8, tch::Device::Cpu))
                            .view([2, 3, 4, 4]),
                        labels: vec![0, 1],
                        class_names: vec!["A".into(), "B".into()],
                        skipped: vec![],
                    })
                })
                .unwrap()
        };
        let first = get();
        let again = get();
        assert_eq!(builds.get(), 1, "the second read comes from the cache");
        assert!(again.images.equal(&first.images) && again.labels == first.labels);

        // A damaged tensors file no longer matches its sidecar: rebuilt.
        let tensors = std::fs::read_dir(root.join("cache"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .unwrap();
        let mut bytes = std::fs::read(&tensors).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        std::fs::write(&tensors, bytes).unwrap();
        let rebuilt = get();
        assert_eq!(builds.get(), 2);
        assert!(rebuilt.images.equal(&first.images));
        let _ = get();
        assert_eq!(builds.get(), 2, "the rebuilt entry is read again");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
