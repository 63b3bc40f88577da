//! Downloads from public sources, as torchvision and timm do on first use:
//! a file is fetched once (resumed with HTTP Range after an interruption,
//! retried on network errors), checked against the checksum its publisher
//! gives (or one pinned here), and only then moved to its final name.
//! A mirror (`NAVE_LAB_MIRROR` or `--mirror`) replaces every public host:
//! it serves each file under its own file name.
//!
//! * [`http`]: the transfer itself (client, resume, retries, progress);
//! * [`archive`]: unpacking into place without leaving half an archive;
//! * [`datasets`]: what `nave-lab data fetch` knows (sources and layouts);
//! * [`weights`]: pretrained weights by name, in the cache folder.
pub mod archive;
pub mod datasets;
pub mod http;
pub mod weights;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::io::hex;

/// What a downloaded file is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// The MD5 its publisher gives (STL-10).
    Md5(String),
    /// A full SHA-256.
    Sha256(String),
    /// The first hex digits of the SHA-256, as torchvision's file names carry them.
    Sha256Prefix(String),
    /// None published: the SHA-256 is printed so that a lab can pin it with `--sha256`.
    Unpinned,
}

/// One downloadable file.
#[derive(Debug, Clone)]
pub struct Source {
    /// The public address.
    pub url: String,
    /// Its name on disk, and under a mirror.
    pub file_name: String,
    pub checksum: Checksum,
}

/// Where downloads come from and what they must match.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Replaces the public hosts: `<mirror>/<file_name>`.
    pub mirror: Option<String>,
    /// A SHA-256 that replaces the pinned checksum (a lab's repackaged copy).
    pub sha256: Option<String>,
}

impl FetchOptions {
    /// `--mirror` when given, else `NAVE_LAB_MIRROR`.
    pub fn new(mirror: Option<String>, sha256: Option<String>) -> Self {
        let mirror = mirror.or_else(|| {
            std::env::var("NAVE_LAB_MIRROR")
                .ok()
                .filter(|m| !m.is_empty())
        });
        Self {
            mirror,
            sha256: sha256.map(|s| s.to_lowercase()),
        }
    }

    /// The address this source is fetched from.
    pub fn url(&self, source: &Source) -> String {
        match &self.mirror {
            Some(m) => format!("{}/{}", m.trim_end_matches('/'), source.file_name),
            None => source.url.clone(),
        }
    }

    fn checksum(&self, source: &Source) -> Checksum {
        match &self.sha256 {
            Some(s) => Checksum::Sha256(s.clone()),
            None => source.checksum.clone(),
        }
    }
}

/// A verified download.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub path: PathBuf,
    pub sha256: String,
    /// False when a verified copy was already there.
    pub downloaded: bool,
}

/// SHA-256 and MD5 of a file, in one pass.
fn digests(path: &Path) -> anyhow::Result<(String, String)> {
    let (mut sha, mut md5) = (Sha256::new(), Md5::new());
    crate::io::for_each_chunk(path, |chunk| {
        sha.update(chunk);
        md5.update(chunk);
    })?;
    Ok((hex(&sha.finalize()), hex(&md5.finalize())))
}

/// Checks `path` against `checksum`; returns its SHA-256.
fn verify(path: &Path, checksum: &Checksum) -> anyhow::Result<Result<String, String>> {
    let (sha, md5) = digests(path)?;
    let mismatch = match checksum {
        Checksum::Md5(want) if *want != md5 => Some(format!("MD5 {md5}, expected {want}")),
        Checksum::Sha256(want) if *want != sha => Some(format!("SHA-256 {sha}, expected {want}")),
        Checksum::Sha256Prefix(want) if !sha.starts_with(want.as_str()) => {
            Some(format!("SHA-256 {sha}, expected one starting with {want}"))
        }
        _ => None,
    };
    Ok(match mismatch {
        Some(m) => Err(m),
        None => Ok(sha),
    })
}

