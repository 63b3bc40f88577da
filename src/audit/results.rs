//! What an audit finds, as audit.json stores it: per run, per regime, per
//! artefact family, and the truth labels. The report reads the same types.
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::plan::AuditSettings;
use crate::data::PixelBox;
use crate::detect::verdict;
use crate::nave::stats;
use crate::run_folder::RunFolder;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// The run folder the result was computed from.
    #[serde(default)]
    pub run_dir: Option<PathBuf>,
    pub id: String,
    pub regime: String,
    pub seed: u64,
    pub augment: bool,
    pub watermark: bool,
    pub arch: String,
    /// The grid variant (artefact family) of the run, if the grid has variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Mean over probes (and repeats) of max-segment IoU with the watermark
    /// box (NaN, null in the file, for an audit from files: no box is known).
    #[serde(deserialize_with = "f64_or_nan")]
    pub wm_iou: f64,
    /// `wm_iou` relative to the best IoU the clustering grid allows for each
    /// box (1.0 = isolated as well as the grid allows), mean over probes.
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub wm_iou_fair: f64,
    /// Share of the box covered by the best segment, mean over probes.
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub wm_recall: f64,
    /// Share of the best segment inside the box, mean over probes.
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub wm_precision: f64,
    /// Mean over probes (and repeats) of 1 - ARI(clean, watermarked) outside the dilated box.
    #[serde(deserialize_with = "f64_or_nan")]
    pub wm_shift: f64,
    /// Final test accuracy per watermark variant.
    pub accuracy: BTreeMap<String, f64>,
    /// accuracy clean - accuracy flipped.
    #[serde(deserialize_with = "f64_or_nan")]
    pub shortcut_gap: f64,
    /// Whether the run relies on its artefact, from `shortcut_gap`.
    #[serde(default)]
    pub truth: Truth,
    /// Probe indices into this run's test split.
    #[serde(default)]
    pub probes: Vec<usize>,
    /// Where the artefact was stamped on each probe (the picture's extent).
    #[serde(default)]
    pub probe_boxes: Vec<PixelBox>,
    /// The artefact's visible pixels (its alpha mask's bounding box) on each
    /// probe: the box every measure uses. Equal to `probe_boxes` for a square.
    #[serde(default)]
    pub mask_boxes: Vec<PixelBox>,
    /// The artefact covers the whole image (tint, noise, border, blur): its
    /// boxes are the image, and box measures say nothing of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub global_artefact: bool,
    /// A run `nave-lab revise` made: the run it revised, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revise_method: Option<String>,
    /// The blind detector's verdict (None in audits older than it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<verdict::Verdict>,
    /// Cluster grid side (h = w).
    #[serde(default)]
    pub grid: i64,
    #[serde(default)]
    pub feature_dim: i64,
    #[serde(default)]
    pub seconds: f64,
    /// Identifies the weights and settings this result was computed from.
    #[serde(default)]
    pub key: String,
}

fn nan() -> f64 {
    f64::NAN
}

/// JSON has no NaN: serde_json writes it as null, and this reads it back.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

pub use crate::detect::evaluate::{Truth, DOES_NOT_GAP, RELIES_GAP};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeanSd {
    #[serde(deserialize_with = "f64_or_nan")]
    pub mean: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub sd: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegimeResult {
    pub regime: String,
    pub arch: String,
    pub augment: bool,
    pub watermark: bool,
    pub runs: Vec<String>,
    pub wm_iou: MeanSd,
    #[serde(default = "MeanSd::missing")]
    pub wm_iou_fair: MeanSd,
    pub wm_shift: MeanSd,
    pub shortcut_gap: MeanSd,
    pub accuracy: BTreeMap<String, MeanSd>,
}

/// The Clever Hans measures over all runs trained with the watermark and over
/// all runs trained without it (mean ± sd over runs), and their ratios: the
/// paper's Figure 6 comparison as numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatermarkComparison {
    pub runs_with: usize,
    pub runs_without: usize,
    pub wm_iou_with: MeanSd,
    pub wm_iou_without: MeanSd,
    pub wm_shift_with: MeanSd,
    pub wm_shift_without: MeanSd,
    pub gap_with: MeanSd,
    pub gap_without: MeanSd,
}

