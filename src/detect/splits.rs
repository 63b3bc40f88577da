//! The pre-registered split a shortcut detector is scored on: which families
//! and seeds it may be tuned on, and which are held out. A figure tuned on is
//! not a held-out figure, so the split is written into a committed file
//! (`experiments/zoo-splits.yaml`) before any tuning, and its SHA-256 is
//! pinned here: `bench detect` refuses the file once it has changed, and any
//! other split (a changed file, `--tune-seeds`, `--held-out`, another study)
//! runs only with `--exploratory`, which every output then carries. A study
//! registered after a change of rule, to test that rule on runs it was not
//! set on, gets its own file here (`REGISTERED`), written before it was
//! trained; where it holds every family out, it is scored at the audit's
//! fixed threshold.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// A split file as registered: the experiment it splits, its path and its
/// SHA-256.
pub struct Registered {
    pub experiment: &'static str,
    pub file: &'static str,
    pub sha256: &'static str,
}

/// Every registered split. zoo v2's header names this file by its path when
/// it was registered, src/audit/splits.rs: editing the header would change
/// the checksum.
pub const REGISTERED: [Registered; 15] = [
    Registered {
        experiment: "zoo",
        file: "experiments/zoo-splits.yaml",
        sha256: "1d623d1013c08e73cb494f183823820d222689d8385d649ce8ef23c2e49c5799",
    },
    // The varied-marker supplement: every family held out.
    Registered {
        experiment: "zoo-varied",
        file: "experiments/zoo-varied-splits.yaml",
        sha256: "65b4422a1073f06d09ba869954bcdd473bdcdaec0b4315b3376d89a0f88a41ac",
    },
    // Its held-out seeds, registered after its first run missed and before
    // any rule was changed for that miss.
    Registered {
        experiment: "zoo-varied-b",
        file: "experiments/zoo-varied-b-splits.yaml",
        sha256: "2d16c7d7a51587b7218900c0c84fdf69bfe4bdc9965b53f721ce419f5f4a9bab",
    },
    // A third set of seeds, registered after both had been run and seen,
    // before any rule was tuned on them.
    Registered {
        experiment: "zoo-varied-c",
        file: "experiments/zoo-varied-c-splits.yaml",
        sha256: "bba82325c748e89aa8e61148e81f26c609d497363c552ef9602fa9aa5841514d",
    },
    // Both-class rates strong enough to be learned: every family held out,
    // registered before it was trained.
    Registered {
        experiment: "zoo-both",
        file: "experiments/zoo-both-splits.yaml",
        sha256: "b0b6a18f787c3131c1d32f90fabf7fa914443ed16b6e2ba7adb69cf8beb34273",
    },
    // Zoo v2's families at new seeds, registered with the rule that
    // discounts unsupported reproduced pixels, before it was trained.
    Registered {
        experiment: "zoo-b",
        file: "experiments/zoo-b-splits.yaml",
        sha256: "ce306077b7123dad33e095e0787d0547d2f9216746335237253da0903956dd58",
    },
    // A fourth set of the varied-marker supplement's seeds, registered
    // before a rule for the varied marker on radiographs was tuned.
    Registered {
        experiment: "zoo-varied-d",
        file: "experiments/zoo-varied-d-splits.yaml",
        sha256: "5b4c7322f38164f332e1949b50b39407beb5f0da2bec92bdc3acacc10b69c1a7",
    },
    // A fifth, registered after zoo-varied-d was run with where the model
    // looks and seen, before any rule was tuned after it.
    Registered {
        experiment: "zoo-varied-e",
        file: "experiments/zoo-varied-e-splits.yaml",
        sha256: "e7d97c9d94135b159575a6ea995f32590f391dad5251e80aa3494360f74f36d8",
    },
    // A sixth, registered after zoo-varied-e was run with sharpness on each
    // image's own scale and seen, before any rule was tuned after it.
    Registered {
        experiment: "zoo-varied-f",
        file: "experiments/zoo-varied-f-splits.yaml",
        sha256: "c8bf20512dbbb321f2abcac4d2e779b02c5053640e948d0f4f345c76eed724be",
    },
    // A seventh, registered after zoo-varied-f was run with the stroke rule
    // and seen, before any rule was tuned after it.
    Registered {
        experiment: "zoo-varied-g",
        file: "experiments/zoo-varied-g-splits.yaml",
        sha256: "d0368b6017cc085526cbf76c154e47c075d511d71f2daa25b40ba40d27a2c8cf",
    },
    // Zoo v2's families at seeds 12 and 13, and an eighth set of the
    // supplement's seeds: registered after revise's pass of record, before
    // any rule is tuned after zoo-b and zoo-varied-g were seen.
    Registered {
        experiment: "zoo-c",
        file: "experiments/zoo-c-splits.yaml",
        sha256: "fd9bae85ab89797038bdfbdf47db71b06bb2d847ee60be7ba708cb10f88c79b7",
    },
    Registered {
        experiment: "zoo-varied-h",
        file: "experiments/zoo-varied-h-splits.yaml",
        sha256: "97b8825292012eadeeaf98eef0ba2154fc18e23438421091f59b8a836d806d82",
    },
    // A ninth, at eight seeds: registered after zoo-c and zoo-varied-h were
    // run with the rule in force when they were registered, before any
    // rule is tuned after them.
    Registered {
        experiment: "zoo-varied-i",
        file: "experiments/zoo-varied-i-splits.yaml",
        sha256: "1b2ce2de2f9aafd98fafd2814be25b005bb13d91231fb4d99bde75425816f8c0",
    },
    // New families of the global and colour kinds (parameters zoo v2 never
    // had), registered before they were trained, with the rule of 58c0499.
    Registered {
        experiment: "zoo-global",
        file: "experiments/zoo-global-splits.yaml",
        sha256: "005cd900898d83d1fe5421428b63fe8ea96bcd6c71c97a507b45bb7b166b243e",
    },
    // zoo-global's families at seeds 43-46, registered after its run (a
    // learned blur missed) before any rule is tuned after it.
    Registered {
        experiment: "zoo-global-b",
        file: "experiments/zoo-global-b-splits.yaml",
        sha256: "5de74969cae0d154539fdae568f59ecec73c6d1d8fbc21530bf52d7966a4b234",
    },
];