/// Downloads `source` into `dir` (as `dir/<file_name>`) unless a copy that
/// passes its checksum is there. Concurrent fetches of one file wait for
/// each other. A checksum mismatch is an error and nothing is kept.
pub fn fetch(source: &Source, dir: &Path, opts: &FetchOptions) -> anyhow::Result<Fetched> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(&source.file_name);
    let checksum = opts.checksum(source);
    let _lock = crate::lock::Lock::acquire_waiting(
        &dir.join(format!(".{}.lock", source.file_name)),
        |holder| {
            crate::info!(
                "waiting for {holder}, which is downloading {}",
                source.file_name
            )
        },
    )?;
    if path.is_file() {
        match verify(&path, &checksum)? {
            Ok(sha256) => {
                return Ok(Fetched {
                    path,
                    sha256,
                    downloaded: false,
                })
            }
            Err(why) => {
                crate::warn!("{}: {why}; downloading it again", path.display());
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    let url = opts.url(source);
    let part = dir.join(format!("{}.part", source.file_name));
    let transfer = |part: &Path| {
        http::download(&url, part).map_err(|e| {
            e.context(format!(
                "cannot download {url}. Without network access, fetch {} by hand (from {url} or a copy your lab keeps), \
                 and place it at {}; or set NAVE_LAB_MIRROR to a server that serves it under its name",
                source.file_name,
                path.display()
            ))
        })
    };
    // A part left by an earlier run may belong to another version of the
    // file (the source changed since): when the resumed whole does not
    // match, it is fetched once more from the start.
    let resumed = part.is_file();
    transfer(&part)?;
    let mut verdict = verify(&part, &checksum)?;
    if verdict.is_err() && resumed {
        crate::warn!(
            "{}: the resumed download does not match its checksum; downloading it from the start",
            source.file_name
        );
        std::fs::remove_file(&part).with_context(|| format!("removing {}", part.display()))?;
        transfer(&part)?;
        verdict = verify(&part, &checksum)?;
    }
    match verdict {
        Ok(sha256) => {
            std::fs::File::open(&part)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", part.display()))?;
            std::fs::rename(&part, &path)
                .with_context(|| format!("moving {} into place", path.display()))?;
            crate::io::sync_dir(dir)?;
            Ok(Fetched {
                path,
                sha256,
                downloaded: true,
            })
        }
        Err(why) => {
            let _ = std::fs::remove_file(&part);
            bail!(
                "{url}: checksum mismatch ({why}); the download was removed. \
                 If this is a copy your lab repackaged, name its SHA-256 with --sha256"
            )
        }
    }
}

/// The cache folder: `$NAVE_LAB_CACHE`, else `$XDG_CACHE_HOME/nave-lab`,
/// else `~/.cache/nave-lab`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NAVE_LAB_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("nave-lab");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache").join("nave-lab")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_of_a_known_file() {
        let dir = std::env::temp_dir().join(format!("nave-lab-fetch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("abc");
        std::fs::write(&f, b"abc").unwrap();
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            verify(&f, &Checksum::Sha256(sha.into())).unwrap(),
            Ok(sha.to_string())
        );
        assert!(verify(&f, &Checksum::Sha256Prefix("ba7816bf".into()))
            .unwrap()
            .is_ok());
        assert!(verify(
            &f,
            &Checksum::Md5("900150983cd24fb0d6963f7d28e17f72".into())
        )
        .unwrap()
        .is_ok());
        assert!(verify(&f, &Checksum::Md5("00".into())).unwrap().is_err());
        assert!(verify(&f, &Checksum::Sha256Prefix("ffff".into()))
            .unwrap()
            .is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_mirror_serves_files_under_their_own_names() {
        let s = Source {
            url: "https://example.org/a/b/stl10_binary.tar.gz".into(),
            file_name: "stl10_binary.tar.gz".into(),
            checksum: Checksum::Unpinned,
        };
        let o = FetchOptions {
            mirror: Some("http://127.0.0.1:9/m/".into()),
            sha256: None,
        };
        assert_eq!(o.url(&s), "http://127.0.0.1:9/m/stl10_binary.tar.gz");
        assert_eq!(FetchOptions::default().url(&s), s.url);
    }
}
