//! `nave-lab revise`: from a verdict to a remedy. Each flagged run of an
//! audit is fine-tuned, from its final weights, on its own training images
//! with what the verdict found neutralised (`neutralise`), into a run folder
//! beside it (`<id>-revised-<method>`), locked and resumable like any run;
//! the command then audits the experiment again, so the report shows each
//! revision beside its original.
//!
//! What a revision reads of its original: the weights, the training images
//! as the model trained on them (an auditor's data, artefacts included) and
//! labels, and the verdict in audit.json. Never the run's artefact settings
//! or recorded boxes: the evidence is copied into the revised folder
//! (`revise.json`) and `neutralise` sees only it.
pub mod neutralise;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::audit::{AuditReport, RunResult};
use crate::config::{
    name_problem, ReviseDefaults, ReviseMethod, ReviseSpec, RunSpec, ScheduleSpec,
};
use crate::data::store::{training_images, DataStore};
use crate::data::watermark::Artefact;
use crate::detect::verdict::Verdict;
use crate::detect::Source;
use crate::io::FileDigest;
use crate::run_folder::RunFolder;
use crate::train::{FineTune, Placement};

/// The file a revised run keeps its evidence in.
pub const EVIDENCE_FILE: &str = "revise.json";

/// Which runs of the audit to revise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One run by id (refused unless flagged, or forced).
    Run(String),
    /// Every flagged run that is not itself a revision.
    Flagged,
}

/// What `revise` is asked to do; the options left unset come from the
/// experiment file's `revise:` block, then from its defaults.
#[derive(Debug, Clone)]
pub struct ReviseRequest {
    /// The audit's report folder (`reports/<experiment>/`).
    pub report: PathBuf,
    pub select: Selection,
    pub methods: Option<Vec<ReviseMethod>>,
    pub epochs: Option<usize>,
    pub lr_scale: Option<f64>,
    /// Revise a run that is not flagged (on its best candidate).
    pub force: bool,
}

/// What happened to one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Trained,
    AlreadyComplete,
    /// Another process holds its folder.
    HeldElsewhere(String),
}

/// One revision: its run, folder and outcome.
#[derive(Debug, Clone)]
pub struct Revision {
    pub original: String,
    pub id: String,
    pub method: ReviseMethod,
    pub folder: PathBuf,
    pub outcome: Outcome,
}

/// The revisions asked for, and the checkpoint folder to audit after.
pub struct Revised {
    pub checkpoints: PathBuf,
    pub revisions: Vec<Revision>,
}

/// Revises the runs `request` selects, each with every method asked for.
pub fn revise(request: &ReviseRequest, placement: Placement) -> anyhow::Result<Revised> {
    let audit_json = request.report.join("audit.json");
    let report = AuditReport::read(&audit_json)?;
    let Some(checkpoints) = report.checkpoints.clone() else {
        bail!(
            "{}: an audit of a model from files; `revise` fine-tunes runs trained by nave-lab \
             (train the model with `nave-lab train`, audit it, then revise)",
            audit_json.display()
        );
    };
    let defaults = experiment_defaults(&checkpoints)?;
    let methods = request.methods.clone().unwrap_or(defaults.methods);
    let epochs = request.epochs.unwrap_or(defaults.epochs);
    let lr_scale = request.lr_scale.unwrap_or(defaults.lr_scale);
    anyhow::ensure!(epochs >= 1, "--epochs must be at least 1");
    anyhow::ensure!(
        lr_scale.is_finite() && lr_scale > 0.0,
        "--lr-scale must be a positive number, got {lr_scale}"
    );
    anyhow::ensure!(!methods.is_empty(), "no revise method given");
    let chosen = select(&report, &request.select, request.force, &audit_json)?;
    if chosen.is_empty() {
        crate::info!(
            "no run of {} is flagged: there is nothing to revise",
            report.experiment
        );
    }
    let mut store = DataStore::default();
    let mut revisions = Vec::new();
    for run in chosen {
        // The run's folder is found by its id under the audited checkpoints
        // (never at a path audit.json names), so a revision is written
        // beside it there and nowhere else.
        if let Some(why) = name_problem(&run.id) {
            bail!(
                "{}: run id '{}': {why}",
                audit_json.display(),
                run.id.escape_debug()
            );
        }
        let original = RunFolder::new(checkpoints.join(&run.id));
        let verdict = run.verdict.as_ref().expect("selected runs have verdicts");
        for &method in &methods {
            let plan = Plan::new(&original, verdict, method, epochs, lr_scale)?;
            revisions.push(plan.carry_out(verdict, &mut store, placement)?);
        }
    }
    Ok(Revised {
        checkpoints,
        revisions,
    })
}