impl RegimeResult {
    /// Mean ± sd of the measures over a regime's runs (seeds).
    pub fn of(regime: &str, members: &[&RunResult]) -> Self {
        let ms = |f: &dyn Fn(&RunResult) -> f64| {
            let (mean, sd) = stats::mean_sd(&members.iter().map(|r| f(r)).collect::<Vec<_>>());
            MeanSd { mean, sd }
        };
        let accuracy = ["clean", "as-train", "flipped"]
            .into_iter()
            .map(|v| {
                let mean_sd = ms(&|r| r.accuracy.get(v).copied().unwrap_or(f64::NAN));
                (v.to_string(), mean_sd)
            })
            .collect();
        Self {
            regime: regime.to_string(),
            arch: members[0].arch.clone(),
            augment: members[0].augment,
            watermark: members[0].watermark,
            runs: members.iter().map(|r| r.id.clone()).collect(),
            wm_iou: ms(&|r| r.wm_iou),
            wm_iou_fair: ms(&|r| r.wm_iou_fair),
            wm_shift: ms(&|r| r.wm_shift),
            shortcut_gap: ms(&|r| r.shortcut_gap),
            accuracy,
        }
    }
}

impl MeanSd {
    pub fn of(values: &[f64]) -> Self {
        let (mean, sd) = stats::mean_sd(values);
        MeanSd { mean, sd }
    }

    fn missing() -> Self {
        MeanSd {
            mean: f64::NAN,
            sd: f64::NAN,
        }
    }
}

/// One artefact family (grid variant): how many of its runs rely on the
/// artefact, and how well NAVE isolates it in runs that do and runs that don't.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FamilySummary {
    pub variant: String,
    pub runs: usize,
    pub relies: usize,
    pub does_not: usize,
    pub ambiguous: usize,
    pub shortcut_gap: MeanSd,
    pub wm_iou_fair_relies: MeanSd,
    pub wm_iou_fair_does_not: MeanSd,
    pub wm_shift_relies: MeanSd,
    pub wm_shift_does_not: MeanSd,
}

impl FamilySummary {
    /// One summary per variant, in first-seen order; empty without variants.
    pub fn of(results: &[RunResult]) -> Vec<Self> {
        let mut names: Vec<&str> = Vec::new();
        for r in results {
            if let Some(v) = r.variant.as_deref() {
                if !names.contains(&v) {
                    names.push(v);
                }
            }
        }
        names
            .into_iter()
            .map(|name| {
                let members: Vec<&RunResult> = results
                    .iter()
                    .filter(|r| r.variant.as_deref() == Some(name))
                    .collect();
                let count = |t: Truth| members.iter().filter(|r| r.truth == t).count();
                let of = |t: Truth, f: fn(&RunResult) -> f64| {
                    MeanSd::of(
                        &members
                            .iter()
                            .filter(|r| r.truth == t)
                            .map(|r| f(r))
                            .collect::<Vec<_>>(),
                    )
                };
                FamilySummary {
                    variant: name.to_string(),
                    runs: members.len(),
                    relies: count(Truth::Relies),
                    does_not: count(Truth::DoesNot),
                    ambiguous: count(Truth::Ambiguous),
                    shortcut_gap: MeanSd::of(
                        &members.iter().map(|r| r.shortcut_gap).collect::<Vec<_>>(),
                    ),
                    wm_iou_fair_relies: of(Truth::Relies, |r| r.wm_iou_fair),
                    wm_iou_fair_does_not: of(Truth::DoesNot, |r| r.wm_iou_fair),
                    wm_shift_relies: of(Truth::Relies, |r| r.wm_shift),
                    wm_shift_does_not: of(Truth::DoesNot, |r| r.wm_shift),
                }
            })
            .collect()
    }

    /// One line for the terminal.
    pub fn line(&self) -> String {
        let f = |m: &MeanSd| {
            if m.mean.is_finite() {
                format!("{:.2}", m.mean)
            } else {
                "  — ".into()
            }
        };
        format!(
            "{:<20} {:>3} runs: {:>3} rely, {:>3} do not, {:>3} ambiguous | gap {:+.2} | fair wm_iou {} vs {} | wm_shift {} vs {}",
            self.variant,
            self.runs,
            self.relies,
            self.does_not,
            self.ambiguous,
            self.shortcut_gap.mean,
            f(&self.wm_iou_fair_relies),
            f(&self.wm_iou_fair_does_not),
            f(&self.wm_shift_relies),
            f(&self.wm_shift_does_not),
        )
    }
}

