//! The fuzz harness: every reader of a file from outside is fed byte-level
//! mutations of the corpus in tests/fuzz/corpus/<target>/ (real files and
//! the hostile cases the other tests name) and must answer with a value or
//! an error: no panic, no abort, no allocation past its limits, nothing
//! written outside the folder it was given.
//!
//! Targets: `pth` (the PyTorch checkpoint reader), `experiment` (the
//! experiment YAML, grid expansion included), `audit_json` (audit.json read
//! and rendered into a report), `archive` (unpacking a .tar.gz or .zip).
//! `make test` runs a bounded number of inputs per target (the first figure
//! of each `cases(...)` below); `NAVE_LAB_FUZZ_CASES=N` runs N per target,
//! `NAVE_LAB_FUZZ_SEED=S` another sequence. proptest shrinks a failing input
//! to a small one and prints it; add it to the corpus with the fix.
mod common;

use std::path::{Path, PathBuf};

use common::scratch;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// One change to a file's bytes; positions wrap around its length.
#[derive(Debug, Clone)]
enum Edit {
    /// Replace a byte.
    Set(usize, u8),
    /// Insert bytes.
    Insert(usize, Vec<u8>),
    /// Remove up to n bytes.
    Delete(usize, usize),
    /// Cut the file short.
    Truncate(usize),
    /// Copy a stretch of the file elsewhere (repeats structure: opcodes, keys).
    Copy { from: usize, len: usize, to: usize },
    /// Write a 32-bit little-endian boundary value (sizes, counts, offsets).
    Boundary(usize, u32),
}

fn edit() -> impl Strategy<Value = Edit> {
    let boundary = prop_oneof![
        Just(0u32),
        Just(1),
        Just(0x7fff_ffff),
        Just(0x8000_0000),
        Just(0xffff_ffff),
        Just(0xffff),
        any::<u32>()
    ];
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), 1usize..256, any::<usize>()).prop_map(|(from, len, to)| Edit::Copy { from, len, to }),
        2 => (any::<usize>(), boundary).prop_map(|(i, v)| Edit::Boundary(i, v)),
    ]
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let n = b.len().max(1);
        match e {
            Edit::Set(i, v) if !b.is_empty() => b[i % n] = *v,
            Edit::Insert(i, v) => {
                let at = i % (b.len() + 1);
                b.splice(at..at, v.iter().copied());
            }
            Edit::Delete(i, k) if !b.is_empty() => {
                let at = i % n;
                let end = (at + k).min(b.len());
                b.drain(at..end);
            }
            Edit::Truncate(i) => b.truncate(i % n),
            Edit::Copy { from, len, to } if !b.is_empty() => {
                let from = from % n;
                let stretch: Vec<u8> = b[from..(from + len).min(b.len())].to_vec();
                let to = to % (b.len() + 1);
                b.splice(to..to, stretch);
            }
            Edit::Boundary(i, v) if b.len() >= 4 => {
                let at = i % (b.len() - 3);
                b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            _ => {}
        }
    }
    b
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// Inputs per target: `default` in `make test`, else NAVE_LAB_FUZZ_CASES.
fn cases(default: u32) -> u32 {
    std::env::var("NAVE_LAB_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Runs `check` on `cases` mutations of the target's corpus (the seeds
/// themselves first), with a fixed sequence unless NAVE_LAB_FUZZ_SEED says.
/// `check` says whether the reader accepted the input (the share accepted
/// is printed: a harness whose mutations all fail at the first byte tests
/// little).
fn fuzz(
    target: &str,
    seeds: Vec<(String, Vec<u8>)>,
    max_edits: usize,
    default_cases: u32,
    check: impl Fn(&str, &[u8]) -> Result<bool, TestCaseError>,
) {
    for (name, bytes) in &seeds {
        check(name, bytes).unwrap_or_else(|e| panic!("{target}/{name} unmodified: {e}"));
    }
    let seed: u64 = std::env::var("NAVE_LAB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..8 + target.len().min(24)].copy_from_slice(&target.as_bytes()[..target.len().min(24)]);
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: cases(default_cases),
            max_shrink_iters: 2000,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &key),
    );
    let started = std::time::Instant::now();
    let strategy = (
        0..seeds.len(),
        proptest::collection::vec(edit(), 1..=max_edits),
    );
    let accepted = std::cell::Cell::new(0usize);
    let result = runner.run(&strategy, |(which, edits)| {
        let (name, bytes) = &seeds[which];
        let ok = check(name, &apply(bytes, &edits))?;
        accepted.set(accepted.get() + ok as usize);
        Ok(())
    });
    eprintln!(
        "fuzz {target}: {} inputs in {:.1} s, {} accepted",
        cases(default_cases),
        started.elapsed().as_secs_f64(),
        accepted.get()
    );
    if let Err(e) = result {
        panic!("fuzz {target}: {e}");
    }
}

/// Every path under `dir`.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            out.push(e.path());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// A zip's entries, in order.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut e = zip.by_index(i).unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (e.name().to_string(), data)
        })
        .collect()
}

