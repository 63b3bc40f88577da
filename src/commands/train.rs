use anyhow::bail;

use crate::cli::TrainArgs;
use crate::config::Experiment;
use crate::device::DeviceRequest;
use crate::train::{self, checkpoint::RunFolder, RunOutcome};

pub fn run(args: TrainArgs, device: DeviceRequest) -> anyhow::Result<()> {
    let experiment = Experiment::load(&args.experiment, &args.overrides)?;
    let mut runs = experiment.runs();
    if args.list {
        for (i, r) in runs.iter().enumerate() {
            let folder = RunFolder::new(args.checkpoints.join(&r.experiment).join(&r.id));
            let status = if folder.is_complete() {
                "complete"
            } else if folder.run_yaml().is_file() {
                "unfinished"
            } else {
                "new"
            };
            println!("{i:>3}  {:<28} {status}", r.id);
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
