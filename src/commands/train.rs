use anyhow::{bail, Context};

use crate::cli::TrainArgs;
use crate::config::Experiment;
use crate::data::store::DataStore;
use crate::device::DeviceRequest;
use crate::run_folder::RunFolder;
use crate::train::{self, RunOutcome};

pub fn run(args: TrainArgs, device: DeviceRequest) -> anyhow::Result<()> {
    let experiment = Experiment::load(&args.experiment, &args.overrides)?;
    let mut runs = experiment.runs();
    if args.list {
        let width = runs.iter().map(|r| r.id.len()).max().unwrap_or(0).max(28);
        for (i, (r, values)) in experiment.points().iter().enumerate() {
            let folder = RunFolder::new(args.checkpoints.join(&r.experiment).join(&r.id));
            let held = folder.is_held_elsewhere();
            let status = if folder.is_complete() {
                "complete"
            } else if held {
                "training"
            } else if folder.run_yaml().is_file() {
                "unfinished"
            } else {
                "new"
            };
            println!("{i:>3}  {:<width$} {status:<10} {}", r.id, values.join(" "));
        }
        return Ok(());
    }
    if let Some(id) = &args.run {
        let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
        runs.retain(|r| &r.id == id);
        if runs.is_empty() {
            bail!(
                "{}: no run '{id}'; the runs are {}",
                args.experiment.display(),
                ids.join(", ")
            );
        }
    }
    if let Some(i) = args.index {
        if i >= runs.len() {
            bail!(
                "{}: --index {i} is out of range; the grid has {} runs (0..{})",
                args.experiment.display(),
                runs.len(),
                runs.len()
            );
        }
        runs = vec![runs.swap_remove(i)];
    }
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
    record_named_inits(&mut runs)?;
    // Every existing run is checked against the experiment before anything
    // is written: a changed experiment is refused with its files untouched.
    for spec in &runs {
        let folder = RunFolder::new(args.checkpoints.join(&spec.experiment).join(&spec.id));
        if folder.run_yaml().is_file() {
            folder.check_settings(spec)?;
        }
    }
    // The data too: a missing or empty dataset is an error before anything is written.
    let mut store = DataStore::default();
    train::check_runs(&runs, &mut store)?;
    write_experiment_copy(&experiment, &args)?;
    crate::signals::catch_termination();
    let outcomes = train::train_runs(
        &runs,
        &args.checkpoints,
        &mut store,
        placement,
        if args.worker {
            train::WhenHeld::PassOver
        } else if let Some(limit) = args.wait {
            train::WhenHeld::Wait(limit)
        } else {
            train::WhenHeld::Skip
        },
    )?;
    if args.worker {
        return Ok(());
    }
    let count = |f: fn(&RunOutcome) -> bool| outcomes.iter().filter(|(_, o)| f(o)).count();
    let trained = count(|o| matches!(o, RunOutcome::Trained));
    let complete = count(|o| matches!(o, RunOutcome::AlreadyComplete));
    let held = count(|o| matches!(o, RunOutcome::HeldElsewhere(_)));
    let held_note = if held > 0 {
        format!(", {held} being trained by another process (--wait waits for them)")
    } else {
        String::new()
    };
    println!(
        "{}: {trained} run(s) trained, {complete} already complete{held_note}, in {}",
        experiment.name(),
        args.checkpoints.join(experiment.name()).display()
    );
    Ok(())
}