/// A stored zip of `entries`, as torch.save writes one.
fn zip_stored(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        zip.start_file(name.as_str(), stored).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// The checkpoint files as they are: the zip container and everything in it.
#[test]
fn fuzz_the_checkpoint_reader() {
    fuzz("pth", corpus("pth"), 8, 5000, |_, bytes| {
        Ok(nave_lab::models::pth::read_bytes(bytes).is_ok())
    });
}

/// The pickle inside, repacked into a well-formed zip after each mutation
/// (a mutation of the zip's bytes mostly stops at its CRC).
#[test]
fn fuzz_the_pickle_machine() {
    let files: Vec<(String, Vec<(String, Vec<u8>)>)> = corpus("pth")
        .into_iter()
        .map(|(name, bytes)| (name, unzip(&bytes)))
        .collect();
    let pickles: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(name, entries)| {
            let pkl = entries
                .iter()
                .find(|(n, _)| n.ends_with("data.pkl"))
                .unwrap();
            (name.clone(), pkl.1.clone())
        })
        .collect();
    fuzz("pickle", pickles, 4, 10000, |name, pickle| {
        let (_, entries) = files.iter().find(|(n, _)| n == name).unwrap();
        let repacked: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|(n, d)| {
                (
                    n.clone(),
                    if n.ends_with("data.pkl") {
                        pickle.to_vec()
                    } else {
                        d.clone()
                    },
                )
            })
            .collect();
        Ok(nave_lab::models::pth::read_bytes(&zip_stored(&repacked)).is_ok())
    });
}

#[test]
fn fuzz_the_experiment_yaml() {
    fuzz(
        "experiment",
        corpus("experiment"),
        2,
        5000,
        |name, bytes| {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let Ok(e) = nave_lab::config::Experiment::parse(Path::new(name), text, &[]) else {
                return Ok(false);
            };
            // Whatever loads names only folders a run may have.
            for run in e.runs() {
                prop_assert!(nave_lab::config::name_problem(&run.experiment).is_none());
                prop_assert!(
                    nave_lab::config::name_problem(&run.id).is_none(),
                    "{:?}",
                    run.id
                );
            }
            Ok(true)
        },
    );
}

#[test]
fn fuzz_audit_json_and_the_report_built_from_it() {
    let dir = scratch("fuzz_audit_json");
    let outside = dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    fuzz("audit_json", corpus("audit_json"), 2, 3000, |_, bytes| {
        let report = dir.join("reports/x");
        let _ = std::fs::remove_dir_all(&report);
        std::fs::create_dir_all(&report).unwrap();
        std::fs::write(report.join("audit.json"), bytes).unwrap();
        let built = nave_lab::report::build(&report, &report, 4).is_ok();
        // The report writes under its own folder and nowhere else.
        let around: Vec<PathBuf> = tree(&dir)
            .into_iter()
            .filter(|p| !p.starts_with(&report))
            .collect();
        prop_assert_eq!(
            around,
            vec![outside.clone(), dir.join("reports"), report.clone()]
                .into_iter()
                .filter(|p| p != &report)
                .collect::<Vec<_>>()
        );
        Ok(built)
    });
}

#[test]
fn fuzz_archive_unpacking() {
    let dir = scratch("fuzz_archive");
    // A .tar.gz is mutated inside its compression (which a CRC guards), then
    // compressed again; a .zip as it is.
    let seeds: Vec<(String, Vec<u8>)> = corpus("archive")
        .into_iter()
        .map(|(name, bytes)| {
            if name.ends_with(".tar.gz") {
                let mut tar = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut tar)
                    .unwrap();
                (name, tar)
            } else {
                (name, bytes)
            }
        })
        .collect();
    fuzz("archive", seeds, 4, 1500, |name, bytes| {
        let bytes = if name.ends_with(".tar.gz") {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, bytes).unwrap();
            gz.finish().unwrap()
        } else {
            bytes.to_vec()
        };
        let bytes = &bytes[..];
        let work = dir.join("work");
        let _ = std::fs::remove_dir_all(&work);
        let data = work.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let archive = data.join(name);
        std::fs::write(&archive, bytes).unwrap();
        let dest = data.join("unpacked");
        let unpacked =
            nave_lab::fetch::archive::unpack_into(&archive, &dest, Some(1 << 20), |staging| {
                nave_lab::fetch::archive::find_folder(staging, 3, &|d| {
                    d.join("train").is_dir() || d.join("test_y.bin").is_file()
                })
            });
        // Nothing but the archive, its lock and (on success) the folder;
        // nothing in it is a link.
        let mut found: Vec<String> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        let lock = ".unpacked.unpack.lock".to_string();
        let mut expected = vec![lock, name.to_string()];
        if unpacked.is_ok() {
            expected.push("unpacked".to_string());
        }
        expected.sort();
        prop_assert_eq!(found, expected);
        prop_assert_eq!(
            tree(&work).iter().filter(|p| !p.starts_with(&data)).count(),
            0
        );
        for p in tree(&data) {
            prop_assert!(
                !std::fs::symlink_metadata(&p)
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "{}",
                p.display()
            );
        }
        Ok(unpacked.is_ok())
    });
}