/// zoo v2's split, the default.
pub const REGISTERED_FILE: &str = REGISTERED[0].file;

/// The registered split of `experiment`, if it has one.
fn registered(experiment: &str) -> Option<&'static Registered> {
    REGISTERED.iter().find(|r| r.experiment == experiment)
}

/// A split file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Splits {
    /// The experiment whose runs it splits.
    pub experiment: String,
    pub tuning_seeds: Vec<u64>,
    pub held_out_families: Vec<String>,
}

/// The split a bench runs on, and whether its figures are exploratory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChosenSplit {
    pub tuning_seeds: Vec<u64>,
    pub held_out_families: Vec<String>,
    /// Not the registered split: its held-out figures are not held-out
    /// figures in the pre-registered sense.
    pub exploratory: bool,
    /// Where the split came from: the file and its SHA-256, or the options.
    pub source: String,
}

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct SplitRequest {
    pub file: Option<PathBuf>,
    pub tune_seeds: Option<Vec<u64>>,
    pub held_out: Option<Vec<String>>,
    pub exploratory: bool,
}

impl SplitRequest {
    /// The split for a study of `experiment`: its registered file (zoo v2's
    /// for a study with none) unless the request names another split, which
    /// needs `exploratory`.
    pub fn resolve(&self, experiment: &str) -> anyhow::Result<ChosenSplit> {
        let file = self.file.clone().unwrap_or_else(|| {
            PathBuf::from(registered(experiment).map_or(REGISTERED_FILE, |r| r.file))
        });
        let mut why_exploratory = Vec::new();
        let (splits, sha) = if self.file.is_none() && !file.is_file() {
            // No split file here (another working folder): the options alone.
            why_exploratory.push(format!("{} is not here", file.display()));
            (
                Splits {
                    experiment: experiment.to_string(),
                    tuning_seeds: vec![0, 1],
                    held_out_families: Vec::new(),
                },
                String::new(),
            )
        } else {
            read(&file)?
        };
        match registered(&splits.experiment) {
            _ if sha.is_empty() => {}
            Some(r) if r.sha256 == sha => {}
            Some(r) => why_exploratory.push(format!(
                "{} is not the registered split (SHA-256 {sha}, registered {})",
                file.display(),
                r.sha256
            )),
            None => why_exploratory.push(format!(
                "{} is not a registered split (experiment '{}' has none)",
                file.display(),
                splits.experiment
            )),
        }
        if splits.experiment != experiment {
            why_exploratory.push(format!(
                "the split is of experiment '{}', the study is '{experiment}'",
                splits.experiment
            ));
        }
        if self.tune_seeds.is_some() {
            why_exploratory.push("--tune-seeds replaces the registered tuning seeds".into());
        }
        if self.held_out.is_some() {
            why_exploratory.push("--held-out replaces the registered held-out families".into());
        }
        if !why_exploratory.is_empty() && !self.exploratory {
            bail!(
                "not the pre-registered split: {}. Figures tuned on another split are not held-out figures; \
                 run with --exploratory to get them marked as such, or register a new split (commit the \
                 file and its SHA-256 in src/detect/splits.rs) before tuning on it",
                why_exploratory.join("; ")
            );
        }
        Ok(ChosenSplit {
            tuning_seeds: self.tune_seeds.clone().unwrap_or(splits.tuning_seeds),
            held_out_families: self.held_out.clone().unwrap_or(splits.held_out_families),
            exploratory: !why_exploratory.is_empty(),
            source: if sha.is_empty() {
                "command-line options".to_string()
            } else {
                format!("{} (SHA-256 {sha})", file.display())
            },
        })
    }
}

