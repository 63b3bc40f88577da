//! Planning an audit: the settings (run.yaml's `audit:` under the command
//! line's), each run's taps and probes, and the key that says whether a
//! cached result still holds.
use std::path::Path;

use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::config::{AuditSpec, ClusterMethod, RunSpec, Scope};
use crate::data::watermark::{Artefact, Placement};
use crate::data::PixelBox;
use crate::data::{Split, SplitData};
use crate::detect::verdict;
use crate::run_folder::{find_runs, RunFolder};

/// Seed of the probe choice and of the probes' watermark boxes: the same for
/// every run, so that regimes are compared on the same pictures.
pub(crate) const PROBE_SEED: u64 = 0;

/// Audit settings after merging the command line over run.yaml's `audit:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditSettings {
    pub taps: Vec<String>,
    pub k: usize,
    pub method: ClusterMethod,
    pub scope: Scope,
    pub probes: usize,
    pub classes: Vec<String>,
    pub repeats: usize,
    pub tol: f64,
    pub max_iter: usize,
    pub resolution: Option<i64>,
    /// Pictures are written for the first this many probes (None: all);
    /// the measures always use every probe.
    #[serde(default)]
    pub pictures: Option<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditOverrides {
    pub taps: Option<Vec<String>>,
    pub k: Option<usize>,
    pub method: Option<ClusterMethod>,
    pub scope: Option<Scope>,
    pub probes: Option<usize>,
    pub repeats: Option<usize>,
    pub resolution: Option<i64>,
    pub pictures: Option<usize>,
}

impl AuditSettings {
    /// An `audit:` block's values under the command line's, with the taps
    /// and the probes' classes already chosen.
    pub(crate) fn merged(
        spec: &AuditSpec,
        o: &AuditOverrides,
        taps: Vec<String>,
        classes: Vec<String>,
    ) -> Self {
        AuditSettings {
            taps,
            k: o.k.unwrap_or(spec.k),
            method: o.method.unwrap_or(spec.method),
            scope: o.scope.unwrap_or(spec.scope),
            probes: o.probes.unwrap_or(spec.probes),
            classes,
            repeats: o.repeats.unwrap_or(spec.repeats).max(1),
            tol: spec.tol,
            max_iter: spec.max_iter,
            resolution: o.resolution.or(spec.resolution),
            pictures: o.pictures,
        }
    }
}

pub(crate) fn settings_for(
    spec: &AuditSpec,
    run: &RunSpec,
    o: &AuditOverrides,
    class_names: &[String],
) -> anyhow::Result<AuditSettings> {
    let target = run
        .watermark_spec
        .target_index(class_names)
        .map_err(anyhow::Error::msg)?;
    let classes = spec
        .classes
        .clone()
        .unwrap_or_else(|| vec![class_names[target as usize].clone()]);
    Ok(AuditSettings::merged(spec, o, taps_for(run, o), classes))
}

/// The taps of one run: the command line's, else run.yaml's `audit.taps`,
/// else the architecture's default.
pub(crate) fn taps_for(run: &RunSpec, o: &AuditOverrides) -> Vec<String> {
    o.taps
        .clone()
        .or_else(|| run.audit.taps.clone())
        .unwrap_or_else(|| run.model.arch.audit_taps(run.dataset.image_size))
}

