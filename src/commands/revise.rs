//! `nave-lab revise`: fine-tune the flagged runs with their shortcut
//! neutralised, audit again, and print each revision beside its original.
use std::path::Path;

use anyhow::Context;

use crate::audit::{AuditReport, RunResult};
use crate::cli::ReviseArgs;
use crate::device::DeviceRequest;
use crate::revise::{self, Outcome, ReviseRequest, Selection};

pub fn run(a: ReviseArgs, request: DeviceRequest) -> anyhow::Result<()> {
    let device = request.resolve()?;
    let placement = crate::train::Placement {
        device,
        memory_format: a.memory_format,
    };
    let before = AuditReport::read(&a.report.join("audit.json"))?;
    let req = ReviseRequest {
        report: a.report.clone(),
        select: match &a.run {
            Some(id) => Selection::Run(id.clone()),
            None => Selection::Flagged,
        },
        methods: a.method.clone(),
        epochs: a.epochs,
        lr_scale: a.lr_scale,
        force: a.force,
    };
    let revised = revise::revise(&req, placement)?;
    if revised.revisions.is_empty() {
        return Ok(());
    }
    let held = revised
        .revisions
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::HeldElsewhere(_)))
        .count();
    if held > 0 {
        println!("{held} revision(s) being trained by another process: audited once they finish");
    }
    // The audit takes the revisions in; every other run's result is reused.
    let reports = a
        .report
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let overrides = revise::audit_overrides(&before);
    let audited = crate::audit::audit(&revised.checkpoints, reports, &overrides, false, device)
        .with_context(|| {
            format!(
                "auditing {} with its revisions",
                revised.checkpoints.display()
            )
        })?;
    let dir = super::audit::report_and_commit(audited, a.grid_probes)?;
    let after = AuditReport::read(&dir.join("audit.json"))?;
    println!("\nbefore -> after revision (gap: clean - flipped test accuracy):");
    for r in &revised.revisions {
        let find = |id: &str| after.runs.iter().find(|x| x.id == id);
        match (find(&r.original), find(&r.id)) {
            (Some(o), Some(n)) => println!("{}", before_after(o, n, r.method.as_str())),
            _ => println!("{}: not audited yet ({:?})", r.id, r.outcome),
        }
    }
    Ok(())
}

/// One line: the original's and the revision's gap, clean accuracy and verdict.
fn before_after(original: &RunResult, revised: &RunResult, method: &str) -> String {
    let clean = |r: &RunResult| r.accuracy.get("clean").copied().unwrap_or(f64::NAN);
    let verdict = |r: &RunResult| {
        r.verdict
            .as_ref()
            .map(|v| {
                format!(
                    "{} {:.3}",
                    if v.flagged { "FLAGGED" } else { "not flagged" },
                    v.shortcut_score
                )
            })
            .unwrap_or_else(|| "no verdict".into())
    };
    format!(
        "{:<36} {method:<8} gap {:.3} -> {:.3}  clean {:.3} -> {:.3}  {} -> {}",
        original.id,
        original.shortcut_gap,
        revised.shortcut_gap,
        clean(original),
        clean(revised),
        verdict(original),
        verdict(revised)
    )
}