impl WatermarkComparison {
    /// None unless the audit holds runs of both kinds.
    pub fn of(results: &[RunResult]) -> Option<Self> {
        let pick = |wm: bool, f: &dyn Fn(&RunResult) -> f64| {
            let v: Vec<f64> = results
                .iter()
                .filter(|r| r.watermark == wm)
                .map(f)
                .collect();
            let (mean, sd) = stats::mean_sd(&v);
            MeanSd { mean, sd }
        };
        let count = |wm: bool| results.iter().filter(|r| r.watermark == wm).count();
        if count(true) == 0 || count(false) == 0 {
            return None;
        }
        Some(WatermarkComparison {
            runs_with: count(true),
            runs_without: count(false),
            wm_iou_with: pick(true, &|r| r.wm_iou),
            wm_iou_without: pick(false, &|r| r.wm_iou),
            wm_shift_with: pick(true, &|r| r.wm_shift),
            wm_shift_without: pick(false, &|r| r.wm_shift),
            gap_with: pick(true, &|r| r.shortcut_gap),
            gap_without: pick(false, &|r| r.shortcut_gap),
        })
    }

    /// One line for the terminal and the report.
    pub fn summary(&self) -> String {
        format!(
            "trained with the watermark ({} run{}) vs without ({}): wm_iou {:.3} vs {:.3} ({:.2}x), wm_shift {:.3} vs {:.3} ({:.1}x), gap {:+.3} vs {:+.3}",
            self.runs_with,
            if self.runs_with == 1 { "" } else { "s" },
            self.runs_without,
            self.wm_iou_with.mean,
            self.wm_iou_without.mean,
            self.wm_iou_with.mean / self.wm_iou_without.mean,
            self.wm_shift_with.mean,
            self.wm_shift_without.mean,
            self.wm_shift_with.mean / self.wm_shift_without.mean,
            self.gap_with.mean,
            self.gap_without.mean,
        )
    }
}

/// audit.json. Every field an older audit may lack has a default, so the
/// report reads old files through this type too and says what is missing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditReport {
    #[serde(default)]
    pub schema: u32,
    /// "" in a file that names none.
    #[serde(default)]
    pub experiment: String,
    /// The checkpoint folder that was audited.
    #[serde(default)]
    pub checkpoints: Option<PathBuf>,
    #[serde(default)]
    pub class_names: Vec<String>,
    #[serde(default)]
    pub image_size: i64,
    /// Watermark box of each probe (pixels of the image_size image).
    #[serde(default)]
    pub probe_boxes: Vec<PixelBox>,
    #[serde(default)]
    pub device: String,
    /// 0 when unknown.
    #[serde(default)]
    pub created_unix: u64,
    /// None in audits older than the settings record.
    #[serde(default)]
    pub settings: Option<AuditSettings>,
    /// Probe indices into the test split.
    #[serde(default)]
    pub probes: Vec<usize>,
    #[serde(default)]
    pub runs: Vec<RunResult>,
    #[serde(default)]
    pub regimes: Vec<RegimeResult>,
    /// Runs trained with vs without the watermark (absent unless both exist).
    #[serde(default)]
    pub by_watermark: Option<WatermarkComparison>,
    /// Per artefact family (grid variant): truth counts and isolation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<FamilySummary>,
    /// Run folders without COMPLETE: listed, never audited.
    #[serde(default)]
    pub skipped_unfinished: Vec<String>,
    /// An audit of a model and data from files (`audit --weights`): where
    /// they came from, how they were read, and the files that carry the
    /// found object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<super::external::ExternalSource>,
}

impl AuditReport {
    /// audit.json through the audit's own types; an error names the file.
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading {} (run `nave-lab audit` first)", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not an audit.json this version of nave-lab reads (rerun `nave-lab audit --force`)",
                path.display()
            )
        })
    }

    /// Writes `dir/audit.json` atomically, refused when a figure is not a
    /// finite number (JSON would read it back as missing).
    pub fn write_into(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        let path = dir.join("audit.json");
        crate::io::write_atomic(&path, crate::io::finite_json(self, true, &path)?.as_bytes())
    }
}

