//! The data sets `nave-lab data fetch` downloads: where each is published,
//! how it is checked, and the folder its `dataset.root` then names.
use std::path::{Path, PathBuf};

use super::archive::{find_folder, unpack_into};
use super::{fetch, Checksum, FetchOptions, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FetchableDataset {
    /// STL-10's binary release (2.6 GB), as torchvision fetches it.
    #[value(name = "stl10")]
    Stl10,
    /// Kermany et al.'s chest X-rays (ChestXRay2017.zip, 1.2 GB, Mendeley Data).
    #[value(name = "chest-xray")]
    ChestXray,
}

impl FetchableDataset {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stl10 => "stl10",
            Self::ChestXray => "chest-xray",
        }
    }

    /// The archive and how it is checked.
    pub fn source(self) -> Source {
        match self {
            // The MD5 torchvision checks.
            Self::Stl10 => Source {
                url: "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz".into(),
                file_name: "stl10_binary.tar.gz".into(),
                checksum: Checksum::Md5("91f7769df0f17e558f3565bffb0c7dfb".into()),
            },
            // Version 2 of the Mendeley Data record (doi:10.17632/rscbjbr9sj.2);
            // no checksum is published.
            Self::ChestXray => Source {
                url: "https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded".into(),
                file_name: "ChestXRay2017.zip".into(),
                checksum: Checksum::Unpinned,
            },
        }
    }

    /// The folder unpacked under `root`.
    fn folder(self, root: &Path) -> PathBuf {
        match self {
            Self::Stl10 => root.join("stl10_binary"),
            Self::ChestXray => root.join("chest_xray"),
        }
    }

    /// What an experiment's `dataset.root` is for data fetched into `root`.
    pub fn dataset_root(self, root: &Path) -> PathBuf {
        match self {
            Self::Stl10 => root.to_path_buf(),
            Self::ChestXray => root.join("chest_xray"),
        }
    }

    /// Whether a folder is the one the data set's loader reads.
    fn is_layout(self, dir: &Path) -> bool {
        match self {
            Self::Stl10 => dir.join("train_X.bin").is_file() && dir.join("test_y.bin").is_file(),
            Self::ChestXray => dir.join("train").is_dir() && dir.join("test").is_dir(),
        }
    }
}

/// What `fetch_dataset` did.
#[derive(Debug)]
pub struct FetchedDataset {
    /// The value for `dataset.root`.
    pub dataset_root: PathBuf,
    /// The archive (kept, as torchvision keeps it), and its SHA-256.
    pub archive: Option<(PathBuf, String)>,
    /// False when the unpacked folder was already there.
    pub unpacked: bool,
}

/// Downloads (or reuses) the data set's archive under `root`, checks it, and
/// unpacks it into the layout its `dataset.root` expects, writing at most
/// `max_unpacked` bytes (default: four times the archive).
pub fn fetch_dataset(
    which: FetchableDataset,
    root: &Path,
    opts: &FetchOptions,
    max_unpacked: Option<u64>,
) -> anyhow::Result<FetchedDataset> {
    let folder = which.folder(root);
    if which.is_layout(&folder) {
        return Ok(FetchedDataset {
            dataset_root: which.dataset_root(root),
            archive: None,
            unpacked: false,
        });
    }
    anyhow::ensure!(
        !folder.exists(),
        "{} exists but is not a complete {} folder; remove it and run `nave-lab data fetch {} --root {}` again",
        folder.display(),
        which.as_str(),
        which.as_str(),
        root.display()
    );
    let got = fetch(&which.source(), root, opts)?;
    let unpacked = unpack_into(&got.path, &folder, max_unpacked, |staging| {
        find_folder(staging, 3, &|d| which.is_layout(d))
    });
    if let Err(e) = unpacked {
        // A limit reached: the archive may be good and larger than expected.
        if e.downcast_ref::<super::archive::TooLarge>().is_some() {
            return Err(e);
        }
        let pinned = opts.sha256.is_some() || which.source().checksum != Checksum::Unpinned;
        if pinned {
            return Err(e.context(format!(
                "{} matches its checksum but does not unpack; remove it (rm {}) to download it again",
                got.path.display(),
                crate::io::shell_quote(&got.path.display().to_string())
            )));
        }
        // Nothing vouches for an unpinned archive: one that does not unpack
        // (truncated, damaged, hostile) is removed, so that the next fetch
        // downloads it again instead of failing on it for ever.
        let removed = std::fs::remove_file(&got.path).is_ok();
        return Err(e.context(if removed {
            format!(
                "{} does not unpack and was removed; `nave-lab data fetch {}` downloads it again",
                got.path.display(),
                which.as_str()
            )
        } else {
            format!(
                "{} does not unpack; remove it and run `nave-lab data fetch {}` again",
                got.path.display(),
                which.as_str()
            )
        }));
    }
    Ok(FetchedDataset {
        dataset_root: which.dataset_root(root),
        archive: Some((got.path, got.sha256)),
        unpacked: true,
    })
}
