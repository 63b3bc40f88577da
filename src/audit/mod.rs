//! `nave-lab audit`: NAVE on every finished run of an experiment, the Clever
//! Hans measures, and the pictures, under `reports/<experiment>/`.
//!
//! Layout written:
//!   audit.json                              settings, per-run and per-regime results
//!   runs/<run-id>/result.json               one run's results (reused when unchanged)
//!   runs/<run-id>/pNNN_{clean,wm}_{overlay,avg,labels}.png
//!   regimes/<regime>/pNNN_{clean,wm}_avgmap.png   average-colour map over seeds and repeats
pub mod external;
pub mod isolation;
mod measures;
mod pictures;
mod plan;
pub mod results;
mod summary;
pub mod zoo_bench;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use image::RgbImage;
use tch::{Device, Tensor};

use crate::config::RunSpec;
use crate::data::loader::normalize_u8;
use crate::data::store::{training_images, DataStore};
use crate::data::watermark::Artefact;
use crate::data::SplitData;
use crate::detect::verdict;
use crate::models::Model;
use crate::nave::extract;
use crate::run_folder::RunFolder;
use plan::file_key;
pub(crate) use plan::{choose_probes, settings_for, taps_for, ProbeSet};
pub use plan::{AuditOverrides, AuditSettings};
pub(crate) use results::final_accuracy;
pub use results::{
    AuditReport, FamilySummary, MeanSd, RegimeResult, RunResult, Truth, WatermarkComparison,
    DOES_NOT_GAP, RELIES_GAP,
};

/// One run's audit inputs: the run, its data, artefact, probes and settings.
struct RunInputs<'a> {
    spec: &'a RunSpec,
    folder: &'a RunFolder,
    train: &'a SplitData,
    test: &'a SplitData,
    artefact: &'a Artefact,
    probe_set: &'a ProbeSet,
    settings: &'a AuditSettings,
    /// What the cached result is checked against (see [`file_key`]).
    weights_sha256: &'a str,
    data_fingerprint: &'a str,
}

impl RunInputs<'_> {
    fn key(&self) -> String {
        file_key(
            self.weights_sha256,
            self.data_fingerprint,
            self.settings,
            self.probe_set,
        )
    }
}

/// Audits one run; returns its result and, per pictured probe, the
/// average-colour images (clean, watermarked) averaged over the repeats.
fn audit_run(run: &RunInputs, run_dir: &Path, device: Device) -> anyhow::Result<RunAudit> {
    let started = std::time::Instant::now();
    let (spec, settings, probe_set) = (run.spec, run.settings, run.probe_set);
    let model = load_model(spec, run.folder, run.test, &settings.taps, device)?;
    let (clean, marked) = probe_set.images(run.test, run.artefact);
    let both = Tensor::cat(&[&clean, &marked], 0); // [2N, 3, S, S] uint8
    let feats = extract::features(
        &model,
        &normalize_u8(&both.to_device(device)),
        &settings.taps,
        settings.resolution,
        32,
    )?; // [2N, D, h, w]
    let (_, d, h, _) = feats.size4()?;
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let n = probe_set.indices.len();
    let mut pictures = pictures::ProbePictures::new(settings.pictures.unwrap_or(n).min(n));
    let mut tally = measures::Tally::default();
    for repeat in 0..settings.repeats {
        let labels = measures::cluster_probes(&feats, settings, repeat as u64)?;
        let grid = measures::Grid::of(&feats, run.test.image_size())?;
        tally.add(&grid, &labels, &probe_set.masks);
        pictures.add(&grid, &labels, &both, repeat == 0, run_dir)?;
    }
    // The blind verdict: from the model and the images it trained on, as it
    // saw them (artefacts included), never from the boxes measured above.
    let train_images = training_images(spec.watermark(), spec.seed, run.artefact, run.train)?;
    let verdict = verdict::judge(
        &model,
        &train_images,
        &run.train.labels,
        &run.train.class_names,
        &marked,
        &settings.taps,
        device,
    )?;
    let (accuracy, gap) = final_accuracy(run.folder);
    let m = tally.means();
    let result = RunResult {
        run_dir: Some(run.folder.dir.clone()),
        id: spec.id.clone(),
        regime: spec.regime(),
        seed: spec.seed,
        augment: spec.augment,
        watermark: spec.watermark,
        arch: spec.model.arch.to_string(),
        variant: spec.variant.clone(),
        wm_iou: m.iou,
        wm_iou_fair: m.fair,
        wm_recall: m.recall,
        wm_precision: m.precision,
        wm_shift: m.shift,
        accuracy,
        shortcut_gap: gap,
        truth: Truth::of_gap(gap),
        probes: probe_set.indices.clone(),
        probe_boxes: probe_set.placed.clone(),
        mask_boxes: probe_set.masks.clone(),
        global_artefact: spec.watermark && run.artefact.is_global(),
        revised_from: spec.revise.as_ref().map(|r| r.from.clone()),
        revise_method: spec.revise.as_ref().map(|r| r.method.as_str().to_string()),
        verdict: Some(verdict),
        grid: h,
        feature_dim: d,
        seconds: started.elapsed().as_secs_f64(),
        key: run.key(),
    };
    crate::io::write_atomic(
        &run_dir.join("result.json"),
        crate::io::finite_json(&result, true, &run_dir.join("result.json"))?.as_bytes(),
    )?;
    Ok((result, pictures.finish(run_dir)?))
}

