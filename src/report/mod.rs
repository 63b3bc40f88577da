//! The HTML report: `reports/<experiment>/index.html` and a page per run,
//! rebuilt from audit.json and the run folders without recomputing anything.
//!
//! Self-contained: the CSS is inline, the pictures are PNG/SVG files beside the
//! HTML, there is no script, font or network access. Everything that comes
//! from a user (names, paths, YAML) goes through the template engine's HTML
//! escaping.
mod curves;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use minijinja::{context, Environment};
use serde::Serialize;
use serde_json::Value;

use crate::audit::verdict::Verdict;
use crate::data::watermark::WmBox;
use crate::nave::colour::PALETTE;

const CSS: &str = include_str!("templates/style.css");
const INDEX: &str = include_str!("templates/index.html");
const RUN: &str = include_str!("templates/run.html");
/// Side of the grid's thumbnails, in pixels.
const THUMB: u32 = 112;

/// What `build` produced.
pub struct Built {
    pub index: PathBuf,
    /// Things audit.json or the run folders lack, as shown in the report.
    pub missing: Vec<String>,
    pub pages: usize,
}

fn fmt(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.3}"),
        _ => "—".to_string(),
    }
}

fn mean_sd(v: &Value) -> String {
    let (m, s) = (
        v.get("mean").and_then(Value::as_f64),
        v.get("sd").and_then(Value::as_f64),
    );
    match (m, s) {
        (Some(m), Some(s)) if m.is_finite() => format!("{m:.3} ± {s:.3}"),
        _ => "—".to_string(),
    }
}

fn utc(unix: u64) -> String {
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// A relative link from the report folder to `target` (absolute or relative to the working folder).
fn link_to(report_dir: &Path, target: &Path) -> String {
    let abs = |p: &Path| {
        std::fs::canonicalize(p).unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|c| c.join(p))
                .unwrap_or(p.to_path_buf())
        })
    };
    let (from, to) = (abs(report_dir), abs(target));
    let common = from
        .components()
        .zip(to.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in from.components().skip(common) {
        rel.push("..");
    }
    for c in to.components().skip(common) {
        rel.push(c);
    }
    rel.to_string_lossy().into_owned()
}

/// CSS placing the watermark box over an image (percentages of its side).
/// Reads `{x, y, w, h}` and the squares of older audits, `{x, y, side}`.
fn box_style(b: &Value, size: f64) -> Option<String> {
    let (x, y) = (b.get("x")?.as_f64()?, b.get("y")?.as_f64()?);
    let side = b.get("side").and_then(Value::as_f64);
    let w = b.get("w").and_then(Value::as_f64).or(side)?;
    let h = b.get("h").and_then(Value::as_f64).or(side)?;
    (size > 0.0).then(|| {
        format!(
            "left:{:.2}%;top:{:.2}%;width:{:.2}%;height:{:.2}%",
            100.0 * x / size,
            100.0 * y / size,
            100.0 * w / size,
            100.0 * h / size
        )
    })
}

/// The boxes to outline on a run's pictures: its own artefact's visible
/// boxes, else (older audits) the audit's common probe boxes.
fn run_boxes<'a>(run: Option<&'a Value>, common: &'a [Value]) -> &'a [Value] {
    run.and_then(|r| r.get("mask_boxes"))
        .and_then(Value::as_array)
        .filter(|b| !b.is_empty())
        .map_or(common, |b| b.as_slice())
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
        let img =
            image::open(&src)
                .ok()?
                .resize(THUMB, THUMB, image::imageops::FilterType::Triangle);
        std::fs::create_dir_all(dst.parent()?).ok()?;
        crate::io::write_png(&img.to_rgb8(), &dst).ok()?;
    }
    Some(name)
}

#[derive(Serialize)]
struct Cell {
    overlay: String,
    avgmap: String,
    r#box: Option<String>,
}

