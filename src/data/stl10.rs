//! STL-10, binary version: `root/stl10_binary/{train,test}_X.bin`,
//! `{train,test}_y.bin`, `class_names.txt` (root is the folder that contains
//! `stl10_binary/`, as torchvision's `root`).
//!
//! Each image is 3 planes of 96x96 uint8 stored column-major (x varies slowest
//! within a plane); labels are one byte each, 1-based.
use std::path::{Path, PathBuf};

use tch::Tensor;

use super::{DataError, Split, SplitData, SplitStats};

pub const SIDE: i64 = 96;
const IMAGE_BYTES: u64 = (3 * SIDE * SIDE) as u64;

fn folder(root: &Path) -> Result<PathBuf, DataError> {
    let dir = root.join("stl10_binary");
    if !dir.is_dir() {
        return Err(DataError::MissingRoot {
            path: dir,
            hint: format!(
                "for stl10, dataset.root is the folder that contains stl10_binary/; `nave-lab data fetch stl10 --root {}` downloads it there",
                root.display()
            ),
        });
    }
    Ok(dir)
}

fn files(dir: &Path, split: Split) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{}_X.bin", split.as_str())),
        dir.join(format!("{}_y.bin", split.as_str())),
    )
}

pub fn available_splits(root: &Path) -> Result<Vec<Split>, DataError> {
    let dir = folder(root)?;
    Ok([Split::Train, Split::Test]
        .into_iter()
        .filter(|&s| {
            let (x, y) = files(&dir, s);
            x.is_file() && y.is_file()
        })
        .collect())
}

pub fn class_names(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("class_names.txt"))
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_else(|_| {
            [
                "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck",
            ]
            .map(String::from)
            .to_vec()
        })
}

fn file_size(path: &Path) -> Result<u64, DataError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
            hint: " (an STL-10 split needs both _X.bin and _y.bin)".into(),
        })
}

/// Checks the file sizes against the layout and returns the image count.
fn check_sizes(x_path: &Path, y_path: &Path) -> Result<usize, DataError> {
    let x_size = file_size(x_path)?;
    let y_size = file_size(y_path)?;
    if x_size == 0 || x_size % IMAGE_BYTES != 0 {
        return Err(DataError::BadFileSize {
            path: x_path.to_path_buf(),
            size: x_size,
            expected: format!("a non-zero multiple of {IMAGE_BYTES} (3 x 96 x 96 per image)"),
        });
    }
    let n = x_size / IMAGE_BYTES;
    if y_size != n {
        return Err(DataError::BadFileSize {
            path: y_path.to_path_buf(),
            size: y_size,
            expected: format!("{n} (one label byte per image of {})", x_path.display()),
        });
    }
    Ok(n as usize)
}

pub fn load(root: &Path, split: Split, image_size: i64) -> Result<SplitData, DataError> {
    let dir = folder(root)?;
    let (x_path, y_path) = files(&dir, split);
    if !x_path.is_file() {
        return Err(DataError::missing_split(
            &dir,
            split,
            &available_splits(root)?,
        ));
    }
    let n = check_sizes(&x_path, &y_path)?;
    let class_names = class_names(&dir);
    let read = |p: &Path| std::fs::read(p).map_err(|e| DataError::io(p, e));
    let x = read(&x_path)?;
    let y = read(&y_path)?;
    let mut labels = Vec::with_capacity(n);
    for (index, &label) in y.iter().enumerate() {
        let label = label as i64;
        if label < 1 || label as usize > class_names.len() {
            return Err(DataError::BadLabel {
                path: y_path,
                label,
                index,
                classes: class_names.len(),
            });
        }
        labels.push(label - 1);
    }
    // Column-major planes: byte (c, x, y) -> [N, 3, W, H]; transposing the last
    // two axes gives the usual [N, 3, H, W].
    let images = Tensor::from_slice(&x)
        .view([n as i64, 3, SIDE, SIDE])
        .transpose(2, 3)
        .contiguous();
    let images = super::resize_u8(&images, image_size);
    Ok(SplitData {
        split,
        images,
        labels,
        class_names,
        skipped: vec![],
    })
}

pub fn stats(root: &Path) -> Result<Vec<SplitStats>, DataError> {
    let dir = folder(root)?;
    let names = class_names(&dir);
    let mut out = Vec::new();
    for split in Split::ALL {
        let (x_path, y_path) = files(&dir, split);
        if split == Split::Val || !x_path.is_file() {
            out.push(SplitStats {
                split,
                present: false,
                class_names: names.clone(),
                count_per_class: vec![],
                sizes_and_modes: vec![],
                undecodable: vec![],
            });
            continue;
        }
        let n = check_sizes(&x_path, &y_path)?;
        let y = std::fs::read(&y_path).map_err(|e| DataError::io(&y_path, e))?;
        let mut counts = vec![0; names.len()];
        for (index, &l) in y.iter().enumerate() {
            if l < 1 || l as usize > names.len() {
                return Err(DataError::BadLabel {
                    path: y_path,
                    label: l as i64,
                    index,
                    classes: names.len(),
                });
            }
            counts[l as usize - 1] += 1;
        }
        out.push(SplitStats {
            split,
            present: true,
            class_names: names.clone(),
            count_per_class: counts,
            sizes_and_modes: vec![("96x96 Rgb8".to_string(), n)],
            undecodable: vec![],
        });
    }
    Ok(out)
}