/// The experiment file's `revise:` block, from its copy beside the runs.
fn experiment_defaults(checkpoints: &Path) -> anyhow::Result<ReviseDefaults> {
    let path = checkpoints.join("experiment.yaml");
    if !path.is_file() {
        return Ok(ReviseDefaults::default());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: crate::config::ExperimentFile = yaml_serde::from_str(&text)
        .with_context(|| format!("{}: not an experiment file", path.display()))?;
    Ok(file.revise)
}

/// The runs of the audit that `select` names, refused where not flagged.
fn select<'a>(
    report: &'a AuditReport,
    select: &Selection,
    force: bool,
    audit_json: &Path,
) -> anyhow::Result<Vec<&'a RunResult>> {
    let originals = report.runs.iter().filter(|r| r.revised_from.is_none());
    match select {
        Selection::Flagged => Ok(originals
            .filter(|r| r.verdict.as_ref().is_some_and(|v| v.flagged))
            .collect()),
        Selection::Run(id) => {
            let Some(run) = report.runs.iter().find(|r| &r.id == id) else {
                let ids: Vec<&str> = report.runs.iter().map(|r| r.id.as_str()).collect();
                bail!(
                    "{}: no run '{}'; the audited runs are {}",
                    audit_json.display(),
                    id.escape_debug(),
                    ids.join(", ")
                );
            };
            if let Some(from) = &run.revised_from {
                bail!("{id} is itself a revision of {from}: revise {from} instead");
            }
            let Some(v) = &run.verdict else {
                bail!(
                    "{}: {id} has no verdict (an older audit): rerun `nave-lab audit --force`",
                    audit_json.display()
                );
            };
            if !v.flagged && !force {
                bail!(
                    "{id} is not flagged (score {:.3} < {:.3}): there is no found shortcut to \
                     remove; --force revises it on the detector's best candidate",
                    v.shortcut_score,
                    v.threshold
                );
            }
            Ok(vec![run])
        }
    }
}

/// One revision, resolved: the original's spec, the revised spec and folder.
struct Plan<'a> {
    original: &'a RunFolder,
    original_spec: RunSpec,
    spec: RunSpec,
    folder: RunFolder,
    evidence: Vec<u8>,
}

impl<'a> Plan<'a> {
    fn new(
        original: &'a RunFolder,
        verdict: &Verdict,
        method: ReviseMethod,
        epochs: usize,
        lr_scale: f64,
    ) -> anyhow::Result<Self> {
        let original_spec = original.spec()?;
        let expected = original
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        anyhow::ensure!(
            expected.as_deref() == Some(original_spec.id.as_str()),
            "{} holds run '{}', not the run of its folder's name",
            original.run_yaml().display(),
            original_spec.id
        );
        anyhow::ensure!(
            original.is_complete(),
            "{} is not a finished run (no COMPLETE)",
            original.dir.display()
        );
        let weights = match original.verify_complete()? {
            Some(d) => d,
            None => FileDigest::of_file(&original.model())?,
        };
        let evidence = serde_json::to_vec_pretty(verdict)?;
        let id = format!("{}-revised-{}", original_spec.id, method.as_str());
        if let Some(why) = name_problem(&id) {
            bail!("the revised run's id '{id}': {why}");
        }
        let mut spec = original_spec.clone();
        spec.id = id.clone();
        spec.train.epochs = epochs;
        spec.train.optimizer.lr *= lr_scale;
        // A fine-tune from trained weights: no warm-up, the rate decays
        // over its few epochs.
        spec.train.schedule = ScheduleSpec::default();
        spec.revise = Some(ReviseSpec {
            from: original_spec.id.clone(),
            method,
            from_weights_sha256: weights.sha256,
            evidence_sha256: FileDigest::of_bytes(&evidence).sha256,
        });
        let parent = original
            .dir
            .parent()
            .context("the run folder has no parent folder")?;
        Ok(Self {
            original,
            original_spec,
            folder: RunFolder::new(parent.join(&id)),
            spec,
            evidence,
        })
    }

    /// Fine-tunes the revised run (or finds it done or held).
    fn carry_out(
        &self,
        verdict: &Verdict,
        store: &mut DataStore,
        placement: Placement,
    ) -> anyhow::Result<Revision> {
        let method = self.spec.revise.as_ref().expect("a revision").method;
        let revision = |outcome| Revision {
            original: self.original_spec.id.clone(),
            id: self.spec.id.clone(),
            method,
            folder: self.folder.dir.clone(),
            outcome,
        };
        let Some(_lock) = self.folder.try_lock()? else {
            let holder = crate::lock::holder(&self.folder.lock_file());
            crate::info!("{} is being revised by {holder}, skipped", self.spec.id);
            return Ok(revision(Outcome::HeldElsewhere(holder)));
        };
        if self.folder.is_complete() {
            self.folder.check_settings(&self.spec)?;
            self.folder.verify_complete()?;
            crate::info!("{} is complete, skipped", self.spec.id);
            return Ok(revision(Outcome::AlreadyComplete));
        }
        self.folder.create(&self.spec)?;
        crate::io::write_atomic(&self.folder.dir.join(EVIDENCE_FILE), &self.evidence)?;
        let original = &self.original_spec;
        let data = store.get(&original.dataset.source(), original.dataset.image_size)?;
        let fine_tune = FineTune {
            weights: self.original.model(),
            images: self.neutralised_images(verdict, method, data, placement.device)?,
        };
        crate::train::train_noting_failure(
            &self.spec,
            &self.folder,
            data,
            placement,
            Some(&fine_tune),
        )?;
        Ok(revision(Outcome::Trained))
    }