/// `train --parallel N`: N worker processes, each this command for the same
/// runs. Each takes the next run no other holds (the run folder's lock), so
/// every run is trained once; the workers' progress bars are hidden, their
/// status lines name their runs. SIGTERM or Ctrl-C reaches every worker, and
/// each keeps its last finished epoch.
fn train_in_parallel(
    experiment: &Experiment,
    runs: &[crate::config::RunSpec],
    args: &TrainArgs,
    device: DeviceRequest,
) -> anyhow::Result<()> {
    use std::process::Command;
    let workers = (args.parallel as usize).min(runs.len());
    let exe = std::env::current_exe().context("locating the nave-lab binary")?;
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
    // The CPU's cores shared among the workers, unless the user chose.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() / workers);
    crate::info!(
        "{}: {} runs on {workers} worker processes",
        experiment.name(),
        runs.len()
    );
    crate::signals::catch_termination();
    let started = std::time::Instant::now();
    let mut children = Vec::with_capacity(workers);
    for w in 0..workers {
        let mut command = Command::new(&exe);
        command.args(&words).env(crate::ui::NO_PROGRESS_ENV, "1");
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            command.env("OMP_NUM_THREADS", threads.max(1).to_string());
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting worker {} ({})", w + 1, exe.display()))?;
        children.push(Some(child));
        // A moment between starts, so that each takes a different first run
        // instead of all racing for the first lock.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mut failed = Vec::new();
    let mut forwarded = false;
    while children.iter().any(Option::is_some) {
        if let (Some(stopped), false) = (crate::signals::received(), forwarded) {
            for child in children.iter().flatten() {
                // SAFETY: kill(2) on the pid of a child not yet reaped.
                unsafe { libc::kill(child.id() as libc::pid_t, stopped.signal) };
            }
            forwarded = true;
        }
        for (w, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    failed.push(format!("worker {} ({status})", w + 1));
                }
                *slot = None;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
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

/// Keeps the experiment file beside its runs (`checkpoints/<name>/experiment.yaml`),
/// with the --set overrides noted, for the report.
fn write_experiment_copy(experiment: &Experiment, args: &TrainArgs) -> anyhow::Result<()> {
    let dir = args.checkpoints.join(experiment.name());
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    let mut text = format!("# {}\n", experiment.source_path.display());
    for o in &args.overrides {
        text += &format!("# --set {o}\n");
    }
    text += &experiment.source_text;
    crate::io::write_atomic(&dir.join("experiment.yaml"), text.as_bytes())
}

/// `train --slurm`: the job array and the audit after it (see `slurm`).
fn submit_to_slurm(
    experiment: &Experiment,
    runs: &[crate::config::RunSpec],
    args: &TrainArgs,
    device: DeviceRequest,
) -> anyhow::Result<()> {
    use crate::slurm;
    anyhow::ensure!(
        args.run.is_none() && args.index.is_none() && !args.list,
        "--slurm submits the whole grid; it does not combine with --run, --index or --list"
    );
    let absolute = slurm::absolute;
    let exe = std::env::current_exe().context("locating the nave-lab binary")?;
    let checkpoints = absolute(&args.checkpoints);
    let study = checkpoints.join(experiment.name());
    let slurm_dir = study.join("slurm");
    let logs = slurm_dir.join("logs");
    let workdir = std::env::current_dir()?;
    let mut train = vec![
        exe.display().to_string(),
        "train".to_string(),
        absolute(&args.experiment).display().to_string(),
        "--checkpoints".to_string(),
        checkpoints.display().to_string(),
        "--wait".to_string(),
    ];
    train.extend(same_training(args));
    let mut audit = vec![
        exe.display().to_string(),
        "audit".to_string(),
        study.display().to_string(),
        "--reports".to_string(),
        absolute(&args.reports).display().to_string(),
    ];
    for words in [&mut train, &mut audit] {
        words.extend(["--device".to_string(), device.to_string()]);
    }
    let o = &args.slurm;
    let train_script =
        slurm::train_script(o, experiment.name(), runs.len(), &logs, &workdir, &train)?;
    let audit_script = slurm::audit_script(o, experiment.name(), &logs, &workdir, &audit)?;
    let (train_path, audit_path) = (
        slurm_dir.join("train.sbatch"),
        slurm_dir.join("audit.sbatch"),
    );
    let (first, then) = (
        slurm::Script {
            path: &train_path,
            text: &train_script,
        },
        slurm::Script {
            path: &audit_path,
            text: &audit_script,
        },
    );
    if o.dry_run {
        slurm::print_dry_run(&first, &then);
        return Ok(());
    }
    slurm::find_tool("sbatch")?;
    for spec in runs {
        let folder = RunFolder::new(checkpoints.join(&spec.experiment).join(&spec.id));
        if folder.run_yaml().is_file() {
            folder.check_settings(spec)?;
        }
    }
    write_experiment_copy(experiment, args)?;
    let started = std::time::Instant::now();
    let (train_job, audit_job) = slurm::write_and_submit(&first, &then, &logs)?;
    let submission = slurm::Submission {
        train_job: train_job.clone(),
        audit_job: audit_job.clone(),
        runs: runs.iter().map(|r| r.id.clone()).collect(),
        logs: logs.clone(),
        submitted_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    crate::io::write_atomic(
        &slurm_dir.join("jobs.json"),
        serde_json::to_string_pretty(&submission)?.as_bytes(),
    )?;
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

/// `model.init` names (`torchvision:resnet50`...) are fetched into the cache
/// once, and the SHA-256 of the file each run starts from goes into its
/// run.yaml.
fn record_named_inits(runs: &mut [crate::config::RunSpec]) -> anyhow::Result<()> {
    let mut resolved: std::collections::HashMap<String, String> = Default::default();
    for spec in runs.iter_mut() {
        let Some(init) = &spec.model.init else {
            continue;
        };
        let name = init.to_string_lossy().into_owned();
        if !crate::fetch::weights::is_name(&name) {
            continue;
        }
        if !resolved.contains_key(&name) {
            let options = crate::fetch::FetchOptions::new(None, None);
            let got = crate::fetch::weights::resolve(&name, None, &options)?;
            anyhow::ensure!(
                got.arch == spec.model.arch,
                "model.init {name} holds {} weights, but run {} is a {}",
                got.arch,
                spec.id,
                spec.model.arch
            );
            resolved.insert(name.clone(), got.sha256);
        }
        spec.model.init_sha256 = resolved.get(&name).cloned();
    }
    Ok(())
}