/// A split file and its SHA-256.
fn read(path: &Path) -> anyhow::Result<(Splits, String)> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the split file {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let splits: Splits = yaml_serde::from_str(&text)
        .with_context(|| format!("{}: not a split file", path.display()))?;
    anyhow::ensure!(
        !splits.tuning_seeds.is_empty(),
        "{}: tuning_seeds is empty",
        path.display()
    );
    Ok((splits, crate::io::hex(&Sha256::digest(&bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(REGISTERED_FILE)
    }

    #[test]
    fn the_shipped_split_is_the_registered_one_and_covers_each_kind() {
        let request = SplitRequest {
            file: Some(shipped()),
            ..SplitRequest::default()
        };
        let split = request.resolve("zoo").unwrap();
        assert!(!split.exploratory, "{split:?}");
        assert_eq!(split.tuning_seeds, [0, 1]);
        // At least one varied-appearance, one both-class-rate and one global
        // or colour family, and each a family of the zoo.
        let held = &split.held_out_families;
        assert!(held.iter().any(|f| f.contains("varied")));
        assert!(held.iter().any(|f| f.contains("rates")));
        assert!(held
            .iter()
            .any(|f| ["noise", "colour-only", "cxr-tint"].contains(&f.as_str())));
        let zoo = crate::config::Experiment::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/zoo.yaml"),
            &[],
        )
        .unwrap();
        let families: std::collections::BTreeSet<String> =
            zoo.runs().into_iter().filter_map(|r| r.variant).collect();
        for f in held {
            assert!(families.contains(f), "{f} is not a family of the zoo");
        }
    }

    #[test]
    fn the_varied_marker_supplements_are_registered_and_hold_every_family_out() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for r in &REGISTERED[1..] {
            let request = SplitRequest {
                file: Some(root.join(r.file)),
                ..SplitRequest::default()
            };
            let split = request.resolve(r.experiment).unwrap();
            assert!(!split.exploratory, "{split:?}");
            let study = crate::config::Experiment::load(
                &root.join(format!("experiments/{}.yaml", r.experiment)),
                &[],
            )
            .unwrap();
            let families: std::collections::BTreeSet<String> =
                study.runs().into_iter().filter_map(|r| r.variant).collect();
            let held: std::collections::BTreeSet<String> =
                split.held_out_families.iter().cloned().collect();
            assert_eq!(held, families, "{}", r.experiment);
            // Zoo v2's file does not pass for it, nor it for zoo v2.
            let zoo = SplitRequest {
                file: Some(shipped()),
                ..SplitRequest::default()
            };
            assert!(zoo.resolve(r.experiment).is_err());
            assert!(request.resolve("zoo").is_err());
        }
    }

    #[test]
    fn a_changed_split_or_another_one_needs_exploratory() {
        let dir = std::env::temp_dir().join(format!("nave-splits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let changed = dir.join("zoo-splits.yaml");
        let text = std::fs::read_to_string(shipped()).unwrap();
        std::fs::write(&changed, text.replace("  - cxr-tiny\n", "")).unwrap();
        let request = |file: &Path, exploratory: bool| SplitRequest {
            file: Some(file.to_path_buf()),
            exploratory,
            ..SplitRequest::default()
        };
        let err = format!("{:#}", request(&changed, false).resolve("zoo").unwrap_err());
        assert!(
            err.contains("not the registered split") && err.contains("--exploratory"),
            "{err}"
        );
        let split = request(&changed, true).resolve("zoo").unwrap();
        assert!(split.exploratory && !split.held_out_families.contains(&"cxr-tiny".to_string()));
        // Options that replace the registered split, or another study.
        let options = SplitRequest {
            file: Some(shipped()),
            held_out: Some(vec!["box".into()]),
            ..SplitRequest::default()
        };
        assert!(format!("{:#}", options.resolve("zoo").unwrap_err()).contains("--held-out"));
        assert!(request(&shipped(), false).resolve("demo").is_err());
        let marked = SplitRequest {
            exploratory: true,
            ..options
        }
        .resolve("zoo")
        .unwrap();
        assert!(marked.exploratory && marked.held_out_families == ["box"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