    /// The original's training images as its model trained on them (the
    /// data an auditor holds), with what `verdict` found neutralised.
    fn neutralised_images(
        &self,
        verdict: &Verdict,
        method: ReviseMethod,
        data: &crate::data::store::LoadedData,
        device: tch::Device,
    ) -> anyhow::Result<tch::Tensor> {
        let original = &self.original_spec;
        let artefact = Artefact::new(&original.watermark_spec, original.dataset.image_size)?;
        let images = training_images(original.watermark(), original.seed, &artefact, &data.train)?;
        let looked = match verdict.source {
            Source::Sensitivity if method != ReviseMethod::None => Some(
                self.where_the_model_looks(verdict, &images, &data.train.class_names, device)?,
            ),
            _ => None,
        };
        let done = neutralise::neutralise(
            &images,
            &data.train.labels,
            &data.train.class_names,
            verdict,
            looked.as_deref(),
            method,
            original.seed,
        )
        .with_context(|| format!("revising {}", original.id))?;
        crate::info!(
            "{}: {} of {} training images changed{}{}; fine-tuning {} epoch(s) from {}",
            self.spec.id,
            done.changed,
            data.train.labels.len(),
            done.carriers
                .map(|c| format!(" ({c} carry the found object)"))
                .unwrap_or_default(),
            done.reach
                .filter(|r| *r != crate::detect::carriers::Reach::default())
                .map(|r| format!(
                    ", the object reaching {} px left, {} up, {} right, {} down beyond its matched box",
                    r.left, r.top, r.right, r.bottom
                ))
                .unwrap_or_default(),
            self.spec.train.epochs,
            self.original.model().display()
        );
        Ok(done.images)
    }

    /// Where the original model looks for the verdict's class on each of
    /// the training `images`: the boxes `neutralise` works on when the
    /// evidence is where the model looks.
    fn where_the_model_looks(
        &self,
        verdict: &Verdict,
        images: &tch::Tensor,
        class_names: &[String],
        device: tch::Device,
    ) -> anyhow::Result<Vec<Option<crate::data::PixelBox>>> {
        let Some(looked) = verdict.looked else {
            bail!(
                "{}: the verdict's evidence is where the model looks, but the audit kept no way \
                 to find it again (an older audit): rerun `nave-lab audit --force`",
                self.original_spec.id
            );
        };
        let original = &self.original_spec;
        looked
            .check(original.dataset.image_size, class_names.len())
            .with_context(|| format!("{}: its verdict", original.id))?;
        anyhow::ensure!(
            verdict.class.as_deref() == Some(class_names[looked.class].as_str()),
            "{}: its verdict names class {:?} but looks for class '{}'",
            original.id,
            verdict.class,
            class_names[looked.class]
        );
        let model = crate::models::from_weights(
            original.model.arch,
            &self.original.model(),
            original.dataset.image_size,
            device,
        )
        .with_context(|| format!("{}: loading its weights", self.original.model().display()))?;
        crate::info!(
            "{}: finding where the model looks on {} training images",
            self.spec.id,
            images.size()[0]
        );
        Ok(looked.boxes(&model, images, device))
    }
}

/// The settings `report` was audited with, as options for the audit that
/// takes the revisions in (so that the runs it reuses stay as they were).
/// The taps are passed on only where they differ from what the first run's
/// run.yaml gives, since runs of other architectures take their own.
pub fn audit_overrides(report: &AuditReport) -> crate::audit::AuditOverrides {
    let mut o = crate::audit::AuditOverrides::default();
    let Some(s) = &report.settings else {
        return o;
    };
    let first_taps = report
        .runs
        .first()
        .and_then(|r| r.run_dir.as_ref())
        .and_then(|d| RunFolder::new(d).spec().ok())
        .map(|spec| crate::audit::taps_for(&spec, &o));
    if first_taps.as_ref() != Some(&s.taps) {
        o.taps = Some(s.taps.clone());
    }
    o.k = Some(s.k);
    o.method = Some(s.method);
    o.scope = Some(s.scope);
    o.probes = Some(s.probes);
    o.repeats = Some(s.repeats);
    o.resolution = s.resolution;
    o.pictures = s.pictures;
    o
}
