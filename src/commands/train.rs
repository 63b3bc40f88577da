use anyhow::bail;

use crate::cli::TrainArgs;
use crate::config::Experiment;
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
            let status = if folder.is_complete() {
                "complete"
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
    write_experiment_copy(&experiment, &args)?;
    let outcomes = train::train_runs(&runs, &args.checkpoints, device)?;
    let trained = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, RunOutcome::Trained))
        .count();
    println!(
        "{}: {trained} run(s) trained, {} already complete, in {}",
        experiment.name(),
        outcomes.len() - trained,
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
