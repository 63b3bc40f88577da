//! `nave-lab bench revise reports/<zoo>/`: what `revise` did over a zoo,
//! from the audit that took the revisions in. Per family and method, over
//! the revised runs that relied on their artefact: the gap before and after
//! and how much of it fell, clean accuracy before and after, and how many are
//! still flagged; beside two references the zoo knows: the runs trained from
//! scratch on the same data without the artefact (the upper bound: their gap
//! and clean accuracy), and the control (`none`: the same fine-tune with
//! nothing neutralised). Runs that rely but were not flagged, and so were not
//! revised, are listed per family.
use std::collections::BTreeMap;

use serde::Serialize;

use crate::audit::{AuditReport, RunResult, Truth};
use crate::config::RunSpec;
use crate::run_folder::RunFolder;

#[derive(Debug, clap::Args)]
pub struct BenchReviseArgs {
    /// The report folder of an audit that took the revisions in (reports/<zoo>/).
    pub report: std::path::PathBuf,
    /// Also write the JSON here.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// One family and method's figures.
#[derive(Debug, Serialize)]
pub struct Row {
    pub family: String,
    pub method: String,
    /// Revised runs that relied on their artefact before.
    pub runs: usize,
    pub gap_before: f64,
    pub gap_after: f64,
    /// Mean over runs of (before - after) / before.
    pub gap_fall: f64,
    pub clean_before: f64,
    pub clean_after: f64,
    /// Mean clean accuracy of the runs trained without any artefact on the
    /// same data and model (None when the zoo has none).
    pub clean_reference: Option<f64>,
    pub still_flagged: usize,
    /// Fine-tuning seconds per run (training epochs only, from metrics).
    pub seconds_per_run: f64,
}

/// The figures of one revised run.
struct Revised<'a> {
    family: String,
    method: String,
    original: &'a RunResult,
    revised: &'a RunResult,
    reference: f64,
    seconds: f64,
}

fn clean(r: &RunResult) -> f64 {
    r.accuracy.get("clean").copied().unwrap_or(f64::NAN)
}

/// The mean of the finite values (NaN when there are none).
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

fn spec_of(r: &RunResult) -> Option<RunSpec> {
    RunFolder::new(r.run_dir.as_ref()?).spec().ok()
}

pub fn bench_revise(a: &BenchReviseArgs) -> anyhow::Result<serde_json::Value> {
    let report = AuditReport::read(&a.report.join("audit.json"))?;
    let revised = revised_runs(&report);
    let rows = rows_of(&revised);
    let not_revised = not_revised(&report.runs, &revised);
    print_table(&rows, &not_revised);
    Ok(serde_json::json!({
        "report": a.report,
        "rows": rows,
        "relying_not_revised": not_revised,
    }))
}

/// Per family, the runs that rely on their artefact but have no revision
/// in the audit (not flagged, so `revise` left them; or not revised yet):
/// a table over the revised runs alone would hide them.
fn not_revised<'a>(runs: &'a [RunResult], revised: &[Revised]) -> BTreeMap<String, Vec<&'a str>> {
    runs.iter()
        .filter(|r| r.revised_from.is_none() && r.truth == Truth::Relies)
        .filter(|r| !revised.iter().any(|x| x.original.id == r.id))
        .fold(BTreeMap::new(), |mut m, r| {
            m.entry(family(r)).or_default().push(r.id.as_str());
            m
        })
}

/// A run's artefact family: its grid variant, else its regime.
fn family(r: &RunResult) -> String {
    r.variant.clone().unwrap_or_else(|| r.regime.clone())
}

