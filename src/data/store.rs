//! The datasets a process has loaded, shared by `train`, `audit` and the
//! benches: each split is read (or generated) once per dataset and size.
use std::collections::HashMap;

use anyhow::{bail, Context};
use tch::Tensor;

use super::watermark::{Artefact, Variant};
use super::{cache::Cache, Split, SplitData};
use crate::config::RunSpec;

/// The train and test splits of a dataset at one image size, loaded once per process.
pub struct LoadedData {
    pub train: SplitData,
    pub test: SplitData,
    /// SHA-256 of both splits' images, labels and class names: what an
    /// audit's result was computed from, beside the weights.
    pub fingerprint: String,
}

/// The SHA-256 of the splits' contents.
fn fingerprint(splits: &[&SplitData]) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for split in splits {
        let images = split.images.contiguous();
        h.update(format!("{:?}{:?}", images.size(), images.kind()).as_bytes());
        h.update(Vec::<u8>::try_from(&images.flatten(0, -1))?);
        for label in &split.labels {
            h.update(label.to_le_bytes());
        }
        h.update(split.class_names.join("\n").as_bytes());
    }
    Ok(crate::io::hex(&h.finalize()))
}

/// Loads (and caches in memory across runs) the splits each run needs.
#[derive(Default)]
pub struct DataStore {
    loaded: HashMap<String, LoadedData>,
}

impl DataStore {
    pub fn get(&mut self, spec: &RunSpec) -> anyhow::Result<&LoadedData> {
        let key = format!("{:?}/{}", spec.dataset, spec.dataset.image_size);
        if !self.loaded.contains_key(&key) {
            let source = spec.dataset.source();
            let cache = Cache::default_location();
            let size = spec.dataset.image_size;
            let train = source
                .load(Split::Train, size, cache.as_ref())
                .context("loading the train split")?;
            let test = source
                .load(Split::Test, size, cache.as_ref())
                .context("loading the test split")?;
            ensure_every_class_trains(&train, spec)?;
            if train.class_names != test.class_names {
                bail!(
                    "the train classes {:?} differ from the test classes {:?}",
                    train.class_names,
                    test.class_names
                );
            }
            for split in [&train, &test] {
                if !split.skipped.is_empty() {
                    crate::warn!(
                        "{} undecodable file(s) skipped in the {} split, e.g. {}",
                        split.skipped.len(),
                        split.split,
                        split.skipped[0].display()
                    );
                }
            }
            let fingerprint = fingerprint(&[&train, &test])?;
            self.loaded.insert(
                key.clone(),
                LoadedData {
                    train,
                    test,
                    fingerprint,
                },
            );
        }
        Ok(&self.loaded[&key])
    }
}

/// The training images as the run trains on them: stamped with its artefact
/// (watermark runs), before any augmentation.
pub fn training_images(
    spec: &RunSpec,
    artefact: &Artefact,
    train: &SplitData,
) -> anyhow::Result<Tensor> {
    if !spec.watermark {
        return Ok(train.images.shallow_clone());
    }
    let target = spec
        .watermark_spec
        .target_index(&train.class_names)
        .map_err(anyhow::Error::msg)?;
    let boxes = artefact.plan(
        spec.seed,
        Split::Train,
        &train.labels,
        target,
        Variant::AsTrain,
    );
    Ok(artefact.stamp(&train.images, &boxes))
}

/// An error, naming the dataset and the likely cause, when the train split
/// is empty or lacks a class: such a run would train nothing (or never see a
/// class) and still be marked complete.
fn ensure_every_class_trains(train: &SplitData, spec: &RunSpec) -> anyhow::Result<()> {
    let source = match &spec.dataset.root {
        Some(root) => format!("{} at {}", spec.dataset.kind.as_str(), root.display()),
        None => spec.dataset.kind.as_str().to_string(),
    };
    let hint = if train.skipped.is_empty() {
        "check the dataset (synthetic.train, the class folders)".to_string()
    } else {
        format!(
            "{} file(s) could not be decoded, e.g. {} (Git LFS pointers? run `git lfs pull`)",
            train.skipped.len(),
            train.skipped[0].display()
        )
    };
    if train.is_empty() {
        bail!("the train split of {source} has no images: {hint}");
    }
    for (c, name) in train.class_names.iter().enumerate() {
        if !train.labels.contains(&(c as i64)) {
            bail!("the train split of {source} has no image of class {name}: {hint}");
        }
    }
    Ok(())
}