/// "kind at S px (root)" for the report's header.
fn dataset_label(spec: &crate::config::RunSpec) -> String {
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

/// A string field of a JSON object ("" when absent).
fn str_of(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// A run's blind verdict, read through the type the audit writes (None for
/// audits older than the detector).
fn verdict_of(run: &Value) -> Option<Verdict> {
    serde_json::from_value(run.get("verdict")?.clone()).ok()
}

/// The verdict table: runs with a verdict, highest shortcut score first.
fn verdict_rows(runs: &[Value]) -> Vec<Value> {
    let mut judged: Vec<(&Value, Verdict)> = runs
        .iter()
        .filter_map(|r| verdict_of(r).map(|v| (r, v)))
        .collect();
    judged.sort_by(|a, b| b.1.shortcut_score.total_cmp(&a.1.shortcut_score));
    judged
        .into_iter()
        .map(|(r, v)| {
            let id = str_of(r, "id");
            serde_json::json!({
                "id": id, "page": format!("run-{id}.html"),
                "flagged": v.flagged,
                "score": format!("{:.3}", v.shortcut_score),
                "threshold": format!("{:.3}", v.threshold),
                "class": v.class.clone().unwrap_or_else(|| "—".into()),
                "lift": format!("{:+.2}", v.lift - v.control),
                "stereotypy": format!("{:.2}", v.stereotypy),
                "found": format!("{}/{}", v.suspect_boxes.iter().flatten().count(), v.suspect_boxes.len()),
                "truth": r.get("truth").and_then(Value::as_str).unwrap_or("—"),
                "gap": fmt(r.get("shortcut_gap").and_then(Value::as_f64)),
            })
        })
        .collect()
}

/// CSS placing a detector's suspect box over an image.
fn suspect_style(b: &WmBox, size: f64) -> Option<String> {
    box_style(&serde_json::to_value(b).ok()?, size)
}

/// Rebuilds the report in `report_dir` (which holds audit.json).
/// Builds the report from `report_dir/audit.json` into `report_dir`;
/// `final_dir` is where it will be read from (the audit builds it in a
/// staging folder and moves it there), as its text names it.
pub fn build(report_dir: &Path, final_dir: &Path, grid_probes: usize) -> anyhow::Result<Built> {
    let audit_path = report_dir.join("audit.json");
    let text = std::fs::read_to_string(&audit_path).with_context(|| {
        format!(
            "reading {} (run `nave-lab audit` first)",
            audit_path.display()
        )
    })?;
    let audit: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", audit_path.display()))?;
    let mut missing = Vec::new();
    let experiment = audit
        .get("experiment")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| {
            missing.push("audit.json names no experiment".to_string());
            report_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let empty = Vec::new();
    let runs = audit
        .get("runs")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let regimes = audit
        .get("regimes")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let settings = audit.get("settings").cloned().unwrap_or(Value::Null);
    if settings.is_null() {
        missing.push("audit.json has no settings (an older audit?)".to_string());
    }
    let image_size = audit
        .get("image_size")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let boxes = audit
        .get("probe_boxes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if boxes.is_empty() {
        missing.push("audit.json records no watermark boxes (an older audit?): the box outline is unavailable".to_string());
    }
    let probes: Vec<u64> = audit
        .get("probes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();

    // Regimes that should be there: those of the audited runs and of the checkpoint folder.
    let present: BTreeSet<String> = regimes.iter().map(|r| str_of(r, "regime")).collect();
    let mut expected: BTreeSet<String> = runs.iter().map(|r| str_of(r, "regime")).collect();
    if let Some(dir) = audit.get("checkpoints").and_then(Value::as_str) {
        if let Ok(folders) = crate::run_folder::find_runs(Path::new(dir)) {
            for f in folders {
                if let Ok(spec) = crate::config::RunSpec::read(&f.run_yaml()) {
                    expected.insert(spec.regime());
                }
            }
        }
    }
    for m in expected.difference(&present) {
        missing.push(format!(
            "regime {m}: no results in audit.json (its runs are unfinished or were not audited)"
        ));
    }
    for u in audit
        .get("skipped_unfinished")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
    {
        missing.push(format!(
            "run {}: unfinished, not audited",
            u.as_str().unwrap_or("?")
        ));
    }

    let run_dir_of = |r: &Value| r.get("run_dir").and_then(Value::as_str).map(PathBuf::from);
    // Training curves from the runs' metrics.jsonl.
    let mut per_regime_metrics: BTreeMap<String, Vec<Vec<Value>>> = BTreeMap::new();
    for r in runs {
        let Some(dir) = run_dir_of(r) else { continue };
        let lines: Vec<Value> = std::fs::read_to_string(dir.join("metrics.jsonl"))
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default();
        if !lines.is_empty() {
            per_regime_metrics
                .entry(str_of(r, "regime"))
                .or_default()
                .push(lines);
        }
    }
    let mut trained_on: BTreeSet<String> = per_regime_metrics
        .values()
        .flatten()
        .filter_map(|lines| {
            lines
                .last()
                .and_then(|m| m.get("device"))
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect();
    trained_on.remove("");
    let mut curve_files = Vec::new();
    if !per_regime_metrics.is_empty() {
        for (file, svg) in curves::plots(&per_regime_metrics)? {
            crate::io::write_atomic(&report_dir.join(&file), svg.as_bytes())?;
            curve_files.push(file);
        }
    } else if !runs.is_empty() {
        missing.push("no run folder with metrics.jsonl was found: no training curves".to_string());
    }

    let regime_rows: Vec<Value> = regimes
        .iter()
        .map(|r| {
            let acc = |v: &str| mean_sd(r.get("accuracy").and_then(|a| a.get(v)).unwrap_or(&Value::Null));
            let gap = r.get("shortcut_gap").and_then(|g| g.get("mean")).and_then(Value::as_f64).unwrap_or(f64::NAN);
            let shift = r.get("wm_shift").and_then(|g| g.get("mean")).and_then(Value::as_f64).unwrap_or(f64::NAN);
            serde_json::json!({
                "label": str_of(r, "regime"),
                "runs": r.get("runs").cloned().unwrap_or(Value::Array(vec![])),
                "acc_clean": acc("clean"), "acc_as_train": acc("as-train"), "acc_flipped": acc("flipped"),
                "gap": mean_sd(r.get("shortcut_gap").unwrap_or(&Value::Null)),
                "wm_iou": mean_sd(r.get("wm_iou").unwrap_or(&Value::Null)),
                "wm_iou_fair": mean_sd(r.get("wm_iou_fair").unwrap_or(&Value::Null)),
                "wm_shift": mean_sd(r.get("wm_shift").unwrap_or(&Value::Null)),
                "gap_high": gap >= 0.2,
                "shift_high": shift >= 0.3,
            })
        })
        .collect();

    // The comparison grid: probe rows (clean, watermarked) x regime columns.
    let first_run_of = |regime: &str| runs.iter().find(|r| str_of(r, "regime") == regime);
    let mut grid = Vec::new();
    let mut missing_pictures = 0;
    // An audit with --pictures N has pictures for the first N probes only.
    let pictured = settings
        .get("pictures")
        .and_then(Value::as_u64)
        .map_or(probes.len(), |n| n as usize);
    for p in 0..probes.len().min(grid_probes).min(pictured) {
        for (tag, label) in [("clean", "clean"), ("wm", "watermarked")] {
            let cells: Vec<Option<Cell>> = regimes
                .iter()
                .map(|r| {
                    let regime = str_of(r, "regime");
                    let first = first_run_of(&regime)?;
                    let run = str_of(first, "id");
                    let overlay =
                        thumb(report_dir, &format!("runs/{run}/p{p:03}_{tag}_overlay.png"));
                    let avgmap = thumb(
                        report_dir,
                        &format!("regimes/{regime}/p{p:03}_{tag}_avgmap.png"),
                    );
                    match (overlay, avgmap) {
                        (Some(overlay), Some(avgmap)) => Some(Cell {
                            overlay,
                            avgmap,
                            r#box: if tag == "wm" {
                                run_boxes(Some(first), &boxes)
                                    .get(p)
                                    .and_then(|b| box_style(b, image_size))
                            } else {
                                None
                            },
                        }),
                        _ => {
                            missing_pictures += 1;
                            None
                        }
                    }
                })
                .collect();
            grid.push(serde_json::json!({ "label": format!("probe {p} {label}"), "cells": cells }));
        }
    }
    if missing_pictures > 0 {
        missing.push(format!("{missing_pictures} grid picture(s) are missing from {}; rerun `nave-lab audit --force`", final_dir.display()));
    }
    let legend: Vec<Value> = if settings.get("scope").and_then(Value::as_str) == Some("set") {
        let k = settings.get("k").and_then(Value::as_u64).unwrap_or(0) as usize;
        (0..k).map(|i| serde_json::json!({ "k": i, "rgb": PALETTE[i % PALETTE.len()].map(|c| c.to_string()).join(",") })).collect()
    } else {
        Vec::new()
    };

    let mut env = Environment::new();
    env.add_template("index.html", INDEX)?;
    env.add_template("run.html", RUN)?;
    let experiment_yaml = audit
        .get("checkpoints")
        .and_then(Value::as_str)
        .and_then(|d| std::fs::read_to_string(Path::new(d).join("experiment.yaml")).ok());
    let first_dir = runs.first().and_then(run_dir_of);
    let run_yaml = first_dir
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join("run.yaml")).ok());
    let first_spec = run_yaml
        .as_deref()
        .and_then(|t| yaml_serde::from_str::<crate::config::RunSpec>(t).ok());
    // Every dataset the runs trained on (a zoo mixes synthetic and real images).
    let datasets: BTreeSet<String> = runs
        .iter()
        .filter_map(run_dir_of)
        .filter_map(|d| std::fs::read_to_string(d.join("run.yaml")).ok())
        .filter_map(|t| yaml_serde::from_str::<crate::config::RunSpec>(&t).ok())
        .map(|s| dataset_label(&s))
        .collect();
    let n_per_regime: BTreeSet<usize> = regimes
        .iter()
        .map(|r| {
            r.get("runs")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0)
        })
        .collect();
    let run_rows: Vec<Value> = runs
        .iter()
        .map(|r| {
            let acc = |v: &str| fmt(r.get("accuracy").and_then(|a| a.get(v)).and_then(Value::as_f64));
            serde_json::json!({
                "id": str_of(r, "id"), "page": format!("run-{}.html", str_of(r, "id")), "seed": r.get("seed").cloned().unwrap_or(Value::Null),
                "acc_clean": acc("clean"), "acc_flipped": acc("flipped"),
                "gap": fmt(r.get("shortcut_gap").and_then(Value::as_f64)),
                "wm_iou": fmt(r.get("wm_iou").and_then(Value::as_f64)),
                "wm_iou_fair": fmt(r.get("wm_iou_fair").and_then(Value::as_f64)),
                "wm_recall": fmt(r.get("wm_recall").and_then(Value::as_f64)),
                "wm_precision": fmt(r.get("wm_precision").and_then(Value::as_f64)),
                "truth": r.get("truth").and_then(Value::as_str).unwrap_or("—"),
                "wm_shift": fmt(r.get("wm_shift").and_then(Value::as_f64)),
            })
        })
        .collect();
    let verdicts = verdict_rows(runs);
    let html = env.get_template("index.html")?.render(context! {
        css => CSS,
        verdicts => &verdicts,
        threshold => format!("{:.3}", crate::audit::verdict::SHORTCUT_THRESHOLD),
        experiment => &experiment,
        created => audit.get("created_unix").and_then(Value::as_u64).map(utc).unwrap_or_else(|| "(unknown time)".into()),
        device => audit.get("device").and_then(Value::as_str).unwrap_or("(unknown device)"),
        n_runs => runs.len(),
        n_probes => probes.len(),
        dataset => if datasets.is_empty() { "(run.yaml not found)".to_string() } else { datasets.into_iter().collect::<Vec<_>>().join("; ") },
        model => first_spec.as_ref().map(|s| format!("{} width {}", regimes.iter().map(|r| str_of(r, "regime").split('-').next().unwrap_or("").to_string()).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", "), s.model.width.map(|w| w.to_string()).unwrap_or("standard".into()))).unwrap_or_default(),
        trained_on => trained_on.iter().cloned().collect::<Vec<_>>().join(", "),
        runs_per_regime => n_per_regime.into_iter().map(|n| n.to_string()).collect::<Vec<_>>().join("/"),
        settings => &settings,
        missing => &missing,
        regimes => &regime_rows,
        // Older audit.json files lack it; the report then omits the line.
        by_watermark => audit
            .get("by_watermark")
            .and_then(|v| serde_json::from_value::<crate::audit::WatermarkComparison>(v.clone()).ok())
            .map(|c| c.summary()),
        curves => &curve_files,
        legend => &legend,
        grid => &grid,
        runs => &run_rows,
        run_yaml => &run_yaml,
        experiment_yaml => &experiment_yaml,
        first_run => runs.first().map(|r| str_of(r, "id")).unwrap_or_default(),
        version => env!("CARGO_PKG_VERSION"),
        report_dir => final_dir.display().to_string(),
    })?;
    let index = report_dir.join("index.html");
    crate::io::write_atomic(&index, html.as_bytes())?;

    // One page per run.
    let mut pages = 0;
    for r in runs {
        let id = str_of(r, "id");
        let dir = run_dir_of(r);
        let mut run_missing = Vec::new();
        let epochs: Vec<Value> = dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("metrics.jsonl")).ok())
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .map(|m| {
                        let f = |k: &str| fmt(m.get(k).and_then(Value::as_f64));
                        let acc = |v: &str| fmt(m.get("test_accuracy").and_then(|a| a.get(v)).and_then(Value::as_f64));
                        serde_json::json!({
                            "epoch": m.get("epoch").cloned().unwrap_or(Value::Null), "train_loss": f("train_loss"), "train_acc": f("train_accuracy"),
                            "clean": acc("clean"), "as_train": acc("as-train"), "flipped": acc("flipped"),
                            "lr": m.get("lr").and_then(Value::as_f64).map(|v| format!("{v:.2e}")).unwrap_or_default(),
                            "ips": m.get("images_per_second").and_then(Value::as_f64).map(|v| format!("{v:.0}")).unwrap_or_default(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if dir.is_none() {
            run_missing.push("audit.json does not say where this run's folder is (an older audit?): no metrics, run.yaml or TensorBoard link".to_string());
        }
        let verdict = verdict_of(r);
        let suspect = |p: usize| {
            verdict
                .as_ref()
                .and_then(|v| v.suspect_boxes.get(p).copied().flatten())
                .and_then(|b| suspect_style(&b, image_size))
        };
        let probe_views: Vec<Value> = (0..probes.len())
            .filter(|p| report_dir.join(format!("runs/{id}/p{p:03}_clean_overlay.png")).is_file())
            .map(|p| {
                let views: Vec<Value> = ["clean", "wm"]
                    .iter()
                    .map(|tag| {
                        serde_json::json!({
                            "overlay": format!("runs/{id}/p{p:03}_{tag}_overlay.png"),
                            "avg": format!("runs/{id}/p{p:03}_{tag}_avg.png"),
                            "labels": format!("runs/{id}/p{p:03}_{tag}_labels.png"),
                            "box": if *tag == "wm" { run_boxes(Some(r), &boxes).get(p).and_then(|b| box_style(b, image_size)) } else { None },
                            "suspect": if *tag == "wm" { suspect(p) } else { None },
                        })
                    })
                    .collect();
                serde_json::json!({ "index": p, "test_index": probes[p], "views": views })
            })
            .collect();
        if probe_views.len() < probes.len() {
            run_missing.push(format!(
                "{} of {} probe pictures are missing",
                probes.len() - probe_views.len(),
                probes.len()
            ));
        }
        let html = env.get_template("run.html")?.render(context! {
            css => CSS,
            experiment => &experiment,
            id => &id,
            regime => str_of(r, "regime"),
            seed => r.get("seed").cloned().unwrap_or(Value::Null),
            gap => fmt(r.get("shortcut_gap").and_then(Value::as_f64)),
            wm_iou => fmt(r.get("wm_iou").and_then(Value::as_f64)),
            wm_iou_fair => fmt(r.get("wm_iou_fair").and_then(Value::as_f64)),
            truth => r.get("truth").and_then(Value::as_str).unwrap_or("—"),
            wm_shift => fmt(r.get("wm_shift").and_then(Value::as_f64)),
            verdict => verdict.as_ref().map(|v| v.line(&id)),
            flagged => verdict.as_ref().map(|v| v.flagged),
            tensorboard => dir.as_ref().map(|d| link_to(report_dir, d)),
            tensorboard_shown => dir.as_ref().map(|d| d.display().to_string()),
            epochs => &epochs,
            probes => &probe_views,
            missing => &run_missing,
            run_yaml => dir.as_ref().and_then(|d| std::fs::read_to_string(d.join("run.yaml")).ok()),
        })?;
        crate::io::write_atomic(&report_dir.join(format!("run-{id}.html")), html.as_bytes())?;
        pages += 1;
    }
    Ok(Built {
        index,
        missing,
        pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_numbers() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_795_701_583), "2026-11-26 13:59 UTC");
        assert_eq!(fmt(Some(0.12345)), "0.123");
        assert_eq!(fmt(Some(f64::NAN)), "—");
        assert_eq!(
            mean_sd(&serde_json::json!({"mean": 0.5, "sd": 0.25})),
            "0.500 ± 0.250"
        );
        assert_eq!(
            box_style(&serde_json::json!({"x": 16, "y": 32, "side": 8}), 64.0).unwrap(),
            "left:25.00%;top:50.00%;width:12.50%;height:12.50%"
        );
        assert_eq!(
            box_style(
                &serde_json::json!({"x": 16, "y": 32, "w": 16, "h": 4}),
                64.0
            )
            .unwrap(),
            "left:25.00%;top:50.00%;width:25.00%;height:6.25%"
        );
    }
}