/// Every revision of a run that relied on its artefact, with its original
/// and the clean accuracy of the runs trained without any artefact on the
/// same data and model (the upper bound).
fn revised_runs(report: &AuditReport) -> Vec<Revised<'_>> {
    let specs: BTreeMap<&str, RunSpec> = report
        .runs
        .iter()
        .filter_map(|r| Some((r.id.as_str(), spec_of(r)?)))
        .collect();
    let reference = |spec: &RunSpec| {
        mean(
            report
                .runs
                .iter()
                .filter(|r| !r.watermark && r.revised_from.is_none())
                .filter(|r| {
                    specs
                        .get(r.id.as_str())
                        .is_some_and(|s| s.dataset == spec.dataset && s.model == spec.model)
                })
                .map(clean),
        )
    };
    let mut revised = Vec::new();
    for r in &report.runs {
        let (Some(from), Some(method)) = (&r.revised_from, &r.revise_method) else {
            continue;
        };
        let Some(original) = report.runs.iter().find(|o| &o.id == from) else {
            continue;
        };
        if original.truth != Truth::Relies {
            continue;
        }
        let seconds = r.run_dir.as_ref().map_or(f64::NAN, |d| {
            RunFolder::new(d)
                .epoch_metrics(usize::MAX)
                .iter()
                .map(|m| m.seconds)
                .sum()
        });
        revised.push(Revised {
            family: family(original),
            method: method.clone(),
            original,
            revised: r,
            reference: specs.get(original.id.as_str()).map_or(f64::NAN, reference),
            seconds,
        });
    }
    revised
}

/// One row per family and method, and one per method over every family.
fn rows_of(revised: &[Revised]) -> Vec<Row> {
    let mut groups: BTreeMap<(String, String), Vec<&Revised>> = BTreeMap::new();
    for r in revised {
        for family in [r.family.clone(), "(all)".to_string()] {
            groups
                .entry((family, r.method.clone()))
                .or_default()
                .push(r);
        }
    }
    groups
        .into_iter()
        .map(|((family, method), members)| Row {
            runs: members.len(),
            gap_before: mean(members.iter().map(|m| m.original.shortcut_gap)),
            gap_after: mean(members.iter().map(|m| m.revised.shortcut_gap)),
            gap_fall: mean(members.iter().map(|m| {
                (m.original.shortcut_gap - m.revised.shortcut_gap) / m.original.shortcut_gap
            })),
            clean_before: mean(members.iter().map(|m| clean(m.original))),
            clean_after: mean(members.iter().map(|m| clean(m.revised))),
            clean_reference: Some(mean(members.iter().map(|m| m.reference)))
                .filter(|x| x.is_finite()),
            still_flagged: members
                .iter()
                .filter(|m| m.revised.verdict.as_ref().is_some_and(|v| v.flagged))
                .count(),
            seconds_per_run: mean(members.iter().map(|m| m.seconds)),
            family,
            method,
        })
        .collect()
}

