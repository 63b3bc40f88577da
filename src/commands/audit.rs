use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use crate::device::DeviceRequest;

use crate::audit::{audit, AuditOverrides};
use crate::cli::AuditArgs;

pub fn run(a: AuditArgs, request: DeviceRequest) -> anyhow::Result<()> {
    if a.slurm.slurm {
        return submit_to_slurm(&a, request);
    }
    let device = request.resolve()?;
    let overrides = overrides(&a);
    let audited = match (&a.runs, &a.files.weights) {
        (_, Some(weights)) => {
            let request = from_files(&a, weights, overrides)?;
            crate::audit::external::audit_external(&request, device)?
        }
        (Some(runs), None) => {
            if let Some(id) = &a.run {
                let part =
                    crate::audit::audit_part(runs, &a.reports, &overrides, a.force, id, device)?;
                println!(
                    "{id}: audited into {}; `nave-lab audit {}` takes it into the report",
                    part.display(),
                    runs.display()
                );
                return Ok(());
            }
            audit(runs, &a.reports, &overrides, a.force, device)?
        }
        (None, None) => anyhow::bail!("name the runs to audit, or a model with --weights"),
    };
    report_and_commit(audited, a.grid_probes).map(|_| ())
}

/// Builds the HTML report of an audit beside the previous one, swaps it in
/// whole and says where it is; returns the report's folder.
pub fn report_and_commit(
    audited: crate::audit::Audited,
    grid_probes: usize,
) -> anyhow::Result<std::path::PathBuf> {
    let started = Instant::now();
    let built = crate::report::build(audited.dir(), audited.target(), grid_probes)?;
    crate::failpoint::hit("report-built");
    let dir = audited.commit()?;
    println!("audit written to {}", dir.join("audit.json").display());
    announce(&built, &dir, started)?;
    Ok(dir)
}

/// The settings given on the command line.
fn overrides(a: &AuditArgs) -> AuditOverrides {
    AuditOverrides {
        taps: a.taps.clone(),
        k: a.k,
        method: a.method,
        scope: a.scope,
        probes: a.probes,
        repeats: a.repeats,
        resolution: a.resolution,
        pictures: a.pictures,
    }
}

/// `audit --weights`: the request, its values checked.
fn from_files(
    a: &AuditArgs,
    weights: &Path,
    overrides: AuditOverrides,
) -> anyhow::Result<crate::audit::external::ExternalRequest> {
    let f = &a.files;
    let three = |what: &str, v: &[f64]| -> anyhow::Result<[f64; 3]> {
        <[f64; 3]>::try_from(v)
            .map_err(|_| anyhow::anyhow!("--{what} takes three values (R,G,B), got {}", v.len()))
    };
    let name = match &f.name {
        Some(n) => n.clone(),
        None => weights
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    Ok(crate::audit::external::ExternalRequest {
        weights: weights.to_path_buf(),
        arch: f.arch.expect("clap requires --arch with --weights"),
        data: f.data.clone().expect("clap requires --data with --weights"),
        test: f.test.clone(),
        image_size: f.image_size,
        fit: match f.resize {
            None => crate::data::image_file::Fit::Stretch,
            Some(shorter) => {
                anyhow::ensure!(
                    i64::from(shorter) >= f.image_size,
                    "--resize {shorter} is smaller than --image-size {}: the crop would not fit",
                    f.image_size
                );
                crate::data::image_file::Fit::CentreCrop { shorter }
            }
        },
        classes: f.classes.clone(),
        mean: three("mean", &f.mean)?,
        std: three("std", &f.std)?,
        name,
        reports: a.reports.clone(),
        overrides,
    })
}

/// Rebuilds the HTML report in `dir` and says where it is and what it lacks.
pub fn report(dir: &Path, grid_probes: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let built = crate::report::build(dir, dir, grid_probes)?;
    announce(&built, dir, started)
}

fn announce(built: &crate::report::Built, dir: &Path, started: Instant) -> anyhow::Result<()> {
    for m in &built.missing {
        crate::warn!("{m}");
    }
    println!(
        "report: {} ({} run pages, {:.2} s)",
        dir.join("index.html").display(),
        built.pages,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The audit options as given, for the commands the Slurm tasks run.
fn forwarded_options(a: &AuditArgs) -> Vec<String> {
    use clap::ValueEnum;
    let mut words = Vec::new();
    let mut add = |flag: &str, value: Option<String>| {
        if let Some(v) = value {
            words.extend([flag.to_string(), v]);
        }
    };
    add("--taps", a.taps.as_ref().map(|t| t.join(",")));
    add("-k", a.k.map(|k| k.to_string()));
    let name = |v: Option<clap::builder::PossibleValue>| v.map(|p| p.get_name().to_string());
    add(
        "--method",
        a.method.and_then(|m| name(m.to_possible_value())),
    );
    add("--scope", a.scope.and_then(|s| name(s.to_possible_value())));
    add("--probes", a.probes.map(|p| p.to_string()));
    add("--repeats", a.repeats.map(|r| r.to_string()));
    add("--resolution", a.resolution.map(|r| r.to_string()));
    add("--pictures", a.pictures.map(|p| p.to_string()));
    words
}

/// `audit --slurm`: one array task per finished run (`audit --run`), then a
/// job that merges them into the report.
fn submit_to_slurm(a: &AuditArgs, device: DeviceRequest) -> anyhow::Result<()> {
    use crate::slurm;
    anyhow::ensure!(
        a.run.is_none(),
        "--slurm audits every run; it does not combine with --run"
    );
    let absolute = slurm::absolute;
    let runs = a
        .runs
        .as_ref()
        .context("--slurm audits the runs of an experiment: name its folder")?;
    let (experiment, ids) = crate::audit::finished_run_ids(runs)?;
    let exe = std::env::current_exe().context("locating the nave-lab binary")?;
    let study = absolute(runs);
    let slurm_dir = study.join("slurm");
    let logs = slurm_dir.join("logs");
    let mut base = vec![
        exe.display().to_string(),
        "audit".to_string(),
        study.display().to_string(),
        "--reports".to_string(),
        absolute(&a.reports).display().to_string(),
        "--device".to_string(),
        device.to_string(),
    ];
    base.extend(forwarded_options(a));
    let mut part = base.clone();
    if a.force {
        part.push("--force".to_string());
    }
    let mut merge = base;
    merge.extend(["--grid-probes".to_string(), a.grid_probes.to_string()]);
    let workdir = std::env::current_dir()?;
    let o = &a.slurm;
    let jobs = slurm::JobPair {
        first: slurm_dir.join("audit-runs.sbatch"),
        first_text: slurm::audit_runs_script(o, &experiment, &ids, &logs, &workdir, &part)?,
        then: slurm_dir.join("audit.sbatch"),
        then_text: slurm::audit_script(o, &experiment, &logs, &workdir, &merge)?,
        logs: logs.clone(),
    };
    let Some((runs_job, merge_job)) = jobs.submit(o.dry_run, || Ok(()))? else {
        return Ok(());
    };
    let record = serde_json::json!({ "runs_job": runs_job, "merge_job": merge_job, "runs": ids });
    crate::io::write_json(&slurm_dir.join("audit-jobs.json"), &record)?;
    println!(
        "{experiment}: submitted audit array {runs_job} ({} task(s), one per finished run) and merge job {merge_job} after it; logs in {}",
        ids.len(),
        logs.display()
    );
    Ok(())
}