/// The probe images: up to N test images of the chosen classes, in a fixed
/// random order.
pub(crate) fn choose_probes(
    test: &SplitData,
    classes: &[String],
    n: usize,
) -> anyhow::Result<Vec<usize>> {
    let wanted: Vec<i64> = classes
        .iter()
        .map(|c| {
            test.class_names
                .iter()
                .position(|x| x == c)
                .map(|i| i as i64)
                .with_context(|| format!("audit class '{c}' is not one of {:?}", test.class_names))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut idx: Vec<usize> = (0..test.len())
        .filter(|&i| wanted.contains(&test.labels[i]))
        .collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(PROBE_SEED));
    idx.truncate(n);
    idx.sort();
    if idx.is_empty() {
        bail!("no test images of the classes {classes:?} to probe");
    }
    Ok(idx)
}

/// Identifies what a run's result was computed from: its weights' hash, the
/// dataset's fingerprint, the settings, the probes with their boxes, and the
/// detector's version.
pub(super) fn file_key(
    weights_sha256: &str,
    data_fingerprint: &str,
    settings: &AuditSettings,
    probes: &ProbeSet,
) -> String {
    // Every part as data (JSON), never a type's Debug form, so that renaming
    // a type does not change the key.
    format!(
        "weights {weights_sha256}|data {data_fingerprint}|{}|{:?}|{}|{}",
        serde_json::to_string(settings).unwrap_or_default(),
        probes.indices,
        serde_json::to_string(&probes.placed).unwrap_or_default(),
        verdict::DETECTOR_VERSION
    )
}

/// One run's probes: test indices, where its artefact is stamped on each,
/// and the artefact's visible box there.
pub(crate) struct ProbeSet {
    pub indices: Vec<usize>,
    pub placed: Vec<PixelBox>,
    pub masks: Vec<PixelBox>,
    /// Where and how the artefact is stamped on each probe.
    placements: Vec<Placement>,
}

impl ProbeSet {
    /// The probes clean, and stamped with the run's artefact where the plan put it.
    pub fn images(&self, test: &SplitData, artefact: &Artefact) -> (Tensor, Tensor) {
        let index: Vec<i64> = self.indices.iter().map(|&i| i as i64).collect();
        let clean = test.images.index_select(0, &Tensor::from_slice(&index));
        let placed: Vec<_> = self.placements.iter().copied().map(Some).collect();
        let marked = artefact.stamp(&clean, &placed);
        (clean, marked)
    }

    pub fn new(indices: Vec<usize>, artefact: &Artefact) -> Self {
        let placements: Vec<Placement> = indices
            .iter()
            .map(|&i| artefact.placement_for(PROBE_SEED, Split::Test, i))
            .collect();
        Self {
            indices,
            placed: placements.iter().map(|p| p.placed).collect(),
            masks: placements.iter().map(|p| p.visible).collect(),
            placements,
        }
    }
}

/// A finished run: its resolved spec and its folder.
/// A finished run: its settings, folder, and its weights' SHA-256.
pub(super) type FinishedRun = (RunSpec, RunFolder, String);

/// The finished runs under an experiment's checkpoint folder, and the ids of
/// the unfinished ones (skipped, and said so).
pub(super) fn finished_runs(dir: &Path) -> anyhow::Result<(Vec<FinishedRun>, Vec<String>)> {
    if !dir.is_dir() {
        bail!(
            "{} is not a folder of runs (expected checkpoints/<experiment>/)",
            dir.display()
        );
    }
    let folders = find_runs(dir)?;
    if folders.is_empty() {
        bail!(
            "{}: no run folders (folders with run.yaml); train the experiment first",
            dir.display()
        );
    }
    let (mut finished, mut unfinished) = (Vec::new(), Vec::new());
    let mut seen: std::collections::BTreeMap<String, std::path::PathBuf> = Default::default();
    for f in folders {
        let spec = f.spec()?;
        if let Some(first) = seen.insert(spec.id.clone(), f.dir.clone()) {
            bail!(
                "{} and {} are both run {}: audit one of them (move the copy out of {})",
                first.display(),
                f.dir.display(),
                spec.id,
                dir.display()
            );
        }
        if f.is_complete() {
            let weights = match f.verify_complete()? {
                Some(digest) => digest,
                None => crate::io::FileDigest::of_file(&f.model())?,
            };
            finished.push((spec, f, weights.sha256));
        } else {
            crate::info!("{}: unfinished (no COMPLETE), skipped", spec.id);
            unfinished.push(spec.id);
        }
    }
    if finished.is_empty() {
        bail!(
            "{}: no finished run to audit ({} unfinished)",
            dir.display(),
            unfinished.len()
        );
    }
    Ok((finished, unfinished))
}
