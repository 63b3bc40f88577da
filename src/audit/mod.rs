//! `nave-lab audit`: NAVE on every finished run of an experiment, the Clever
//! Hans measures, and the pictures, under `reports/<experiment>/`.
//!
//! Layout written:
//!   audit.json                              settings, per-run and per-regime results
//!   runs/<run-id>/result.json               one run's results (reused when unchanged)
//!   runs/<run-id>/pNNN_{clean,wm}_{overlay,avg,labels}.png
//!   regimes/<regime>/pNNN_{clean,wm}_avgmap.png   average-colour map over seeds and repeats
pub mod detect;
pub mod evaluate;
mod measures;
mod pictures;
mod plan;
pub mod recurrence;
pub mod results;
mod summary;
pub mod verdict;
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
fn audit_run(run: &RunInputs, out_dir: &Path, device: Device) -> anyhow::Result<RunAudit> {
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
    let run_dir = out_dir.join("runs").join(&spec.id);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let n = probe_set.indices.len();
    let mut pictures = pictures::ProbePictures::new(settings.pictures.unwrap_or(n).min(n));
    let mut tally = measures::Tally::default();
    for repeat in 0..settings.repeats {
        let labels = measures::cluster_probes(&feats, settings, repeat as u64)?;
        let grid = measures::Grid::of(&feats, run.test.image_size())?;
        tally.add(&grid, &labels, &probe_set.masks);
        pictures.add(&grid, &labels, &both, repeat == 0, &run_dir)?;
    }
    // The blind verdict: from the model and the images it trained on, as it
    // saw them (artefacts included), never from the boxes measured above.
    let train_images = training_images(spec, run.artefact, run.train)?;
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
    Ok((result, pictures.averages()))
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

/// A run's cached result from the previous report `previous`, when its
/// weights, data, settings and probes are those it was computed from and its
/// pictures are all there; its files are carried into the new report `out_dir`.
fn reuse_cached(
    run: &RunInputs,
    previous: &Path,
    out_dir: &Path,
) -> anyhow::Result<Option<RunAudit>> {
    let old_dir = previous.join("runs").join(&run.spec.id);
    let key = run.key();
    let Some(prev) = std::fs::read_to_string(old_dir.join("result.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<RunResult>(&t).ok())
        .filter(|r| r.key == key)
    else {
        return Ok(None);
    };
    let pictured = run
        .settings
        .pictures
        .unwrap_or(usize::MAX)
        .min(run.probe_set.indices.len());
    let Ok(pairs) = pictures::load_averages(&old_dir, pictured) else {
        return Ok(None);
    };
    carry_files(&old_dir, &out_dir.join("runs").join(&run.spec.id))?;
    let result = RunResult {
        run_dir: Some(run.folder.dir.clone()),
        ..prev
    };
    Ok(Some((result, pairs)))
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
}

impl Audited {
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
        Ok(target)
    }
}

/// Audits every finished run under `dir` (an experiment's checkpoint folder).
pub fn audit(
    dir: &Path,
    reports: &Path,
    overrides: &AuditOverrides,
    force: bool,
    device: Device,
) -> anyhow::Result<Audited> {
    let (specs, unfinished) = plan::finished_runs(dir)?;
    let experiment = specs[0].0.experiment.clone();
    let staged = crate::staging::StagedFolder::begin(&reports.join(&experiment))?;
    let out_dir = staged.dir().to_path_buf();
    let mut store = DataStore::default();
    let first = specs[0].0.clone();
    let first_test = &store.get(&first)?.test;
    let settings = settings_for(&first.audit, &first, overrides, &first_test.class_names)?;
    let first_probes = choose_probes(first_test, &settings.classes, settings.probes)?;
    crate::info!(
        "auditing {} run(s) of {experiment}: {} probes, taps {}, K = {}, {:?}, scope {:?}",
        specs.len(),
        first_probes.len(),
        settings.taps.join(","),
        settings.k,
        settings.method,
        settings.scope
    );

    let mut results = Vec::new();
    let mut maps: BTreeMap<String, Vec<Vec<(RgbImage, RgbImage)>>> = BTreeMap::new();
    let bar = crate::ui::progress_bar(specs.len() as u64, "auditing");
    for (spec, folder, weights_sha256) in &specs {
        // Runs may differ in dataset (real and synthetic families of one zoo)
        // and in artefact: each is probed on its own test split with its own artefact.
        let loaded = store.get(spec)?;
        let (train, test) = (&loaded.train, &loaded.test);
        let data_fingerprint = loaded.fingerprint.as_str();
        let probe_indices = choose_probes(test, &settings.classes, settings.probes)
            .with_context(|| format!("choosing the probes of {}", spec.id))?;
        let artefact = Artefact::new(&spec.watermark_spec, test.image_size())
            .with_context(|| format!("{}: the run's watermark", folder.run_yaml().display()))?;
        let probe_set = ProbeSet::new(probe_indices, &artefact);
        // Runs of several architectures share the settings but not the taps.
        let run_settings = AuditSettings {
            taps: taps_for(spec, overrides),
            ..settings.clone()
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
            data_fingerprint,
        };
        let cached = if force {
            None
        } else {
            reuse_cached(&run, staged.previous(), &out_dir)?
        };
        let (result, pairs) = match cached {
            Some(hit) => {
                crate::detail!("{}: unchanged, audit reused", spec.id);
                hit
            }
            None => audit_run(&run, &out_dir, device)
                .with_context(|| format!("auditing {}", folder.dir.display()))?,
        };
        crate::failpoint::hit("audit-run");
        maps.entry(spec.regime()).or_default().push(pairs);
        results.push(result);
        bar.inc(1);
    }
    bar.finish_and_clear();

    let mut regimes = Vec::new();
    for (regime, per_run) in &maps {
        pictures::write_regime_maps(&out_dir.join("regimes").join(regime), per_run)?;
        let members: Vec<&RunResult> = results.iter().filter(|r| &r.regime == regime).collect();
        regimes.push(RegimeResult::of(regime, &members));
    }
    let first_test = &store.get(&first)?.test;
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
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        settings,
        probes: first_probes,
        by_watermark: WatermarkComparison::of(&results),
        families: FamilySummary::of(&results),
        runs: results,
        regimes,
        skipped_unfinished: unfinished,
    };
    let path = out_dir.join("audit.json");
    crate::io::write_atomic(
        &path,
        crate::io::finite_json(&report, true, &path)?.as_bytes(),
    )?;
    crate::failpoint::hit("audit-json");
    summary::print(&report);
    Ok(Audited { folder: staged })
}
