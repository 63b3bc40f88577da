//! Where a study stands, run by run (`nave-lab status checkpoints/X/`): each
//! run's folder, and the Slurm queue when the study was submitted there.
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::config::{Experiment, RunSpec};
use crate::run_folder::{find_runs, RunFolder};
use crate::slurm::{self, Submission};

/// One run's state.
#[derive(Debug, Serialize)]
pub struct RunStatus {
    pub index: usize,
    pub id: String,
    /// done, running, pending, failed, stopped (unfinished, resumable) or not started.
    pub state: String,
    pub epochs_done: usize,
    pub epochs: usize,
    /// The last epoch's figures, when one finished.
    pub train_loss: Option<f64>,
    pub test_accuracy_clean: Option<f64>,
    /// Why it failed: the FAILED note's first line, or the task's log.
    pub reason: Option<String>,
    /// Under Slurm: the task's job id (array_index) and log.
    pub slurm_task: Option<String>,
    pub log: Option<PathBuf>,
}

/// The runs of the study in `dir`: its grid, from the experiment's copy
/// beside the runs (with its --set overrides), else the run folders found.
fn study_runs(dir: &Path) -> anyhow::Result<Vec<RunSpec>> {
    let copy = dir.join("experiment.yaml");
    if copy.is_file() {
        let text = std::fs::read_to_string(&copy)
            .with_context(|| format!("reading {}", copy.display()))?;
        let overrides: Vec<String> = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# --set "))
            .map(String::from)
            .collect();
        return Ok(Experiment::load(&copy, &overrides)?.runs());
    }
    let folders = find_runs(dir)?;
    anyhow::ensure!(
        !folders.is_empty(),
        "{}: neither an experiment.yaml nor run folders; is it checkpoints/<experiment>/?",
        dir.display()
    );
    folders.iter().map(|f| f.spec()).collect()
}

fn run_status(
    index: usize,
    spec: &RunSpec,
    folder: &RunFolder,
    submission: Option<&Submission>,
    queued: &std::collections::BTreeMap<Option<usize>, String>,
) -> RunStatus {
    let state_json = folder
        .read_state()
        .ok()
        .flatten()
        .map(|s| s.epochs_done)
        .unwrap_or(0);
    let epochs = folder.epoch_metrics(usize::MAX);
    let epochs_done = if folder.is_complete() {
        epochs.len()
    } else {
        state_json
    };
    let last = epochs.get(epochs_done.wrapping_sub(1));
    let task = submission.map(|s| format!("{}_{index}", s.train_job));
    let log = submission.map(|s| s.logs.join(format!("train-{}_{index}.log", s.train_job)));
    let in_queue = queued.get(&Some(index)).map(String::as_str);
    let (state, reason) = state_of(folder, submission.is_some(), in_queue, log.as_deref());
    let show_log = state == "failed" || state == "running";
    RunStatus {
        index,
        id: spec.id.clone(),
        state: state.to_string(),
        epochs_done,
        epochs: spec.train.epochs,
        train_loss: last.map(|m| m.train_loss),
        test_accuracy_clean: last.and_then(|m| m.test_accuracy.get("clean").copied()),
        reason,
        slurm_task: task,
        log: log.filter(|_| show_log),
    }
}

/// A run's state and, when it failed, why: from its folder, and from the
/// queue when it was submitted to Slurm (`in_queue`: its task's state there).
fn state_of(
    folder: &RunFolder,
    submitted: bool,
    in_queue: Option<&str>,
    log: Option<&Path>,
) -> (&'static str, Option<String>) {
    let failed_note = std::fs::read_to_string(folder.failed())
        .ok()
        .map(|t| t.lines().next().unwrap_or_default().to_string());
    if folder.is_complete() {
        ("done", None)
    } else if folder.is_held_elsewhere() || in_queue == Some("RUNNING") {
        ("running", None)
    } else if matches!(in_queue, Some(s) if s == "PENDING" || s == "REQUEUED" || s == "CONFIGURING")
    {
        ("pending", None)
    } else if failed_note.is_some() {
        ("failed", failed_note)
    } else if submitted && in_queue.is_none() {
        // The task left the queue without finishing the run.
        let why = log.map(|l| format!("the task ended without finishing; see {}", l.display()));
        ("failed", why)
    } else if folder.run_yaml().is_file() {
        ("stopped", None)
    } else {
        ("not started", None)
    }
}

/// A study's runs and its Slurm jobs, read once.
pub struct StudyStatus {
    pub dir: PathBuf,
    pub runs: Vec<RunStatus>,
    pub submission: Option<Submission>,
    /// The audit job's state in the queue ("ended" once it left it).
    pub audit_state: String,
}

impl StudyStatus {
    /// Reads the study in `dir` (checkpoints/<experiment>/), asking Slurm's
    /// queue when the study was submitted there.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            dir.is_dir(),
            "{} is not a folder (expected checkpoints/<experiment>/)",
            dir.display()
        );
        let specs = study_runs(dir)?;
        let submission: Option<Submission> = std::fs::read_to_string(dir.join("slurm/jobs.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let (queued, audit_state) = match &submission {
            Some(s) => (
                slurm::queue_states(&s.train_job)?,
                slurm::queue_states(&s.audit_job)?
                    .into_values()
                    .next()
                    .unwrap_or_else(|| "ended".to_string()),
            ),
            None => (Default::default(), String::new()),
        };
        let runs = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let folder = RunFolder::new(dir.join(&spec.id));
                run_status(i, spec, &folder, submission.as_ref(), &queued)
            })
            .collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            runs,
            submission,
            audit_state,
        })
    }

    /// `status --json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "dir": self.dir,
            "runs": self.runs,
            "slurm": self.submission.as_ref().map(|s| serde_json::json!({
                "train_job": s.train_job,
                "audit_job": s.audit_job,
                "audit_state": self.audit_state,
                "logs": s.logs,
            })),
        })
    }

    /// The table `status` prints: a line per run (and its failure), the
    /// counts, and the Slurm jobs.
    pub fn lines(&self) -> Vec<String> {
        let width = self
            .runs
            .iter()
            .map(|s| s.id.len())
            .max()
            .unwrap_or(0)
            .max(20);
        let mut out = Vec::new();
        for s in &self.runs {
            let figures = match (s.train_loss, s.test_accuracy_clean) {
                (Some(l), Some(a)) => format!("loss {l:.3} clean acc {a:.3}"),
                _ => String::new(),
            };
            let task = s
                .slurm_task
                .as_deref()
                .map(|t| format!("  task {t}"))
                .unwrap_or_default();
            out.push(format!(
                "{:>3}  {:<width$}  {:<11}  epoch {}/{}  {figures}{task}",
                s.index, s.id, s.state, s.epochs_done, s.epochs
            ));
            if let Some(reason) = &s.reason {
                out.push(format!("       {reason}"));
            }
            if let (Some(log), "failed") = (&s.log, s.state.as_str()) {
                out.push(format!("       log: {}", log.display()));
            }
        }
        let count = |state: &str| self.runs.iter().filter(|s| s.state == state).count();
        out.push(format!(
            "{} run(s): {} done, {} running, {} pending, {} failed, {} stopped, {} not started",
            self.runs.len(),
            count("done"),
            count("running"),
            count("pending"),
            count("failed"),
            count("stopped"),
            count("not started")
        ));
        if let Some(s) = &self.submission {
            out.push(format!(
                "slurm: job array {}, audit job {} ({}); logs in {}",
                s.train_job,
                s.audit_job,
                self.audit_state,
                s.logs.display()
            ));
        }
        out
    }
}
