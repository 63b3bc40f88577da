//! The data of a model trained elsewhere, as an auditor is handed it: a
//! folder of class subfolders (torchvision's ImageFolder: classes sorted by
//! name) or a CSV of `path,label` lines (paths relative to the CSV's folder).
//! Every image is decoded at one size, undecodable ones refused or skipped as
//! `BadFiles` says, and each file's path is kept so that an audit can name
//! the files that carry a shortcut.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::image_file::Fit;
use super::{folder, BadFiles, Split, SplitData};

/// The most lines a labels CSV may have (a bound against hostile files).
const MAX_CSV_LINES: usize = 10_000_000;

/// A labelled image set and the file of each image.
pub struct Labelled {
    pub data: SplitData,
    /// The file of each image of `data`, in its order.
    pub files: Vec<PathBuf>,
}

/// Reads `source` (a folder of class folders, or a `.csv`) at `size` px,
/// each image fitted as `fit` says.
/// `classes` fixes the class order (the model's output order) when given;
/// else the classes are sorted by name. `split` only names the set in
/// messages.
pub fn load(
    source: &Path,
    (size, fit): (i64, Fit),
    classes: Option<&[String]>,
    bad_files: BadFiles,
    split: Split,
) -> anyhow::Result<Labelled> {
    let (names, files) = if is_csv(source) {
        list_csv(source)?
    } else {
        anyhow::ensure!(
            source.is_dir(),
            "{}: not a folder of class folders or a .csv of path,label",
            source.display()
        );
        folder::list_class_folders(source)?
    };
    let (names, files) = match classes {
        Some(order) => reorder(source, names, files, order)?,
        None => (names, files),
    };
    for (c, name) in names.iter().enumerate() {
        anyhow::ensure!(
            files.iter().any(|(_, l)| *l == c as i64),
            "{}: class {name} has no images",
            source.display()
        );
    }
    let data = folder::decode_files(&files, names, (size, fit), bad_files, split)?;
    let skipped: std::collections::HashSet<&PathBuf> = data.skipped.iter().collect();
    let kept = files
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !skipped.contains(p))
        .collect();
    Ok(Labelled { data, files: kept })
}

fn is_csv(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// `path,label` lines (an optional `path,label` header; blank lines
/// ignored): the sorted label names and every file with its class index.
fn list_csv(csv: &Path) -> anyhow::Result<folder::SplitListing> {
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
    let base = csv.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && line.eq_ignore_ascii_case("path,label")) {
            continue;
        }
        if rows.len() >= MAX_CSV_LINES {
            bail!("{}: more than {MAX_CSV_LINES} lines", csv.display());
        }
        let Some((path, label)) = line.rsplit_once(',') else {
            bail!(
                "{} line {}: expected path,label, got '{}'",
                csv.display(),
                n + 1,
                line.escape_debug()
            );
        };
        let (path, label) = (path.trim(), label.trim());
        if path.is_empty() || label.is_empty() {
            bail!("{} line {}: an empty path or label", csv.display(), n + 1);
        }
        rows.push((base.join(path), label.to_string()));
    }
    let mut names: Vec<String> = rows.iter().map(|(_, l)| l.clone()).collect();
    names.sort();
    names.dedup();
    anyhow::ensure!(
        names.len() >= 2,
        "{}: {} label(s) {names:?}; a classifier's data has at least two",
        csv.display(),
        names.len()
    );
    let files = rows
        .into_iter()
        .map(|(p, l)| {
            let c = names.binary_search(&l).expect("every label is listed") as i64;
            (p, c)
        })
        .collect();
    Ok((names, files))
}

/// The listing with its classes in `order`: every class of the data must be
/// named, and only those.
fn reorder(
    source: &Path,
    names: Vec<String>,
    files: Vec<(PathBuf, i64)>,
    order: &[String],
) -> anyhow::Result<folder::SplitListing> {
    let mut sorted_order = order.to_vec();
    sorted_order.sort();
    let mut sorted_names = names.clone();
    sorted_names.sort();
    anyhow::ensure!(
        sorted_order == sorted_names,
        "{}: its classes {names:?} are not {order:?} (--classes, or the training data's)",
        source.display()
    );
    let new_index = |old: i64| {
        order
            .iter()
            .position(|n| *n == names[old as usize])
            .unwrap() as i64
    };
    let files = files.into_iter().map(|(p, l)| (p, new_index(l))).collect();
    Ok((order.to_vec(), files))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, grey: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(5, 4, image::Luma([grey]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn a_folder_and_a_csv_give_the_same_set_and_classes_can_be_reordered() {
        let dir = std::env::temp_dir().join(format!("nave-labelled-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        png(&dir.join("imgs/cat/a.png"), 10);
        png(&dir.join("imgs/cat/b.png"), 20);
        png(&dir.join("imgs/dog/c.png"), 30);
        let folder = load(
            &dir.join("imgs"),
            (8, Fit::Stretch),
            None,
            BadFiles::Fail,
            Split::Train,
        )
        .unwrap();
        assert_eq!(folder.data.class_names, ["cat", "dog"]);
        assert_eq!(folder.data.labels, [0, 0, 1]);
        assert_eq!(folder.files.len(), 3);
        assert!(folder.files[2].ends_with("dog/c.png"));

        std::fs::write(
            dir.join("labels.csv"),
            "path,label\nimgs/dog/c.png,dog\nimgs/cat/a.png,cat\n\nimgs/cat/b.png,cat\n",
        )
        .unwrap();
        let csv = load(
            &dir.join("labels.csv"),
            (8, Fit::Stretch),
            None,
            BadFiles::Fail,
            Split::Train,
        )
        .unwrap();
        assert_eq!(csv.data.class_names, ["cat", "dog"]);
        assert_eq!(csv.data.labels, [1, 0, 0]);

        let order = ["dog".to_string(), "cat".to_string()];
        let re = load(
            &dir.join("imgs"),
            (8, Fit::Stretch),
            Some(&order),
            BadFiles::Fail,
            Split::Train,
        )
        .unwrap();
        assert_eq!(re.data.class_names, ["dog", "cat"]);
        assert_eq!(re.data.labels, [1, 1, 0]);

        // Errors name the file, the line or the class.
        let bad = ["horse".to_string(), "cat".to_string()];
        let e = load(
            &dir.join("imgs"),
            (8, Fit::Stretch),
            Some(&bad),
            BadFiles::Fail,
            Split::Train,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("--classes") && e.contains("imgs") && e.contains("horse"),
            "{e}"
        );
        std::fs::write(dir.join("broken.csv"), "imgs/cat/a.png\n").unwrap();
        let e = load(
            &dir.join("broken.csv"),
            (8, Fit::Stretch),
            None,
            BadFiles::Fail,
            Split::Train,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("broken.csv line 1"), "{e}");
        std::fs::create_dir_all(dir.join("imgs/empty")).unwrap();
        let e = load(
            &dir.join("imgs"),
            (8, Fit::Stretch),
            None,
            BadFiles::Fail,
            Split::Train,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("class empty has no images"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
