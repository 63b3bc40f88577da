//! The report's index page: the verdicts, the regimes, the training curves,
//! the comparison grid of pictures and the runs, and what is missing.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use minijinja::{context, Environment};
use serde::Serialize;

use super::format::{box_style, mean_sd, number, utc};
use super::{curves, RunFiles, Sources, CSS};
use crate::audit::{AuditReport, RegimeResult, RunResult};
use crate::config::{RunSpec, Scope};
use crate::data::PixelBox;
use crate::detect::verdict::{Verdict, SHORTCUT_THRESHOLD};
use crate::nave::colour::PALETTE;
use crate::run_folder::EpochMetrics;

/// Side of the grid's thumbnails, in pixels.
const THUMB: u32 = 112;

/// Writes index.html (and the curves beside it); returns its path and what
/// the report says is missing.
pub(super) fn write(
    env: &Environment,
    s: &Sources,
    grid_probes: usize,
) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let audit = &s.audit;
    let mut missing = missing_from_audit(audit, &s.experiment);
    let curves = write_curves(s, &mut missing)?;
    let (grid, missing_pictures) = comparison_grid(s, grid_probes);
    if missing_pictures > 0 {
        missing.push(format!(
            "{missing_pictures} grid picture(s) are missing from {}; rerun `nave-lab audit --force`",
            s.final_dir.display()
        ));
    }
    let first = s.files.first();
    let html = env.get_template("index.html")?.render(context! {
        css => CSS,
        verdicts => verdict_rows(&audit.runs),
        revisions => revision_rows(s),
        threshold => format!("{SHORTCUT_THRESHOLD:.3}"),
        experiment => &s.experiment,
        created => match audit.created_unix {
            0 => "(unknown time)".to_string(),
            t => utc(t),
        },
        device => if audit.device.is_empty() { "(unknown device)" } else { &audit.device },
        n_runs => audit.runs.len(),
        n_probes => audit.probes.len(),
        dataset => dataset_labels(&s.files),
        model => first.and_then(|f| f.spec.as_ref()).map(|spec| model_label(&audit.regimes, spec)).unwrap_or_default(),
        trained_on => trained_on(&s.files),
        runs_per_regime => runs_per_regime(&audit.regimes),
        settings => &audit.settings,
        missing => &missing,
        regimes => audit.regimes.iter().map(RegimeRow::of).collect::<Vec<_>>(),
        by_watermark => audit.by_watermark.as_ref().map(|c| c.summary()),
        curves => &curves,
        legend => legend(audit),
        grid => &grid,
        runs => audit.runs.iter().map(RunRow::of).collect::<Vec<_>>(),
        run_yaml => first.and_then(|f| f.run_yaml.as_ref()),
        experiment_yaml => audit.checkpoints.as_ref().and_then(|d| std::fs::read_to_string(d.join("experiment.yaml")).ok()),
        first_run => audit.runs.first().map(|r| r.id.as_str()).unwrap_or_default(),
        version => env!("CARGO_PKG_VERSION"),
        report_dir => s.final_dir.display().to_string(),
    })?;
    Ok((s.write_index(&html)?, missing))
}

/// What audit.json lacks or leaves out: fields an older audit did not
/// record, regimes without results, runs that were not audited.
fn missing_from_audit(audit: &AuditReport, shown_as: &str) -> Vec<String> {
    let mut missing = Vec::new();
    if audit.experiment.is_empty() {
        missing.push(format!(
            "audit.json names no experiment: the report is called {shown_as}"
        ));
    }
    if audit.settings.is_none() {
        missing.push("audit.json has no settings (an older audit?)".to_string());
    }
    if audit.probe_boxes.is_empty() {
        missing.push("audit.json records no watermark boxes (an older audit?): the box outline is unavailable".to_string());
    }
    // Regimes that should be there: those of the audited runs and of the checkpoint folder.
    let present: BTreeSet<&str> = audit.regimes.iter().map(|r| r.regime.as_str()).collect();
    let mut expected: BTreeSet<String> = audit.runs.iter().map(|r| r.regime.clone()).collect();
    if let Some(dir) = &audit.checkpoints {
        for folder in crate::run_folder::find_runs(dir).unwrap_or_default() {
            if let Ok(spec) = folder.spec() {
                expected.insert(spec.regime());
            }
        }
    }
    for m in expected.iter().filter(|m| !present.contains(m.as_str())) {
        missing.push(format!(
            "regime {m}: no results in audit.json (its runs are unfinished or were not audited)"
        ));
    }
    for u in &audit.skipped_unfinished {
        missing.push(format!("run {u}: unfinished, not audited"));
    }
    missing
}

