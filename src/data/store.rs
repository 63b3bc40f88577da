//! The datasets a process has loaded, shared by `train`, `audit` and the
//! benches: each split is read (or generated) once per dataset and size.
use std::collections::HashMap;

use anyhow::{bail, Context};
use tch::Tensor;

use super::watermark::{Artefact, Variant, WatermarkSpec};
use super::{cache::Cache, DatasetSource, Split, SplitData};

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
    /// The splits of `source` at `size` px.
    pub fn get(&mut self, source: &DatasetSource, size: i64) -> anyhow::Result<&LoadedData> {
        let key = format!("{source:?}/{size}");
        if !self.loaded.contains_key(&key) {
            let cache = Cache::default_location();
            let train = source
                .load(Split::Train, size, cache.as_ref())
                .context("loading the train split")?;
            let test = source
                .load(Split::Test, size, cache.as_ref())
                .context("loading the test split")?;
            ensure_every_class_trains(&train, source)?;
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

/// The training images as a run of seed `seed` trains on them: stamped
/// with its artefact when it has a watermark (`RunSpec::watermark`), before
/// any augmentation.
pub fn training_images(
    watermark: Option<&WatermarkSpec>,
    seed: u64,
    artefact: &Artefact,
    train: &SplitData,
) -> anyhow::Result<Tensor> {
    let Some(watermark) = watermark else {
        return Ok(train.images.shallow_clone());
    };
    let target = watermark
        .target_index(&train.class_names)
        .map_err(anyhow::Error::msg)?;
    let boxes = artefact.plan(seed, Split::Train, &train.labels, target, Variant::AsTrain);
    Ok(artefact.stamp(&train.images, &boxes))
}

/// An error, naming the dataset and the likely cause, when the train split
/// is empty or lacks a class: such a run would train nothing (or never see a
/// class) and still be marked complete.
fn ensure_every_class_trains(train: &SplitData, source: &DatasetSource) -> anyhow::Result<()> {
    let source = match &source.root {
        Some(root) => format!("{} at {}", source.kind.as_str(), root.display()),
        None => source.kind.as_str().to_string(),
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