/// The run's final weights, with its taps checked.
pub(crate) fn load_model(
    spec: &RunSpec,
    folder: &RunFolder,
    test: &SplitData,
    taps: &[String],
    device: Device,
) -> anyhow::Result<Model> {
    let size = test.image_size();
    let mut model = Model::new(&spec.model, test.class_names.len() as i64, size, device)?;
    model.load(&folder.model(), true).with_context(|| {
        format!(
            "{}: the weights do not match its run.yaml",
            folder.dir.display()
        )
    })?;
    for t in taps {
        model.tap_index(t)?;
    }
    Ok(model)
}

/// A run's result and its averaged pictures (clean, watermarked) per probe.
type RunAudit = (RunResult, Vec<(RgbImage, RgbImage)>);

/// A run's cached result from an earlier audit: the previous report's
/// `runs/<id>/`, or a part `audit --run` wrote; taken when its weights, data,
/// settings and probes are those it was computed from and its pictures are
/// all there. Its files are carried into `run_dir`.
fn reuse_cached(
    run: &RunInputs,
    earlier: &[PathBuf],
    run_dir: &Path,
) -> anyhow::Result<Option<RunAudit>> {
    let key = run.key();
    let pictured = run
        .settings
        .pictures
        .unwrap_or(usize::MAX)
        .min(run.probe_set.indices.len());
    for old_dir in earlier {
        let Some(prev) = std::fs::read_to_string(old_dir.join("result.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<RunResult>(&t).ok())
            .filter(|r| r.key == key)
        else {
            continue;
        };
        let Ok(pairs) = pictures::load_averages(old_dir, pictured) else {
            continue;
        };
        carry_files(old_dir, run_dir)?;
        let result = RunResult {
            run_dir: Some(run.folder.dir.clone()),
            ..prev
        };
        return Ok(Some((result, pairs)));
    }
    Ok(None)
}

/// Links (or, across file systems, copies) the files of `from` into `to`.
fn carry_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let dest = to.join(entry.file_name());
        if std::fs::hard_link(entry.path(), &dest).is_err() {
            std::fs::copy(entry.path(), &dest).with_context(|| {
                format!("copying {} to {}", entry.path().display(), dest.display())
            })?;
        }
    }
    Ok(())
}

/// An audit written into a staging folder; [`Audited::commit`] puts it in
/// place of the previous report (so the HTML is built before that).
pub struct Audited {
    folder: crate::staging::StagedFolder,
    /// The parts of `audit --run` this audit took in; removed once it is in place.
    parts: Option<PathBuf>,
}

impl Audited {
    /// An audit with no parts to take in (an audit from files).
    pub(super) fn new(folder: crate::staging::StagedFolder) -> Self {
        Self {
            folder,
            parts: None,
        }
    }