/// The table on stderr (stdout carries the JSON), then the relying runs it
/// leaves out.
fn print_table(rows: &[Row], not_revised: &BTreeMap<String, Vec<&str>>) {
    eprintln!(
        "{:<24} {:<8} {:>4} {:>15} {:>6} {:>21} {:>8}",
        "family", "method", "runs", "gap", "fell", "clean (scratch)", "flagged"
    );
    for r in rows {
        eprintln!(
            "{:<24} {:<8} {:>4} {:>6.3} -> {:>5.3} {:>5.0}% {:>5.3} -> {:>5.3} ({:>5}) {:>4}/{}",
            r.family,
            r.method,
            r.runs,
            r.gap_before,
            r.gap_after,
            100.0 * r.gap_fall,
            r.clean_before,
            r.clean_after,
            r.clean_reference
                .map_or("—".to_string(), |x| format!("{x:.3}")),
            r.still_flagged,
            r.runs
        );
    }
    for (family, ids) in not_revised {
        eprintln!(
            "relying, with no revision here ({family}, {} run{}): {}",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" },
            ids.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run's audit result as audit.json holds it: its gap sets its truth.
    fn result(id: &str, family: &str, gap: f64, clean: f64, flagged: Option<bool>) -> RunResult {
        let truth = if gap >= crate::audit::RELIES_GAP {
            "relies"
        } else {
            "does-not"
        };
        let verdict = flagged.map(|f| {
            serde_json::json!({"shortcut_score": if f { 0.5 } else { 0.0 }, "threshold": 0.028,
                "flagged": f, "class": "NORMAL", "cluster": null, "lift": 0.5, "control": 0.0,
                "stereotypy": 1.0, "suspect_boxes": []})
        });
        serde_json::from_value(serde_json::json!({
            "id": id, "regime": "resnet18-aug0-wm1", "seed": 0, "augment": false,
            "watermark": true, "arch": "resnet18", "variant": family, "wm_iou": null,
            "wm_shift": null, "accuracy": {"clean": clean}, "shortcut_gap": gap,
            "truth": truth, "verdict": verdict,
        }))
        .expect("a run result")
    }

    fn revision<'a>(
        original: &'a RunResult,
        revised: &'a RunResult,
        reference: f64,
    ) -> Revised<'a> {
        Revised {
            family: family(original),
            method: "augment".into(),
            original,
            revised,
            reference,
            seconds: 10.0,
        }
    }

    #[test]
    fn the_rows_average_each_runs_fall_and_count_the_flags_left() {
        let (a0, a1) = (
            result("box-s0", "box", 0.5, 0.5, Some(true)),
            result("box-s1", "box", 0.25, 0.8, Some(true)),
        );
        let (r0, r1) = (
            result("box-s0-revised-augment", "box", 0.0, 0.96, Some(false)),
            result("box-s1-revised-augment", "box", 0.2, 0.9, Some(true)),
        );
        let (t0, u0) = (
            result("tint-s0", "tint", 0.4, 0.5, Some(true)),
            result("tint-s0-revised-augment", "tint", 0.1, 0.9, Some(false)),
        );
        let revised = [
            revision(&a0, &r0, 0.98),
            revision(&a1, &r1, 0.98),
            revision(&t0, &u0, 0.94),
        ];
        let rows = rows_of(&revised);
        let row = |f: &str| rows.iter().find(|r| r.family == f).expect("a row");
        let bx = row("box");
        assert_eq!((bx.runs, bx.still_flagged), (2, 1));
        // The mean of each run's fall (1.0 and 0.2), not the fall of the means (0.6).
        assert!((bx.gap_fall - 0.6).abs() < 1e-12, "{}", bx.gap_fall);
        assert!((bx.gap_before - 0.375).abs() < 1e-12 && (bx.gap_after - 0.1).abs() < 1e-12);
        assert!((bx.clean_after - 0.93).abs() < 1e-12);
        assert_eq!(bx.clean_reference, Some(0.98));
        let all = row("(all)");
        assert_eq!((all.runs, all.still_flagged), (3, 1));
        assert!((all.gap_fall - (1.0 + 0.2 + 0.75) / 3.0).abs() < 1e-12);
        assert!((all.clean_reference.unwrap() - (0.98 + 0.98 + 0.94) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn relying_runs_without_a_revision_are_listed_and_nothing_else() {
        let mut runs = vec![
            result("box-s0", "box", 0.5, 0.5, Some(true)),
            // A revision that kept a gap: it relies, but is no original.
            result("box-s0-revised-augment", "box", 0.3, 0.8, Some(true)),
            result("fixed-s0", "fixed", 0.5, 0.5, Some(false)),
            result("fixed-s2", "fixed", 0.3, 0.7, Some(false)),
            result("clean-s0", "clean", 0.0, 0.98, Some(false)),
        ];
        runs[1].revised_from = Some("box-s0".into());
        runs[1].revise_method = Some("augment".into());
        let revised = [revision(&runs[0], &runs[1], 0.98)];
        let left = not_revised(&runs, &revised);
        // The revision, the revised original and the run that does not rely
        // are not listed.
        let fixed: Vec<&str> = vec!["fixed-s0", "fixed-s2"];
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left.get("fixed"), Some(&fixed));
    }
}
