//! What the audit prints when it is done.
use super::results::{AuditReport, RunResult, Truth, DOES_NOT_GAP, RELIES_GAP};
use crate::detect::verdict;

/// Per regime the measures, the watermark comparison, the truth counts, per
/// family, and the blind verdicts.
pub(super) fn print(report: &AuditReport) {
    for r in &report.regimes {
        println!(
            "{:<24} wm_iou {:.3} ± {:.3} (fair {:.2})  wm_shift {:.3} ± {:.3}  gap {:+.3} ± {:.3}  ({} runs)",
            r.regime,
            r.wm_iou.mean,
            r.wm_iou.sd,
            r.wm_iou_fair.mean,
            r.wm_shift.mean,
            r.wm_shift.sd,
            r.shortcut_gap.mean,
            r.shortcut_gap.sd,
            r.runs.len()
        );
    }
    if let Some(c) = &report.by_watermark {
        println!("{}", c.summary());
    }
    let count = |t: Truth| report.runs.iter().filter(|r| r.truth == t).count();
    println!(
        "truth from the shortcut gap (relies >= {RELIES_GAP}, does not <= {DOES_NOT_GAP}): {} rely, {} do not, {} ambiguous{}",
        count(Truth::Relies),
        count(Truth::DoesNot),
        count(Truth::Ambiguous),
        match count(Truth::Unknown) {
            0 => String::new(),
            n => format!(", {n} without a gap"),
        }
    );
    if !report.families.is_empty() {
        println!("per family (fair wm_iou and wm_shift: runs that rely vs runs that do not):");
        for f in &report.families {
            println!("  {}", f.line());
        }
    }
    print_grids(report);
    print_verdicts(&report.runs);
}

/// Which taps were clustered on which grid, and a word when a grid is too
/// coarse for a "not flagged" to mean much.
fn print_grids(report: &AuditReport) {
    let taps = report
        .settings
        .as_ref()
        .map(|s| s.taps.join(" + "))
        .unwrap_or_default();
    let grids: std::collections::BTreeSet<i64> = report.runs.iter().map(|r| r.grid).collect();
    let sides: Vec<String> = grids.iter().map(|g| format!("{g}x{g}")).collect();
    if sides.is_empty() {
        return;
    }
    println!(
        "NAVE on {taps}: a {} grid at {} px",
        sides.join(" / "),
        report.image_size
    );
    let coarse = report
        .runs
        .iter()
        .filter(|r| r.grid > 0 && r.grid < crate::models::MIN_TRUSTED_GRID)
        .count();
    if coarse > 0 {
        println!(
            "  note: {coarse} run(s) were clustered on a grid coarser than {m}x{m}: an artefact of a few pixels shares its \
             cell with its surroundings there, so \"not flagged\" is weak evidence; audit with finer taps \
             (--taps layer2,layer3) or a larger image size",
            m = crate::models::MIN_TRUSTED_GRID
        );
    }
}

/// Runs listed one by one in the terminal's verdict; above, the flagged ones
/// and a count of the rest.
const VERDICT_LINES: usize = 24;

/// The blind detector's verdicts, highest score first.
fn print_verdicts(runs: &[RunResult]) {
    let mut judged: Vec<(&str, &verdict::Verdict)> = runs
        .iter()
        .filter_map(|r| r.verdict.as_ref().map(|v| (r.id.as_str(), v)))
        .collect();
    if judged.is_empty() {
        return;
    }
    judged.sort_by(|a, b| b.1.shortcut_score.total_cmp(&a.1.shortcut_score));
    let flagged = judged.iter().filter(|(_, v)| v.flagged).count();
    println!(
        "Is it a Clever Hans? blind detector (no boxes, no settings), threshold {:.3}: {flagged} of {} flagged",
        verdict::SHORTCUT_THRESHOLD,
        judged.len()
    );
    let shown = if judged.len() <= VERDICT_LINES {
        judged.len()
    } else {
        flagged
    };
    for (id, v) in &judged[..shown] {
        println!("  {}", v.line(id));
    }
    if shown < judged.len() {
        println!(
            "  ... {} not flagged (see index.html)",
            judged.len() - shown
        );
    }
}
