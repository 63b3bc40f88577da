use anyhow::{bail, Context};

use crate::cli::TrainArgs;
use crate::config::{Experiment, RunSpec};
use crate::data::store::DataStore;
use crate::device::DeviceRequest;
use crate::run_folder::{RunFolder, Stage};
use crate::train::{self, WhenHeld};

pub fn run(args: TrainArgs, device: DeviceRequest) -> anyhow::Result<()> {
    let experiment = Experiment::load(&args.experiment, &args.overrides)?;
    if args.list {
        list(&experiment, &args);
        return Ok(());
    }
    let mut runs = experiment.select(args.run.as_deref(), args.index)?;
    if args.slurm.slurm {
        return submit_to_slurm(&experiment, &runs, &args, device);
    }
    if args.parallel > 1 && runs.len() > 1 {
        return train_in_parallel(&experiment, &runs, &args, device);
    }
    let placement = train::Placement {
        device: device.resolve()?,
        memory_format: args.memory_format,
    };
    train::record_named_inits(&mut runs)?;
    // Every existing run is checked against the experiment, and the data
    // loaded, before anything is written: a changed experiment or a missing
    // dataset is refused with the files untouched.
    train::check_existing_settings(&runs, &args.checkpoints)?;
    let mut store = DataStore::default();
    train::check_runs(&runs, &mut store)?;
    experiment.write_copy(&args.checkpoints, &args.overrides)?;
    crate::signals::catch_termination();
    let when_held = match (args.worker, args.wait) {
        (true, _) => WhenHeld::PassOver,
        (false, Some(limit)) => WhenHeld::Wait(limit),
        (false, None) => WhenHeld::Skip,
    };
    let outcomes = train::train_runs(&runs, &args.checkpoints, &mut store, placement, when_held)?;
    if !args.worker {
        let dir = args.checkpoints.join(experiment.name());
        println!(
            "{}",
            train::outcome_line(experiment.name(), &outcomes, &dir)
        );
    }
    Ok(())
}

/// `train --list`: every run of the grid, where it stands, and its grid values.
fn list(experiment: &Experiment, args: &TrainArgs) {
    let width = experiment
        .points()
        .iter()
        .map(|(r, _)| r.id.len())
        .max()
        .unwrap_or(0)
        .max(28);
    for (i, (r, values)) in experiment.points().iter().enumerate() {
        let folder = RunFolder::new(args.checkpoints.join(&r.experiment).join(&r.id));
        let status = match folder.stage() {
            Stage::Complete => "complete",
            Stage::Held => "training",
            Stage::Unfinished => "unfinished",
            Stage::New => "new",
        };
        println!("{i:>3}  {:<width$} {status:<10} {}", r.id, values.join(" "));
    }
}

/// `train --parallel N`: N workers, each this command with `--worker`
/// (see `train::workers`); their status lines name their runs.
fn train_in_parallel(
    experiment: &Experiment,
    runs: &[RunSpec],
    args: &TrainArgs,
    device: DeviceRequest,
) -> anyhow::Result<()> {
    let workers = (args.parallel as usize).min(runs.len());
    let exe = std::env::current_exe().context("locating the nave-lab binary")?;
    let words = worker_words(args, device);
    crate::info!(
        "{}: {} runs on {workers} worker processes",
        experiment.name(),
        runs.len()
    );
    let started = std::time::Instant::now();
    let failed = train::workers::run_workers(&exe, &words, workers)?;
    if let Some(stopped) = crate::signals::received() {
        return Err(anyhow::Error::new(stopped).context(format!(
            "{}: workers stopped; rerun the same command to resume",
            experiment.name()
        )));
    }
    let complete = runs
        .iter()
        .filter(|r| RunFolder::new(args.checkpoints.join(&r.experiment).join(&r.id)).is_complete())
        .count();
    if !failed.is_empty() {
        bail!(
            "{}: {} failed (their errors are above); {complete} of {} runs complete",
            experiment.name(),
            failed.join(", "),
            runs.len()
        );
    }
    println!(
        "{}: {complete} of {} runs complete, {workers} workers, in {:.1} s, in {}",
        experiment.name(),
        runs.len(),
        started.elapsed().as_secs_f64(),
        args.checkpoints.join(experiment.name()).display()
    );
    Ok(())
}

