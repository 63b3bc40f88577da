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
    let path = audit(&a.runs, &a.reports, &overrides, a.force, device)?;
    println!("audit written to {}", path.display());
    report(
        path.parent().expect("audit.json lies in a folder"),
        a.grid_probes,
    )
}

/// Builds the HTML report and says where it is and what it lacks.
pub fn report(dir: &Path, grid_probes: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let built = crate::report::build(dir, grid_probes)?;
    for m in &built.missing {
        crate::warn!("{m}");
    }
    println!(
        "report: {} ({} run pages, {:.2} s)",
        built.index.display(),
        built.pages,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
