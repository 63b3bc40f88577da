//! `nave-lab status checkpoints/X/`: where a study stands, run by run.
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::cli::StatusArgs;
use crate::config::{Experiment, RunSpec};
use crate::run_folder::{find_runs, RunFolder};
use crate::slurm::{self, Submission};

/// One run's state.
#[derive(Debug, Serialize)]
struct RunStatus {
    index: usize,
    id: String,
    /// done, running, pending, failed, stopped (unfinished, resumable) or not started.
    state: String,
    epochs_done: usize,
    epochs: usize,
    /// The last epoch's figures, when one finished.
    train_loss: Option<f64>,
    test_accuracy_clean: Option<f64>,
    /// Why it failed: the FAILED note's first line, or the task's log.
    reason: Option<String>,
    /// Under Slurm: the task's job id (array_index) and log.
    slurm_task: Option<String>,
    log: Option<PathBuf>,
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
    let held = folder.is_held_elsewhere();
    let task = submission.map(|s| format!("{}_{index}", s.train_job));
    let log = submission.map(|s| s.logs.join(format!("train-{}_{index}.log", s.train_job)));
    let in_queue = queued.get(&Some(index)).map(String::as_str);
    let failed_note = std::fs::read_to_string(folder.failed())
        .ok()
        .map(|t| t.lines().next().unwrap_or_default().to_string());
    let (state, reason) = if folder.is_complete() {
        ("done", None)
    } else if held || in_queue == Some("RUNNING") {
        ("running", None)
    } else if matches!(in_queue, Some(s) if s == "PENDING" || s == "REQUEUED" || s == "CONFIGURING")
    {
        ("pending", None)
    } else if failed_note.is_some() {
        ("failed", failed_note)
    } else if submission.is_some() && in_queue.is_none() {
        // The task left the queue without finishing the run.
        let why = log
            .as_ref()
            .map(|l| format!("the task ended without finishing; see {}", l.display()));
        ("failed", why)
    } else if folder.run_yaml().is_file() {
        ("stopped", None)
    } else {
        ("not started", None)
    };
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

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    anyhow::ensure!(
        dir.is_dir(),
        "{} is not a folder (expected checkpoints/<experiment>/)",
        dir.display()
    );
    let runs = study_runs(dir)?;
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
    let statuses: Vec<RunStatus> = runs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            run_status(
                i,
                spec,
                &RunFolder::new(dir.join(&spec.id)),
                submission.as_ref(),
                &queued,
            )
        })
        .collect();
    if args.json {
        let json = serde_json::json!({
            "dir": dir,
            "runs": statuses,
            "slurm": submission.as_ref().map(|s| serde_json::json!({
                "train_job": s.train_job,
                "audit_job": s.audit_job,
                "audit_state": audit_state,
                "logs": s.logs,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    let width = statuses
        .iter()
        .map(|s| s.id.len())
        .max()
        .unwrap_or(0)
        .max(20);
    for s in &statuses {
        let figures = match (s.train_loss, s.test_accuracy_clean) {
            (Some(l), Some(a)) => format!("loss {l:.3} clean acc {a:.3}"),
            _ => String::new(),
        };
        let task = s
            .slurm_task
            .as_deref()
            .map(|t| format!("  task {t}"))
            .unwrap_or_default();
        println!(
            "{:>3}  {:<width$}  {:<11}  epoch {}/{}  {figures}{task}",
            s.index, s.id, s.state, s.epochs_done, s.epochs
        );
        if let Some(reason) = &s.reason {
            println!("       {reason}");
        }
        if let (Some(log), "failed") = (&s.log, s.state.as_str()) {
            println!("       log: {}", log.display());
        }
    }
    let count = |state: &str| statuses.iter().filter(|s| s.state == state).count();
    println!(
        "{} run(s): {} done, {} running, {} pending, {} failed, {} stopped, {} not started",
        statuses.len(),
        count("done"),
        count("running"),
        count("pending"),
        count("failed"),
        count("stopped"),
        count("not started")
    );
    if let Some(s) = &submission {
        println!(
            "slurm: job array {}, audit job {} ({audit_state}); logs in {}",
            s.train_job,
            s.audit_job,
            s.logs.display()
        );
    }
    Ok(())
}