/// The training curves (mean and range over each regime's seeds), written
/// beside the HTML; their file names.
fn write_curves(s: &Sources, missing: &mut Vec<String>) -> anyhow::Result<Vec<String>> {
    let mut per_regime: BTreeMap<String, Vec<Vec<EpochMetrics>>> = BTreeMap::new();
    for (run, files) in s.audit.runs.iter().zip(&s.files) {
        if !files.metrics.is_empty() {
            per_regime
                .entry(run.regime.clone())
                .or_default()
                .push(files.metrics.clone());
        }
    }
    if per_regime.is_empty() {
        if !s.audit.runs.is_empty() {
            missing
                .push("no run folder with metrics.jsonl was found: no training curves".to_string());
        }
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for (file, svg) in curves::plots(&per_regime)? {
        crate::io::write_atomic(&s.report_dir.join(&file), svg.as_bytes())?;
        names.push(file);
    }
    Ok(names)
}

/// The devices the runs trained on, from their last epoch.
fn trained_on(files: &[RunFiles]) -> String {
    let devices: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| f.metrics.last())
        .map(|m| m.device.as_str())
        .filter(|d| !d.is_empty())
        .collect();
    devices.into_iter().collect::<Vec<_>>().join(", ")
}

/// Every dataset the runs trained on (a zoo mixes synthetic and real images).
fn dataset_labels(files: &[RunFiles]) -> String {
    let labels: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.spec.as_ref())
        .map(dataset_label)
        .collect();
    if labels.is_empty() {
        "(run.yaml not found)".to_string()
    } else {
        labels.into_iter().collect::<Vec<_>>().join("; ")
    }
}

/// "kind at S px (root)".
fn dataset_label(spec: &RunSpec) -> String {
    let root = spec
        .dataset
        .root
        .as_ref()
        .map(|r| format!(" ({})", r.display()))
        .unwrap_or_default();
    format!(
        "{} at {} px{root}",
        spec.dataset.kind.as_str(),
        spec.dataset.image_size
    )
}

