use std::path::Path;
use std::time::Instant;

use tch::Device;

use crate::audit::{audit, AuditOverrides};
use crate::cli::AuditArgs;

pub fn run(a: AuditArgs, device: Device) -> anyhow::Result<()> {
    let overrides = AuditOverrides {
        taps: a.taps,
        k: a.k,
        method: a.method,
        scope: a.scope,
        probes: a.probes,
        repeats: a.repeats,
        resolution: a.resolution,
        pictures: a.pictures,
    };
    let audited = audit(&a.runs, &a.reports, &overrides, a.force, device)?;
    // The report is built beside the previous one and swapped in whole.
    let started = Instant::now();
    let built = crate::report::build(audited.dir(), audited.target(), a.grid_probes)?;
    crate::failpoint::hit("report-built");
    let dir = audited.commit()?;
    println!("audit written to {}", dir.join("audit.json").display());
    announce(&built, &dir, started)
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
