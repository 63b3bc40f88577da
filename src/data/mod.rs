//! Datasets, watermark injection, augmentation and batches.
//!
//! Every dataset is read once into a [`SplitData`]: its images resized to the
//! experiment's `image_size` and kept decoded as one uint8 tensor, so that no
//! epoch after the first decodes a file again. Everything downstream (watermark,
//! augmentation, normalisation) works on that tensor.
pub use pixel_box::PixelBox;
pub mod cache;
pub mod folder;
pub mod image_file;
pub mod labelled;
pub mod loader;
pub mod pixel_box;
pub mod show;
pub mod stl10;
pub mod store;
pub mod synthetic;
pub mod transforms;
pub mod watermark;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// ImageNet statistics, the normalisation every model here is trained with.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// A small number mixed into seeds so that splits draw different watermark positions.
    pub fn seed_tag(self) -> u64 {
        match self {
            Split::Train => 1,
            Split::Val => 2,
            Split::Test => 3,
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    Stl10,
    ChestXray,
    Synthetic,
}

impl DatasetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetKind::Stl10 => "stl10",
            DatasetKind::ChestXray => "chest-xray",
            DatasetKind::Synthetic => "synthetic",
        }
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stl10" => Ok(Self::Stl10),
            "chest-xray" | "chest_xray" | "folder" => Ok(Self::ChestXray),
            "synthetic" => Ok(Self::Synthetic),
            _ => Err(format!(
                "unknown dataset kind '{s}': use stl10, chest-xray or synthetic"
            )),
        }
    }
}

/// What to do with an image file that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadFiles {
    /// Stop with an error naming the file.
    #[default]
    Fail,
    /// Leave it out and count it (the count goes to the run's log).
    Skip,
}

/// One split of a dataset, decoded and resized.
#[derive(Debug)]
pub struct SplitData {
    pub split: Split,
    /// `[N, 3, S, S]` uint8 on the CPU; grayscale images are replicated to 3 channels.
    pub images: Tensor,
    /// Class index per image, in `0..class_names.len()`.
    pub labels: Vec<i64>,
    pub class_names: Vec<String>,
    /// Files that could not be decoded and were skipped (with `BadFiles::Skip`).
    pub skipped: Vec<PathBuf>,
}

impl SplitData {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image_size(&self) -> i64 {
        self.images.size()[2]
    }

    pub fn count_per_class(&self) -> Vec<usize> {
        let mut counts = vec![0; self.class_names.len()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("dataset folder {path} does not exist ({hint})")]
    MissingRoot { path: PathBuf, hint: String },
    /// A file or folder that exists (or should) could not be read.
    #[error("cannot read {path}: {source}{hint}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
        /// Empty, or " (what the layout needs)".
        hint: String,
    },
    #[error(
        "{path}: the {split} split is absent; the experiment needs it (found splits: {found})"
    )]
    MissingSplit {
        path: PathBuf,
        split: Split,
        found: String,
    },
    #[error("{path}: expected one folder per class (e.g. NORMAL/ and PNEUMONIA/) holding images, found {found}")]
    BadClassLayout { path: PathBuf, found: String },
    #[error("{path}: the classes {found:?} differ from the train split's {expected:?}")]
    ClassMismatch {
        path: PathBuf,
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error("{path}: {size} bytes, but the STL-10 layout needs {expected}")]
    BadFileSize {
        path: PathBuf,
        size: u64,
        expected: String,
    },
    #[error("cannot decode image {path}: {reason} (set dataset.bad_files: skip to leave such files out)")]
    BadImage { path: PathBuf, reason: String },
    #[error("{path}: label {label} on line/byte {index} is outside 1..={classes}")]
    BadLabel {
        path: PathBuf,
        label: i64,
        index: usize,
        classes: usize,
    },
}

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
            hint: String::new(),
        }
    }

    /// The split the experiment needs is absent; `found` lists those present.
    pub fn missing_split(path: &Path, split: Split, found: &[Split]) -> Self {
        let found = found
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        DataError::MissingSplit {
            path: path.to_path_buf(),
            split,
            found,
        }
    }
}

/// Where a dataset comes from and how to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSource {
    pub kind: DatasetKind,
    /// Folder of the data (unused for synthetic).
    pub root: Option<PathBuf>,
    pub bad_files: BadFiles,
    /// Options of the synthetic generator.
    pub synthetic: synthetic::SyntheticSpec,
}