/// The regimes' architectures and the width the first run trained at.
fn model_label(regimes: &[RegimeResult], first: &RunSpec) -> String {
    let archs: BTreeSet<&str> = regimes.iter().map(|r| r.arch.as_str()).collect();
    let width = first
        .model
        .width
        .map_or("standard".to_string(), |w| w.to_string());
    format!(
        "{} width {width}",
        archs.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// "2" when every regime has two runs, "2/3" when they differ.
fn runs_per_regime(regimes: &[RegimeResult]) -> String {
    let counts: BTreeSet<usize> = regimes.iter().map(|r| r.runs.len()).collect();
    counts
        .into_iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// One row of the verdict table.
#[derive(Serialize)]
struct VerdictRow {
    id: String,
    page: String,
    flagged: bool,
    score: String,
    threshold: String,
    class: String,
    lift: String,
    stereotypy: String,
    evidence: String,
    truth: &'static str,
    gap: String,
}

/// The verdict table: runs with a verdict, highest shortcut score first.
fn verdict_rows(runs: &[RunResult]) -> Vec<VerdictRow> {
    let mut judged: Vec<(&RunResult, &Verdict)> = runs
        .iter()
        .filter_map(|r| r.verdict.as_ref().map(|v| (r, v)))
        .collect();
    judged.sort_by(|a, b| b.1.shortcut_score.total_cmp(&a.1.shortcut_score));
    judged
        .into_iter()
        .map(|(r, v)| VerdictRow {
            id: r.id.clone(),
            page: run_page_name(&r.id),
            flagged: v.flagged,
            score: format!("{:.3}", v.shortcut_score),
            threshold: format!("{:.3}", v.threshold),
            class: v.class.clone().unwrap_or_else(|| "—".into()),
            lift: format!("{:+.2}", v.lift - v.control),
            stereotypy: format!("{:.2}", v.stereotypy),
            evidence: v.evidence_short(),
            truth: r.truth.as_str(),
            gap: number(Some(r.shortcut_gap)),
        })
        .collect()
}

/// One revised run beside its original: accuracies, gap and verdict before
/// and after, and the first probe's NAVE overlay (with the artefact) of each.
#[derive(Serialize)]
struct RevisionRow {
    original: String,
    original_page: String,
    id: String,
    page: String,
    method: String,
    clean: String,
    as_train: String,
    flipped: String,
    gap: String,
    gap_fell: String,
    verdict: String,
    flagged_after: bool,
    pictures: Vec<Option<String>>,
}

/// The revised runs of the audit, each with its original, by original id.
fn revision_rows(s: &Sources) -> Vec<RevisionRow> {
    let runs = &s.audit.runs;
    let mut rows: Vec<RevisionRow> = runs
        .iter()
        .filter_map(|r| {
            let from = r.revised_from.as_ref()?;
            let o = runs.iter().find(|x| &x.id == from)?;
            let acc = |x: &RunResult, v: &str| number(x.accuracy.get(v).copied());
            let both = |v: &str| format!("{} → {}", acc(o, v), acc(r, v));
            let verdict = |x: &RunResult| {
                x.verdict.as_ref().map_or("—".to_string(), |v| {
                    format!(
                        "{} {:.3}",
                        if v.flagged { "flagged" } else { "not flagged" },
                        v.shortcut_score
                    )
                })
            };
            let fell = (o.shortcut_gap - r.shortcut_gap) / o.shortcut_gap;
            let picture =
                |x: &RunResult| thumb(s.report_dir, &format!("runs/{}/p000_wm_overlay.png", x.id));
            Some(RevisionRow {
                original: o.id.clone(),
                original_page: run_page_name(&o.id),
                id: r.id.clone(),
                page: run_page_name(&r.id),
                method: r.revise_method.clone().unwrap_or_default(),
                clean: both("clean"),
                as_train: both("as-train"),
                flipped: both("flipped"),
                gap: format!(
                    "{} → {}",
                    number(Some(o.shortcut_gap)),
                    number(Some(r.shortcut_gap))
                ),
                gap_fell: if fell.is_finite() && o.shortcut_gap > 0.0 {
                    format!("{:.0}%", 100.0 * fell)
                } else {
                    "—".into()
                },
                verdict: format!("{} → {}", verdict(o), verdict(r)),
                flagged_after: r.verdict.as_ref().is_some_and(|v| v.flagged),
                pictures: vec![picture(o), picture(r)],
            })
        })
        .collect();
    rows.sort_by(|a, b| (&a.original, &a.method).cmp(&(&b.original, &b.method)));
    rows
}

/// The file name of a run's page.
pub(super) fn run_page_name(id: &str) -> String {
    format!("run-{id}.html")
}

/// One row of the regimes table.
#[derive(Serialize)]
struct RegimeRow {
    label: String,
    runs: Vec<String>,
    acc_clean: String,
    acc_as_train: String,
    acc_flipped: String,
    gap: String,
    wm_iou: String,
    wm_iou_fair: String,
    wm_shift: String,
    /// Highlighted: the regime relies on the watermark, or NAVE's
    /// segmentation moves with it.
    gap_high: bool,
    shift_high: bool,
}

impl RegimeRow {
    fn of(r: &RegimeResult) -> Self {
        let acc = |v: &str| r.accuracy.get(v).map_or("—".to_string(), mean_sd);
        Self {
            label: r.regime.clone(),
            runs: r.runs.clone(),
            acc_clean: acc("clean"),
            acc_as_train: acc("as-train"),
            acc_flipped: acc("flipped"),
            gap: mean_sd(&r.shortcut_gap),
            wm_iou: mean_sd(&r.wm_iou),
            wm_iou_fair: mean_sd(&r.wm_iou_fair),
            wm_shift: mean_sd(&r.wm_shift),
            gap_high: r.shortcut_gap.mean >= 0.2,
            shift_high: r.wm_shift.mean >= 0.3,
        }
    }
}

/// One row of the runs table.
#[derive(Serialize)]
struct RunRow {
    id: String,
    page: String,
    seed: u64,
    acc_clean: String,
    acc_flipped: String,
    gap: String,
    wm_iou: String,
    wm_iou_fair: String,
    wm_recall: String,
    wm_precision: String,
    truth: &'static str,
    wm_shift: String,
}

impl RunRow {
    fn of(r: &RunResult) -> Self {
        let acc = |v: &str| number(r.accuracy.get(v).copied());
        Self {
            id: r.id.clone(),
            page: run_page_name(&r.id),
            seed: r.seed,
            acc_clean: acc("clean"),
            acc_flipped: acc("flipped"),
            gap: number(Some(r.shortcut_gap)),
            wm_iou: number(Some(r.wm_iou)),
            wm_iou_fair: number(Some(r.wm_iou_fair)),
            wm_recall: number(Some(r.wm_recall)),
            wm_precision: number(Some(r.wm_precision)),
            truth: r.truth.as_str(),
            wm_shift: number(Some(r.wm_shift)),
        }
    }
}

/// The boxes to outline on a run's pictures: its own artefact's visible
/// boxes, else (older audits) the audit's common probe boxes.
pub(super) fn run_boxes<'a>(run: &'a RunResult, audit: &'a AuditReport) -> &'a [PixelBox] {
    if run.mask_boxes.is_empty() {
        &audit.probe_boxes
    } else {
        &run.mask_boxes
    }
}

/// One cell of the comparison grid: a run's overlay and its regime's
/// average-colour map, with the box outline on watermarked probes.
#[derive(Serialize)]
struct Cell {
    overlay: String,
    avgmap: String,
    r#box: Option<String>,
}

#[derive(Serialize)]
struct GridRow {
    label: String,
    cells: Vec<Option<Cell>>,
}

/// The comparison grid: probe rows (clean, watermarked) by regime columns,
/// from the first run of each regime; and how many pictures are missing.
fn comparison_grid(s: &Sources, grid_probes: usize) -> (Vec<GridRow>, usize) {
    let audit = &s.audit;
    let size = audit.image_size as f64;
    // An audit with --pictures N has pictures for the first N probes only.
    let pictured = audit
        .settings
        .as_ref()
        .and_then(|st| st.pictures)
        .unwrap_or(audit.probes.len());
    let mut missing = 0;
    let mut rows = Vec::new();
    for p in 0..audit.probes.len().min(grid_probes).min(pictured) {
        for (tag, label) in [("clean", "clean"), ("wm", "watermarked")] {
            let cells = audit
                .regimes
                .iter()
                .map(|regime| {
                    let first = audit.runs.iter().find(|r| r.regime == regime.regime)?;
                    let overlay = thumb(
                        s.report_dir,
                        &format!("runs/{}/p{p:03}_{tag}_overlay.png", first.id),
                    );
                    let avgmap = thumb(
                        s.report_dir,
                        &format!("regimes/{}/p{p:03}_{tag}_avgmap.png", regime.regime),
                    );
                    let (Some(overlay), Some(avgmap)) = (overlay, avgmap) else {
                        missing += 1;
                        return None;
                    };
                    let outline = (tag == "wm")
                        .then(|| run_boxes(first, audit).get(p))
                        .flatten()
                        .and_then(|b| box_style(b, size));
                    Some(Cell {
                        overlay,
                        avgmap,
                        r#box: outline,
                    })
                })
                .collect();
            rows.push(GridRow {
                label: format!("probe {p} {label}"),
                cells,
            });
        }
    }
    (rows, missing)
}

/// A grid picture: the file itself when small, else a thumbnail under thumbs/.
fn thumb(report_dir: &Path, rel: &str) -> Option<String> {
    let src = report_dir.join(rel);
    let (w, _) = image::image_dimensions(&src).ok()?;
    if w <= THUMB * 2 {
        return Some(rel.to_string());
    }
    let name = format!("thumbs/{}", rel.replace('/', "_"));
    let dst = report_dir.join(&name);
    if !dst.is_file() {
        let img = image::DynamicImage::ImageRgb8(crate::data::image_file::decode_rgb(&src).ok()?)
            .resize(THUMB, THUMB, image::imageops::FilterType::Triangle);
        std::fs::create_dir_all(dst.parent()?).ok()?;
        crate::io::write_png(&img.to_rgb8(), &dst).ok()?;
    }
    Some(name)
}

#[derive(Serialize)]
pub(super) struct LegendEntry {
    k: usize,
    rgb: String,
}

/// The cluster colours, for a set-scope audit (where cluster k is one
/// concept on every probe); none otherwise.
pub(super) fn legend(audit: &AuditReport) -> Vec<LegendEntry> {
    match &audit.settings {
        Some(st) if st.scope == Scope::Set => (0..st.k)
            .map(|k| LegendEntry {
                k,
                rgb: PALETTE[k % PALETTE.len()].map(|c| c.to_string()).join(","),
            })
            .collect(),
        _ => Vec::new(),
    }
}
