//! Image folders in the Chest-X-Ray (Kermany) layout:
//! `root/{train,val,test}/{CLASS}/*.{jpeg,jpg,png}`. Class names come from the
//! folder names (sorted), so any class folders work and this is also the
//! generic image-folder loader.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tch::Tensor;

use super::{BadFiles, DataError, Split, SplitData, SplitStats};

const IMAGE_EXTENSIONS: [&str; 4] = ["jpeg", "jpg", "png", "bmp"];

fn check_root(root: &Path) -> Result<(), DataError> {
    if !root.is_dir() {
        return Err(DataError::MissingRoot {
            path: root.to_path_buf(),
            hint: format!(
                "for chest-xray, dataset.root is the chest_xray folder itself, holding train/ and test/; \
                 `nave-lab data fetch chest-xray --root {}` downloads Kermany et al.'s release there",
                root.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).display()
            ),
        });
    }
    Ok(())
}

pub fn available_splits(root: &Path) -> Result<Vec<Split>, DataError> {
    check_root(root)?;
    Ok(Split::ALL
        .into_iter()
        .filter(|s| root.join(s.as_str()).is_dir())
        .collect())
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Class names, and every image file with its class index.
pub type SplitListing = (Vec<String>, Vec<(PathBuf, i64)>);

/// The class folders of a split and their image files, both sorted by name so
/// that indices are stable across machines.
pub fn list_split(root: &Path, split: Split) -> Result<SplitListing, DataError> {
    let dir = root.join(split.as_str());
    if !dir.is_dir() {
        return Err(DataError::missing_split(
            root,
            split,
            &available_splits(root)?,
        ));
    }
    list_class_folders(&dir)
}

/// The class folders in `dir` (sorted by name, as torchvision's ImageFolder
/// sorts them) and their image files (sorted by name).
pub fn list_class_folders(dir: &Path) -> Result<SplitListing, DataError> {
    let mut classes = Vec::new();
    let mut stray = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| DataError::io(dir, e))? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if entry.path().is_dir() {
            classes.push(name);
        } else {
            stray.push(name);
        }
    }
    classes.sort();
    let mut files = Vec::new();
    for (index, class) in classes.iter().enumerate() {
        let mut in_class: Vec<PathBuf> = std::fs::read_dir(dir.join(class))
            .map_err(|e| DataError::io(&dir.join(class), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        in_class.sort();
        files.extend(in_class.into_iter().map(|p| (p, index as i64)));
    }
    if classes.len() < 2 || files.is_empty() {
        let found = if classes.is_empty() {
            format!("no class folders ({} loose files)", stray.len())
        } else {
            format!("class folders {:?} with {} images", classes, files.len())
        };
        return Err(DataError::BadClassLayout {
            path: dir.to_path_buf(),
            found,
        });
    }
    Ok((classes, files))
}

pub fn load(
    root: &Path,
    split: Split,
    image_size: i64,
    bad_files: BadFiles,
) -> Result<SplitData, DataError> {
    check_root(root)?;
    let (class_names, files) = list_split(root, split)?;
    let fit = super::image_file::Fit::Stretch;
    decode_files(&files, class_names, (image_size, fit), bad_files, split)
}

/// Decodes `files` (each with its class index) at `image_size` px, fitted
/// as `fit` says, refusing or skipping undecodable ones as `bad_files` says.
pub fn decode_files(
    files: &[(PathBuf, i64)],
    class_names: Vec<String>,
    (image_size, fit): (i64, super::image_file::Fit),
    bad_files: BadFiles,
    split: Split,
) -> Result<SplitData, DataError> {
    let size = image_size as u32;
    let bar = crate::ui::progress_bar(files.len() as u64, &format!("decoding {split}"));
    let decoded: Vec<Result<image::RgbImage, String>> = files
        .par_iter()
        .map(|(path, _)| {
            let r = super::image_file::decode_rgb_fitted(path, size, fit);
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    let plane = (size * size * 3) as usize;
    let mut bytes = Vec::with_capacity(files.len() * plane);
    let mut labels = Vec::with_capacity(files.len());
    let mut skipped = Vec::new();
    for ((path, label), result) in files.iter().zip(decoded) {
        match result {
            Ok(img) => {
                bytes.extend_from_slice(img.as_raw());
                labels.push(*label);
            }
            Err(reason) => match bad_files {
                BadFiles::Fail => {
                    return Err(DataError::BadImage {
                        path: path.clone(),
                        reason,
                    })
                }
                BadFiles::Skip => skipped.push(path.clone()),
            },
        }
    }
    let n = labels.len() as i64;
    // HWC bytes -> [N, 3, S, S]
    let images = Tensor::from_slice(&bytes)
        .view([n, image_size, image_size, 3])
        .permute([0, 3, 1, 2])
        .contiguous();
    Ok(SplitData {
        split,
        images,
        labels,
        class_names,
        skipped,
    })
}

pub fn stats(root: &Path) -> Result<Vec<SplitStats>, DataError> {
    check_root(root)?;
    let mut out = Vec::new();
    for split in Split::ALL {
        if !root.join(split.as_str()).is_dir() {
            out.push(SplitStats {
                split,
                present: false,
                class_names: vec![],
                count_per_class: vec![],
                sizes_and_modes: vec![],
                undecodable: vec![],
            });
            continue;
        }
        let (class_names, files) = list_split(root, split)?;
        let headers: Vec<Result<String, String>> = files
            .par_iter()
            .map(|(path, _)| {
                // Header only: sizes and colour modes without decoding the pixels.
                let (w, h, mode) = super::image_file::header(path)?;
                Ok(format!("{w}x{h} {mode}"))
            })
            .collect();
        let mut counts = vec![0; class_names.len()];
        let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
        let mut undecodable = Vec::new();
        for ((path, label), header) in files.iter().zip(headers) {
            match header {
                Ok(key) => {
                    counts[*label as usize] += 1;
                    *sizes.entry(key).or_default() += 1;
                }
                Err(_) => undecodable.push(path.display().to_string()),
            }
        }
        let mut sizes: Vec<(String, usize)> = sizes.into_iter().collect();
        sizes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out.push(SplitStats {
            split,
            present: true,
            class_names,
            count_per_class: counts,
            sizes_and_modes: sizes,
            undecodable,
        });
    }
    Ok(out)
}