    /// Where the new report is being written.
    pub fn dir(&self) -> &Path {
        self.folder.dir()
    }
    /// Where the report will be once committed.
    pub fn target(&self) -> &Path {
        self.folder.target()
    }
    /// Replaces the previous report; returns the report's folder.
    pub fn commit(self) -> anyhow::Result<PathBuf> {
        let target = self.folder.target().to_path_buf();
        self.folder.commit()?;
        if let Some(parts) = self.parts.filter(|p| p.is_dir()) {
            std::fs::remove_dir_all(&parts)
                .with_context(|| format!("removing {}", parts.display()))?;
        }
        Ok(target)
    }
}

/// Where `audit --run` leaves one run's result for the merge:
/// `reports/.<experiment>.parts/<run-id>/`.
fn parts_dir(reports: &Path, experiment: &str) -> PathBuf {
    reports.join(format!(".{experiment}.parts"))
}

/// What every run of an audit shares: the runs, the settings, the data.
struct Plan {
    specs: Vec<plan::FinishedRun>,
    unfinished: Vec<String>,
    experiment: String,
    settings: AuditSettings,
    first_probes: Vec<usize>,
    store: DataStore,
}

impl Plan {
    fn new(dir: &Path, overrides: &AuditOverrides) -> anyhow::Result<Self> {
        let (specs, unfinished) = plan::finished_runs(dir)?;
        let experiment = specs[0].0.experiment.clone();
        let mut store = DataStore::default();
        let first = specs[0].0.clone();
        let first_test = &store
            .get(&first.dataset.source(), first.dataset.image_size)?
            .test;
        let settings = settings_for(&first.audit, &first, overrides, &first_test.class_names)?;
        let first_probes = choose_probes(first_test, &settings.classes, settings.probes)?;
        Ok(Self {
            specs,
            unfinished,
            experiment,
            settings,
            first_probes,
            store,
        })
    }

    /// Audits the plan's run `i` into `run_dir`, or takes its result from
    /// one of the `earlier` folders when it still holds.
    fn audit_one(
        &mut self,
        i: usize,
        overrides: &AuditOverrides,
        earlier: &[PathBuf],
        run_dir: &Path,
        device: Device,
    ) -> anyhow::Result<RunAudit> {
        let (spec, folder, weights_sha256) = &self.specs[i];
        // Runs may differ in dataset (real and synthetic families of one zoo)
        // and in artefact: each is probed on its own test split with its own artefact.
        let loaded = self
            .store
            .get(&spec.dataset.source(), spec.dataset.image_size)?;
        let (train, test) = (&loaded.train, &loaded.test);
        let probe_indices = choose_probes(test, &self.settings.classes, self.settings.probes)
            .with_context(|| format!("choosing the probes of {}", spec.id))?;
        let artefact = Artefact::new(&spec.watermark_spec, test.image_size())
            .with_context(|| format!("{}: the run's watermark", folder.run_yaml().display()))?;
        let probe_set = ProbeSet::new(probe_indices, &artefact);
        // Runs of several architectures share the settings but not the taps.
        let run_settings = AuditSettings {
            taps: taps_for(spec, overrides),
            ..self.settings.clone()
        };
        let run = RunInputs {
            spec,
            folder,
            train,
            test,
            artefact: &artefact,
            probe_set: &probe_set,
            settings: &run_settings,
            weights_sha256,
            data_fingerprint: loaded.fingerprint.as_str(),
        };
        if let Some(hit) = reuse_cached(&run, earlier, run_dir)? {
            crate::detail!("{}: unchanged, audit reused", spec.id);
            return Ok(hit);
        }
        audit_run(&run, run_dir, device)
            .with_context(|| format!("auditing {}", folder.dir.display()))
    }
}

/// The experiment's name and the ids of its finished runs (each checked
/// against its COMPLETE).
pub fn finished_run_ids(dir: &Path) -> anyhow::Result<(String, Vec<String>)> {
    let (specs, _) = plan::finished_runs(dir)?;
    let experiment = specs[0].0.experiment.clone();
    Ok((
        experiment,
        specs.into_iter().map(|(s, _, _)| s.id).collect(),
    ))
}