/// The command line of a `--parallel` worker: this command, with
/// `--worker`, at the same verbosity.
fn worker_words(args: &TrainArgs, device: DeviceRequest) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    match crate::ui::verbosity() {
        -1 => words.push("--quiet".into()),
        1 => words.push("-v".into()),
        2 => words.push("-vv".into()),
        _ => {}
    }
    words.extend(["--device".into(), device.to_string(), "train".into()]);
    words.push(args.experiment.display().to_string());
    words.extend([
        "--checkpoints".into(),
        args.checkpoints.display().to_string(),
    ]);
    words.extend(same_training(args));
    if let Some(id) = &args.run {
        words.extend(["--run".into(), id.clone()]);
    }
    if let Some(i) = args.index {
        words.extend(["--index".into(), i.to_string()]);
    }
    words.push("--worker".into());
    words
}

/// The options that make another `train` process of this command train its
/// runs the same way: the `--set` overrides and the memory layout. Slurm's
/// array tasks and `--parallel`'s workers are both started with them.
fn same_training(args: &TrainArgs) -> Vec<String> {
    let mut words = Vec::new();
    for o in &args.overrides {
        words.extend(["--set".to_string(), o.clone()]);
    }
    let format = clap::ValueEnum::to_possible_value(&args.memory_format)
        .expect("every memory format has a name");
    words.extend(["--memory-format".to_string(), format.get_name().to_string()]);
    words
}

/// The command lines of a Slurm array task (train, waiting for a run
/// another task holds) and of the audit job after them; absolute paths,
/// since they run elsewhere.
fn slurm_words(
    args: &TrainArgs,
    study: &std::path::Path,
    device: DeviceRequest,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    use crate::slurm::absolute;
    let exe = std::env::current_exe().context("locating the nave-lab binary")?;
    let exe = exe.display().to_string();
    let mut train = vec![exe.clone(), "train".into()];
    train.push(absolute(&args.experiment).display().to_string());
    train.extend([
        "--checkpoints".into(),
        absolute(&args.checkpoints).display().to_string(),
    ]);
    train.push("--wait".into());
    train.extend(same_training(args));
    let mut audit = vec![exe, "audit".into(), study.display().to_string()];
    audit.extend([
        "--reports".into(),
        absolute(&args.reports).display().to_string(),
    ]);
    for words in [&mut train, &mut audit] {
        words.extend(["--device".to_string(), device.to_string()]);
    }
    Ok((train, audit))
}

/// `train --slurm`: the job array and the audit after it (see `slurm`).
fn submit_to_slurm(
    experiment: &Experiment,
    runs: &[RunSpec],
    args: &TrainArgs,
    device: DeviceRequest,
) -> anyhow::Result<()> {
    use crate::slurm::{self, absolute};
    anyhow::ensure!(
        args.run.is_none() && args.index.is_none() && !args.list,
        "--slurm submits the whole grid; it does not combine with --run, --index or --list"
    );
    let checkpoints = absolute(&args.checkpoints);
    let study = checkpoints.join(experiment.name());
    let slurm_dir = study.join("slurm");
    let logs = slurm_dir.join("logs");
    let workdir = std::env::current_dir()?;
    let (train, audit) = slurm_words(args, &study, device)?;
    let o = &args.slurm;
    let jobs = slurm::JobPair {
        first: slurm_dir.join("train.sbatch"),
        first_text: slurm::train_script(o, experiment.name(), runs.len(), &logs, &workdir, &train)?,
        then: slurm_dir.join("audit.sbatch"),
        then_text: slurm::audit_script(o, experiment.name(), &logs, &workdir, &audit)?,
        logs: logs.clone(),
    };
    let started = std::time::Instant::now();
    let submitted = jobs.submit(o.dry_run, || {
        train::check_existing_settings(runs, &checkpoints)?;
        experiment.write_copy(&args.checkpoints, &args.overrides)
    })?;
    let Some((train_job, audit_job)) = submitted else {
        return Ok(());
    };
    let submission = slurm::Submission {
        train_job: train_job.clone(),
        audit_job: audit_job.clone(),
        runs: runs.iter().map(|r| r.id.clone()).collect(),
        logs: logs.clone(),
        submitted_unix: crate::io::unix_seconds(),
    };
    crate::io::write_json(&slurm_dir.join("jobs.json"), &submission)?;
    println!(
        "{}: submitted job array {train_job} ({} task(s), one per run) and audit job {audit_job} after it, in {:.2} s; logs in {}",
        experiment.name(),
        runs.len(),
        started.elapsed().as_secs_f64(),
        logs.display()
    );
    println!("where it stands: nave-lab status {}", study.display());
    Ok(())
}