/// Statistics for `nave-lab data stats`.
#[derive(Debug, Clone, Serialize)]
pub struct SplitStats {
    pub split: Split,
    pub present: bool,
    pub class_names: Vec<String>,
    pub count_per_class: Vec<usize>,
    /// "WxH mode" -> number of images.
    pub sizes_and_modes: Vec<(String, usize)>,
    pub undecodable: Vec<String>,
}

impl DatasetSource {
    fn root(&self) -> Result<&Path, DataError> {
        self.root.as_deref().ok_or_else(|| DataError::MissingRoot {
            path: PathBuf::from("(none)"),
            hint: format!("dataset.root must be set for kind {}", self.kind.as_str()),
        })
    }

    /// Which splits exist on disk.
    pub fn available_splits(&self) -> Result<Vec<Split>, DataError> {
        match self.kind {
            DatasetKind::Synthetic => Ok(vec![Split::Train, Split::Test]),
            DatasetKind::Stl10 => stl10::available_splits(self.root()?),
            DatasetKind::ChestXray => folder::available_splits(self.root()?),
        }
    }

    /// Reads one split, resized to `image_size`, through the on-disk cache
    /// when `cache` is given.
    pub fn load(
        &self,
        split: Split,
        image_size: i64,
        cache: Option<&cache::Cache>,
    ) -> anyhow::Result<SplitData> {
        match self.kind {
            DatasetKind::Synthetic => Ok(synthetic::generate(&self.synthetic, split, image_size)),
            DatasetKind::Stl10 => Ok(stl10::load(self.root()?, split, image_size)?),
            DatasetKind::ChestXray => {
                let root = self.root()?;
                match cache {
                    Some(c) => c.get_or_build(root, split, image_size, self.bad_files, || {
                        folder::load(root, split, image_size, self.bad_files)
                    }),
                    None => Ok(folder::load(root, split, image_size, self.bad_files)?),
                }
            }
        }
    }

    pub fn stats(&self) -> anyhow::Result<Vec<SplitStats>> {
        match self.kind {
            DatasetKind::Synthetic => Ok(Split::ALL
                .iter()
                .map(|&split| {
                    let present = split != Split::Val;
                    let n = if present {
                        self.synthetic.count(split)
                    } else {
                        0
                    };
                    SplitStats {
                        split,
                        present,
                        class_names: synthetic::CLASS_NAMES
                            .iter()
                            .map(|s| s.to_string())
                            .collect(),
                        count_per_class: if present {
                            synthetic::count_per_class(&self.synthetic, split)
                        } else {
                            vec![0, 0]
                        },
                        sizes_and_modes: if present {
                            vec![(
                                format!("{0}x{0} L (generated at image_size)", self.synthetic.size),
                                n,
                            )]
                        } else {
                            vec![]
                        },
                        undecodable: vec![],
                    }
                })
                .collect()),
            DatasetKind::Stl10 => Ok(stl10::stats(self.root()?)?),
            DatasetKind::ChestXray => Ok(folder::stats(self.root()?)?),
        }
    }
}

/// Replicates 1-channel images to 3 channels and leaves RGB ones as they are.
/// Indices as the int64 tensor `index_select` takes.
pub fn index_tensor(indices: &[usize]) -> Tensor {
    Tensor::from_slice(&indices.iter().map(|&i| i as i64).collect::<Vec<_>>())
}

pub fn to_rgb(images: Tensor) -> Tensor {
    if images.size()[1] == 1 {
        images.repeat([1, 3, 1, 1])
    } else {
        images
    }
}

/// Resizes a `[N, C, H, W]` uint8 tensor to `[N, C, size, size]` (bilinear with
/// antialiasing, as PIL does when shrinking).
pub fn resize_u8(images: &Tensor, size: i64) -> Tensor {
    let s = images.size();
    if s[2] == size && s[3] == size {
        return images.shallow_clone();
    }
    images
        .to_kind(tch::Kind::Float)
        .internal_upsample_bilinear2d_aa([size, size], false, None, None)
        .round()
        .clamp(0.0, 255.0)
        .to_kind(tch::Kind::Uint8)
}