/// The run's last test accuracies per variant and its shortcut gap (clean -
/// flipped; NaN when metrics.jsonl lacks them).
pub(crate) fn final_accuracy(folder: &RunFolder) -> (BTreeMap<String, f64>, f64) {
    let accuracy = folder
        .last_epoch()
        .map(|m| m.test_accuracy)
        .unwrap_or_default();
    let gap = accuracy
        .get("clean")
        .zip(accuracy.get("flipped"))
        .map(|(c, f)| c - f)
        .unwrap_or(f64::NAN);
    (accuracy, gap)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result with the given family, gap and fair isolation; the rest is filler.
    fn run(variant: &str, gap: f64, fair: f64) -> RunResult {
        RunResult {
            run_dir: None,
            id: format!("{variant}-{gap}"),
            regime: variant.into(),
            seed: 0,
            augment: false,
            watermark: true,
            arch: "resnet18".into(),
            variant: Some(variant.into()),
            wm_iou: fair / 2.0,
            wm_iou_fair: fair,
            wm_recall: 0.5,
            wm_precision: 0.5,
            wm_shift: 0.1,
            accuracy: BTreeMap::new(),
            shortcut_gap: gap,
            truth: Truth::of_gap(gap),
            probes: vec![],
            probe_boxes: vec![],
            mask_boxes: vec![],
            global_artefact: false,
            revised_from: None,
            revise_method: None,
            verdict: None,
            grid: 14,
            feature_dim: 8,
            seconds: 0.0,
            key: String::new(),
        }
    }

    #[test]
    fn truth_labels_follow_the_gap_thresholds() {
        let cases = [
            (0.5, Truth::Relies),
            (0.2, Truth::Relies),
            (0.19999, Truth::Ambiguous),
            (0.1, Truth::Ambiguous),
            (0.05, Truth::DoesNot),
            (0.0, Truth::DoesNot),
            (-0.3, Truth::DoesNot),
            (f64::NAN, Truth::Unknown),
        ];
        for (gap, truth) in cases {
            assert_eq!(Truth::of_gap(gap), truth, "gap {gap}");
        }
        assert_eq!(serde_json::to_value(Truth::DoesNot).unwrap(), "does-not");
        // Older result.json files without a truth read as unknown.
        let mut old = serde_json::to_value(run("box", 0.3, 0.5)).unwrap();
        old.as_object_mut().unwrap().remove("truth");
        old.as_object_mut().unwrap().remove("wm_iou_fair");
        let back: RunResult = serde_json::from_value(old).unwrap();
        assert_eq!(back.truth, Truth::Unknown);
        assert!(back.wm_iou_fair.is_nan());
        // NaN goes out as null and comes back as NaN.
        let text = serde_json::to_string(&run("box", f64::NAN, 0.5)).unwrap();
        assert!(text.contains("\"shortcut_gap\":null"));
        let back: RunResult = serde_json::from_str(&text).unwrap();
        assert!(back.shortcut_gap.is_nan() && back.truth == Truth::Unknown);
    }

    #[test]
    fn an_older_audit_json_reads_with_what_it_lacks_defaulted() {
        // The fields the first audits wrote, and a run without the later ones.
        let mut run = serde_json::to_value(run("box", 0.3, 0.5)).unwrap();
        for later in ["run_dir", "key", "seconds", "feature_dim", "mask_boxes"] {
            run.as_object_mut().unwrap().remove(later);
        }
        let old = serde_json::json!({"experiment": "demo", "runs": [run], "regimes": []});
        let back: AuditReport = serde_json::from_value(old).unwrap();
        assert_eq!(back.experiment, "demo");
        assert!(back.settings.is_none() && back.probe_boxes.is_empty());
        assert_eq!(back.created_unix, 0);
        assert_eq!(back.runs[0].shortcut_gap, 0.3);
        assert!(back.runs[0].run_dir.is_none() && back.runs[0].mask_boxes.is_empty());
        // A run without its measures is not an audit result.
        let broken = serde_json::json!({"runs": [{"id": "x"}]});
        assert!(serde_json::from_value::<AuditReport>(broken).is_err());
    }

    #[test]
    fn families_count_truths_and_split_isolation_by_them() {
        let results = [
            run("box", 0.5, 0.8),
            run("box", 0.3, 0.6),
            run("box", 0.0, 0.2),
            run("box", 0.1, 0.9),
            run("clean", 0.01, 0.3),
        ];
        let families = FamilySummary::of(&results);
        assert_eq!(families.len(), 2);
        let b = &families[0];
        assert_eq!(b.variant, "box");
        assert_eq!((b.runs, b.relies, b.does_not, b.ambiguous), (4, 2, 1, 1));
        assert!((b.wm_iou_fair_relies.mean - 0.7).abs() < 1e-12);
        assert_eq!(b.wm_iou_fair_does_not.mean, 0.2);
        assert!((b.shortcut_gap.mean - 0.225).abs() < 1e-12);
        assert_eq!((families[1].relies, families[1].does_not), (0, 1));
        assert!(families[1].line().contains("clean"));
        // Without variants there is no family table.
        let plain = RunResult {
            variant: None,
            ..run("x", 0.3, 0.5)
        };
        assert!(FamilySummary::of(&[plain]).is_empty());
    }
}
