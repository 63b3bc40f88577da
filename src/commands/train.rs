use anyhow::bail;

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
            let held = folder.lock_file().is_file()
                && crate::lock::Lock::try_acquire(&folder.lock_file())?.is_none();
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
    let device = device.resolve()?;
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
    let outcomes = train::train_runs(&runs, &args.checkpoints, &mut store, device, args.wait)?;
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
