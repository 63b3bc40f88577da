//! On-disk cache of decoded, resized image folders, so that every run of a
//! grid (often one process per run) decodes the JPEGs only once.
//!
//! The key hashes the folder, split, image size, bad-file policy and every
//! file's path, size and modification time: a changed dataset is re-read.
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
        if let (Ok(loaded), Ok(text)) = (
            Tensor::read_safetensors(&tensors),
            std::fs::read_to_string(&sidecar),
        ) {
            if let Ok(meta) = serde_json::from_str::<Sidecar>(&text) {
                let get = |name: &str| {
                    loaded
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, t)| t.shallow_clone())
                };
                if let (Some(images), Some(labels)) = (get("images"), get("labels")) {
                    crate::detail!("read {split} from the cache {}", tensors.display());
                    return Ok(SplitData {
                        split,
                        images,
                        labels: Vec::try_from(&labels)?,
                        class_names: meta.class_names,
                        skipped: meta.skipped,
                    });
                }
            }
        }
        let data = build()?;
        // The cache is an optimisation: failing to write it is not an error.
        if let Err(e) = self.write(&tensors, &sidecar, &data) {
            crate::detail!(
                "could not write the dataset cache in {}: {e:#}",
                self.dir.display()
            );
        }
        Ok(data)
    }

    fn write(&self, tensors: &Path, sidecar: &Path, data: &SplitData) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let labels = Tensor::from_slice(&data.labels);
        let tmp = tensors.with_extension("safetensors.tmp");
        Tensor::write_safetensors(&[("images", &data.images), ("labels", &labels)], &tmp)?;
        let meta = Sidecar {
            class_names: data.class_names.clone(),
            skipped: data.skipped.clone(),
        };
        crate::io::write_atomic(sidecar, serde_json::to_string(&meta)?.as_bytes())?;
        std::fs::rename(&tmp, tensors)?;
        Ok(())
    }
}