/// `audit --run ID`: audits one run into `reports/.<experiment>.parts/<ID>/`,
/// which the next full audit of the experiment takes as it is (a scheduler
/// audits the runs of a study in parallel, then merges). Returns that folder.
pub fn audit_part(
    dir: &Path,
    reports: &Path,
    overrides: &AuditOverrides,
    force: bool,
    id: &str,
    device: Device,
) -> anyhow::Result<PathBuf> {
    let mut plan = Plan::new(dir, overrides)?;
    let Some(i) = plan.specs.iter().position(|(s, _, _)| s.id == id) else {
        let ids: Vec<&str> = plan.specs.iter().map(|(s, _, _)| s.id.as_str()).collect();
        anyhow::bail!(
            "{}: no finished run '{id}'; the finished runs are {}",
            dir.display(),
            ids.join(", ")
        );
    };
    let target = parts_dir(reports, &plan.experiment).join(id);
    let staged = crate::staging::StagedFolder::begin(&target)?;
    let earlier = if force {
        vec![]
    } else {
        vec![
            reports.join(&plan.experiment).join("runs").join(id),
            target.clone(),
        ]
    };
    plan.audit_one(i, overrides, &earlier, staged.dir(), device)?;
    staged.commit()?;
    Ok(target)
}

/// Audits every finished run under `dir` (an experiment's checkpoint folder).
pub fn audit(
    dir: &Path,
    reports: &Path,
    overrides: &AuditOverrides,
    force: bool,
    device: Device,
) -> anyhow::Result<Audited> {
    let mut plan = Plan::new(dir, overrides)?;
    let experiment = plan.experiment.clone();
    let staged = crate::staging::StagedFolder::begin(&reports.join(&experiment))?;
    let out_dir = staged.dir().to_path_buf();
    let parts = parts_dir(reports, &experiment);
    crate::info!(
        "auditing {} run(s) of {experiment}: {} probes, taps {}, K = {}, {:?}, scope {:?}",
        plan.specs.len(),
        plan.first_probes.len(),
        plan.settings.taps.join(","),
        plan.settings.k,
        plan.settings.method,
        plan.settings.scope
    );

    let mut results = Vec::new();
    let mut maps: BTreeMap<String, Vec<Vec<(RgbImage, RgbImage)>>> = BTreeMap::new();
    let bar = crate::ui::progress_bar(plan.specs.len() as u64, "auditing");
    for i in 0..plan.specs.len() {
        let id = plan.specs[i].0.id.clone();
        let earlier = if force {
            vec![]
        } else {
            vec![staged.previous().join("runs").join(&id), parts.join(&id)]
        };
        let run_dir = out_dir.join("runs").join(&id);
        let (result, pairs) = plan.audit_one(i, overrides, &earlier, &run_dir, device)?;
        crate::failpoint::hit("audit-run");
        maps.entry(plan.specs[i].0.regime())
            .or_default()
            .push(pairs);
        results.push(result);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (specs, unfinished, settings, first_probes, mut store) = (
        plan.specs,
        plan.unfinished,
        plan.settings,
        plan.first_probes,
        plan.store,
    );
    let first = specs[0].0.clone();

    let mut regimes = Vec::new();
    for (regime, per_run) in &maps {
        pictures::write_regime_maps(&out_dir.join("regimes").join(regime), per_run)?;
        let members: Vec<&RunResult> = results.iter().filter(|r| &r.regime == regime).collect();
        regimes.push(RegimeResult::of(regime, &members));
    }
    let first_test = &store
        .get(&first.dataset.source(), first.dataset.image_size)?
        .test;
    let report = AuditReport {
        schema: 1,
        experiment: experiment.clone(),
        checkpoints: Some(dir.to_path_buf()),
        class_names: first_test.class_names.clone(),
        image_size: first_test.image_size(),
        probe_boxes: results
            .first()
            .map(|r| r.probe_boxes.clone())
            .unwrap_or_default(),
        device: crate::device::device_name(device),
        created_unix: crate::io::unix_seconds(),
        settings: Some(settings),
        probes: first_probes,
        by_watermark: WatermarkComparison::of(&results),
        families: FamilySummary::of(&results),
        runs: results,
        regimes,
        skipped_unfinished: unfinished,
        external: None,
    };
    report.write_into(&out_dir)?;
    crate::failpoint::hit("audit-json");
    summary::print(&report);
    Ok(Audited {
        folder: staged,
        parts: Some(parts),
    })
}
