//! `nave-lab audit`: NAVE on every finished run of an experiment, the Clever
//! Hans measures, and the pictures, under `reports/<experiment>/`.
//!
//! Layout written:
//!   audit.json                              settings, per-run and per-regime results
//!   runs/<run-id>/result.json               one run's results (reused when unchanged)
//!   runs/<run-id>/pNNN_{clean,wm}_{overlay,avg,labels}.png
//!   regimes/<regime>/pNNN_{clean,wm}_avgmap.png   average-colour map over seeds and repeats
pub mod detect;
pub mod evaluate;
pub mod recurrence;
pub mod verdict;
pub mod zoo_bench;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::config::{AuditSpec, ClusterMethod, RunSpec, Scope};
use crate::data::loader::normalize_u8;
use crate::data::store::{training_images, DataStore};
use crate::data::watermark::{Artefact, WmBox};
use crate::data::{Split, SplitData};
use crate::models::Model;
use crate::nave::{self, colour, extract, score};
use crate::run_folder::{find_runs, EpochMetrics, RunFolder};

/// Seed of the probe choice and of the probes' watermark boxes: the same for
/// every run, so that regimes are compared on the same pictures.
pub(crate) const PROBE_SEED: u64 = 0;

/// Audit settings after merging the command line over run.yaml's `audit:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditSettings {
    pub taps: Vec<String>,
    pub k: usize,
    pub method: ClusterMethod,
    pub scope: Scope,
    pub probes: usize,
    pub classes: Vec<String>,
    pub repeats: usize,
    pub tol: f64,
    pub max_iter: usize,
    pub resolution: Option<i64>,
    /// Pictures are written for the first this many probes (None: all);
    /// the measures always use every probe.
    #[serde(default)]
    pub pictures: Option<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditOverrides {
    pub taps: Option<Vec<String>>,
    pub k: Option<usize>,
    pub method: Option<ClusterMethod>,
    pub scope: Option<Scope>,
    pub probes: Option<usize>,
    pub repeats: Option<usize>,
    pub resolution: Option<i64>,
    pub pictures: Option<usize>,
}

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
    /// Mean over probes (and repeats) of max-segment IoU with the watermark box.
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
    pub probe_boxes: Vec<WmBox>,
    /// The artefact's visible pixels (its alpha mask's bounding box) on each
    /// probe: the box every measure uses. Equal to `probe_boxes` for a square.
    #[serde(default)]
    pub mask_boxes: Vec<WmBox>,
    /// The blind detector's verdict (None in audits older than it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<verdict::Verdict>,
    /// Cluster grid side (h = w).
    pub grid: i64,
    pub feature_dim: i64,
    pub seconds: f64,
    /// Identifies the weights and settings this result was computed from.
    pub key: String,
}

fn nan() -> f64 {
    f64::NAN
}

/// JSON has no NaN: serde_json writes it as null, and this reads it back.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Gap at or above which a run relies on its artefact.
pub const RELIES_GAP: f64 = 0.2;
/// Gap at or below which it does not.
pub const DOES_NOT_GAP: f64 = 0.05;

/// Whether a run relies on its artefact, measured with the known artefact:
/// the shortcut gap (clean - flipped test accuracy, flipped stamping the
/// run's own artefact on the other classes). What detectors are scored against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Truth {
    /// gap >= 0.2
    Relies,
    /// gap <= 0.05
    DoesNot,
    /// in between: left out when detectors are scored
    Ambiguous,
    /// no gap recorded (an older run without the test variants)
    #[default]
    Unknown,
}

impl Truth {
    pub fn of_gap(gap: f64) -> Self {
        if gap.is_nan() {
            Truth::Unknown
        } else if gap >= RELIES_GAP {
            Truth::Relies
        } else if gap <= DOES_NOT_GAP {
            Truth::DoesNot
        } else {
            Truth::Ambiguous
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Truth::Relies => "relies",
            Truth::DoesNot => "does-not",
            Truth::Ambiguous => "ambiguous",
            Truth::Unknown => "unknown",
        }
    }
}

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

impl MeanSd {
    pub fn of(values: &[f64]) -> Self {
        let (mean, sd) = score::mean_sd(values);
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
            let (mean, sd) = score::mean_sd(&v);
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditReport {
    pub schema: u32,
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
    pub probe_boxes: Vec<WmBox>,
    pub device: String,
    pub created_unix: u64,
    pub settings: AuditSettings,
    /// Probe indices into the test split.
    pub probes: Vec<usize>,
    pub runs: Vec<RunResult>,
    pub regimes: Vec<RegimeResult>,
    /// Runs trained with vs without the watermark (absent unless both exist).
    #[serde(default)]
    pub by_watermark: Option<WatermarkComparison>,
    /// Per artefact family (grid variant): truth counts and isolation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<FamilySummary>,
    /// Run folders without COMPLETE: listed, never audited.
    pub skipped_unfinished: Vec<String>,
}

pub(crate) fn settings_for(
    spec: &AuditSpec,
    run: &RunSpec,
    o: &AuditOverrides,
    class_names: &[String],
) -> anyhow::Result<AuditSettings> {
    let target = run
        .watermark_spec
        .target_index(class_names)
        .map_err(anyhow::Error::msg)?;
    Ok(AuditSettings {
        taps: taps_for(run, o),
        k: o.k.unwrap_or(spec.k),
        method: o.method.unwrap_or(spec.method),
        scope: o.scope.unwrap_or(spec.scope),
        probes: o.probes.unwrap_or(spec.probes),
        classes: spec
            .classes
            .clone()
            .unwrap_or_else(|| vec![class_names[target as usize].clone()]),
        repeats: o.repeats.unwrap_or(spec.repeats).max(1),
        tol: spec.tol,
        max_iter: spec.max_iter,
        resolution: o.resolution.or(spec.resolution),
        pictures: o.pictures,
    })
}

/// The taps of one run: the command line's, else run.yaml's `audit.taps`,
/// else the architecture's default.
pub(crate) fn taps_for(run: &RunSpec, o: &AuditOverrides) -> Vec<String> {
    o.taps
        .clone()
        .or_else(|| run.audit.taps.clone())
        .unwrap_or_else(|| run.model.arch.default_taps())
}

/// The probe images: up to N test images of the chosen classes, in a fixed
/// random order.
pub(crate) fn choose_probes(
    test: &SplitData,
    classes: &[String],
    n: usize,
) -> anyhow::Result<Vec<usize>> {
    let wanted: Vec<i64> = classes
        .iter()
        .map(|c| {
            test.class_names
                .iter()
                .position(|x| x == c)
                .map(|i| i as i64)
                .with_context(|| format!("audit class '{c}' is not one of {:?}", test.class_names))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut idx: Vec<usize> = (0..test.len())
        .filter(|&i| wanted.contains(&test.labels[i]))
        .collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(PROBE_SEED));
    idx.truncate(n);
    idx.sort();
    if idx.is_empty() {
        bail!("no test images of the classes {classes:?} to probe");
    }
    Ok(idx)
}

fn rgb_image(images: &Tensor, i: i64) -> RgbImage {
    let s = images.size()[2];
    let hwc = images
        .get(i)
        .permute([1, 2, 0])
        .contiguous()
        .to_device(Device::Cpu);
    RgbImage::from_raw(
        s as u32,
        s as u32,
        Vec::<u8>::try_from(hwc.flatten(0, -1)).expect("u8 image"),
    )
    .expect("size")
}

/// Identifies what a run's result was computed from: its weights (size and
/// time), the settings, and the probes with their boxes.
fn file_key(path: &Path, settings: &AuditSettings, probes: &ProbeSet) -> String {
    let meta = std::fs::metadata(path).ok();
    let stamp = meta.map(|m| {
        (
            m.len(),
            m.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        )
    });
    format!(
        "{stamp:?}|{}|{:?}|{:?}|{}",
        serde_json::to_string(settings).unwrap_or_default(),
        probes.indices,
        probes.placed,
        verdict::DETECTOR_VERSION
    )
}

/// One run's probes: test indices, where its artefact is stamped on each,
/// and the artefact's visible box there.
pub(crate) struct ProbeSet {
    pub indices: Vec<usize>,
    pub placed: Vec<WmBox>,
    pub masks: Vec<WmBox>,
}

impl ProbeSet {
    pub fn new(indices: Vec<usize>, artefact: &Artefact) -> Self {
        let placed: Vec<WmBox> = indices
            .iter()
            .map(|&i| artefact.box_for(PROBE_SEED, Split::Test, i))
            .collect();
        let masks = placed.iter().map(|b| artefact.mask_box(b)).collect();
        Self {
            indices,
            placed,
            masks,
        }
    }
}

/// Audits one run; returns its result and, per probe, the average-colour
/// images (clean, watermarked) averaged over the repeats.
#[allow(clippy::too_many_arguments)]
fn audit_run(
    spec: &RunSpec,
    folder: &RunFolder,
    train: &SplitData,
    test: &SplitData,
    artefact: &Artefact,
    probe_set: &ProbeSet,
    settings: &AuditSettings,
    out_dir: &Path,
    device: Device,
) -> anyhow::Result<(RunResult, Vec<(RgbImage, RgbImage)>)> {
    let started = std::time::Instant::now();
    let size = test.image_size();
    let mut model = Model::new(&spec.model, test.class_names.len() as i64, size, device)?;
    model.load(&folder.model(), true).with_context(|| {
        format!(
            "{}: the weights do not match its run.yaml",
            folder.dir.display()
        )
    })?;
    for t in &settings.taps {
        model.tap_index(t)?;
    }
    let probes = &probe_set.indices;
    let boxes = &probe_set.masks;
    let index = Tensor::from_slice(&probes.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let clean = test.images.index_select(0, &index);
    let marked = artefact.stamp(
        &clean,
        &probe_set
            .placed
            .iter()
            .map(|b| Some(*b))
            .collect::<Vec<_>>(),
    );
    let both = Tensor::cat(&[&clean, &marked], 0); // [2N, 3, S, S] uint8
    let feats = extract::features(
        &model,
        &normalize_u8(&both.to_device(device)),
        &settings.taps,
        settings.resolution,
        32,
    )?; // [2N, D, h, w]
    let (n2, d, h, w) = feats.size4()?;
    let n = probes.len();
    let mut iou_sum = 0.0;
    let (mut fair_sum, mut recall_sum, mut precision_sum) = (0.0, 0.0, 0.0);
    let mut shift_sum = 0.0;
    // The grid cell of every pixel: the unions of cells are what a segment can be.
    let cells = colour::upsample_labels(
        &(0..h * w).collect::<Vec<i64>>(),
        h as usize,
        w as usize,
        size as usize,
    );
    let pictures = settings.pictures.unwrap_or(n).min(n);
    // Average-colour images per pictured probe (clean ones, then watermarked), over the repeats.
    let mut avg_maps: Vec<Vec<RgbImage>> = vec![Vec::new(); 2 * pictures];
    let run_dir = out_dir.join("runs").join(&spec.id);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let s = size as usize;
    for r in 0..settings.repeats {
        let seed = r as u64;
        // [2N, h*w] labels
        let cluster = |rows: &Tensor| {
            nave::cluster(
                rows,
                settings.method,
                settings.k,
                seed,
                settings.tol,
                settings.max_iter,
            )
            .map(|l| l.to_device(Device::Cpu))
        };
        // One label list of h*w cells per image (clean probes, then watermarked).
        let labels: Vec<Vec<i64>> = match settings.scope {
            Scope::Set => {
                let l = cluster(&extract::to_rows(&feats))?.view([n2, h * w]);
                (0..n2)
                    .map(|i| Vec::<i64>::try_from(l.get(i)).expect("labels"))
                    .collect()
            }
            Scope::Image => (0..n2)
                .map(|i| {
                    Ok(
                        Vec::<i64>::try_from(cluster(&extract::to_rows(&feats.narrow(0, i, 1)))?)
                            .expect("labels"),
                    )
                })
                .collect::<anyhow::Result<_>>()?,
        };
        for p in 0..n {
            let up_clean = colour::upsample_labels(&labels[p], h as usize, w as usize, s);
            let up_marked = colour::upsample_labels(&labels[n + p], h as usize, w as usize, s);
            let iso = score::isolation(&up_marked, &cells, s, &boxes[p]);
            iou_sum += iso.iou;
            fair_sum += iso.fair;
            recall_sum += iso.recall;
            precision_sum += iso.precision;
            shift_sum += score::wm_shift(
                &up_clean,
                &up_marked,
                s,
                &boxes[p],
                (boxes[p].w.max(boxes[p].h) / 2).max(1),
            );
            if p >= pictures {
                continue;
            }
            for (v, up) in [(0usize, &up_clean), (1, &up_marked)] {
                let img = rgb_image(&both, (v * n + p) as i64);
                let avg = colour::average_colour(&img, up);
                if r == 0 {
                    let tag = if v == 0 { "clean" } else { "wm" };
                    let ov = colour::overlay(&img, up);
                    crate::io::write_png(&ov, &run_dir.join(format!("p{p:03}_{tag}_overlay.png")))?;
                    crate::io::write_png(&avg, &run_dir.join(format!("p{p:03}_{tag}_avg.png")))?;
                    let lab = colour::label_image(&labels[v * n + p], w as u32, h as u32);
                    crate::io::write_png(&lab, &run_dir.join(format!("p{p:03}_{tag}_labels.png")))?;
                }
                avg_maps[v * pictures + p].push(avg);
            }
        }
    }
    // The blind verdict: from the model and the images it trained on, as it
    // saw them (artefacts included), never from the boxes measured above.
    let train_images = training_images(spec, artefact, train)?;
    let verdict = verdict::judge(
        &model,
        &train_images,
        &train.labels,
        &train.class_names,
        &marked,
        &settings.taps,
        device,
    )?;
    let repeats = settings.repeats as f64;
    let (accuracy, gap) = final_accuracy(folder);
    let per_probe = n as f64 * repeats;
    let result = RunResult {
        run_dir: Some(folder.dir.clone()),
        id: spec.id.clone(),
        regime: spec.regime(),
        seed: spec.seed,
        augment: spec.augment,
        watermark: spec.watermark,
        arch: spec.model.arch.to_string(),
        variant: spec.variant.clone(),
        wm_iou: iou_sum / per_probe,
        wm_iou_fair: fair_sum / per_probe,
        wm_recall: recall_sum / per_probe,
        wm_precision: precision_sum / per_probe,
        wm_shift: shift_sum / per_probe,
        accuracy,
        shortcut_gap: gap,
        truth: Truth::of_gap(gap),
        probes: probes.clone(),
        probe_boxes: probe_set.placed.clone(),
        mask_boxes: probe_set.masks.clone(),
        verdict: Some(verdict),
        grid: h,
        feature_dim: d,
        seconds: started.elapsed().as_secs_f64(),
        key: file_key(&folder.model(), settings, probe_set),
    };
    crate::io::write_atomic(
        &run_dir.join("result.json"),
        serde_json::to_string_pretty(&result)?.as_bytes(),
    )?;
    let means: Vec<RgbImage> = avg_maps
        .iter()
        .map(|v| colour::mean_image(v).expect("at least one repeat"))
        .collect();
    let (c, m) = means.split_at(pictures);
    Ok((result, c.iter().cloned().zip(m.iter().cloned()).collect()))
}

/// The run's last test accuracies per variant and its shortcut gap (clean -
/// flipped; NaN when metrics.jsonl lacks them).
pub(crate) fn final_accuracy(folder: &RunFolder) -> (BTreeMap<String, f64>, f64) {
    let metrics: Option<EpochMetrics> = std::fs::read_to_string(folder.metrics())
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| serde_json::from_str(l).ok()));
    let accuracy = metrics.map(|m| m.test_accuracy).unwrap_or_default();
    let gap = accuracy
        .get("clean")
        .zip(accuracy.get("flipped"))
        .map(|(c, f)| c - f)
        .unwrap_or(f64::NAN);
    (accuracy, gap)
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

/// Audits every finished run under `dir` (an experiment's checkpoint folder).
pub fn audit(
    dir: &Path,
    reports: &Path,
    overrides: &AuditOverrides,
    force: bool,
    device: Device,
) -> anyhow::Result<PathBuf> {
    if !dir.is_dir() {
        bail!(
            "{} is not a folder of runs (expected checkpoints/<experiment>/)",
            dir.display()
        );
    }
    let folders = find_runs(dir)?;
    if folders.is_empty() {
        bail!(
            "{}: no run folders (folders with run.yaml); train the experiment first",
            dir.display()
        );
    }
    let mut specs = Vec::new();
    let mut unfinished = Vec::new();
    for f in folders {
        let spec = RunSpec::read(&f.run_yaml())?;
        if f.is_complete() {
            specs.push((spec, f));
        } else {
            crate::info!("{}: unfinished (no COMPLETE), skipped", spec.id);
            unfinished.push(spec.id);
        }
    }
    if specs.is_empty() {
        bail!(
            "{}: no finished run to audit ({} unfinished)",
            dir.display(),
            unfinished.len()
        );
    }
    let experiment = specs[0].0.experiment.clone();
    let out_dir = reports.join(&experiment);
    let mut store = DataStore::default();
    let first = specs[0].0.clone();
    let first_test = &store.get(&first)?.test;
    let settings = settings_for(&first.audit, &first, overrides, &first_test.class_names)?;
    let first_probes = choose_probes(first_test, &settings.classes, settings.probes)?;
    crate::info!(
        "auditing {} run(s) of {experiment}: {} probes, taps {}, K = {}, {:?}, scope {:?}",
        specs.len(),
        first_probes.len(),
        settings.taps.join(","),
        settings.k,
        settings.method,
        settings.scope
    );

    let mut results = Vec::new();
    let mut maps: BTreeMap<String, Vec<Vec<(RgbImage, RgbImage)>>> = BTreeMap::new();
    let bar = crate::ui::progress_bar(specs.len() as u64, "auditing");
    for (spec, folder) in &specs {
        // Runs may differ in dataset (real and synthetic families of one zoo)
        // and in artefact: each is probed on its own test split with its own artefact.
        let loaded = store.get(spec)?;
        let (train, test) = (&loaded.train, &loaded.test);
        let probe_indices = choose_probes(test, &settings.classes, settings.probes)
            .with_context(|| format!("choosing the probes of {}", spec.id))?;
        let artefact = Artefact::new(&spec.watermark_spec, test.image_size())
            .with_context(|| format!("{}: the run's watermark", folder.run_yaml().display()))?;
        let probe_set = ProbeSet::new(probe_indices, &artefact);
        // Runs of several architectures share the settings but not the taps.
        let run_settings = AuditSettings {
            taps: taps_for(spec, overrides),
            ..settings.clone()
        };
        let cached = out_dir.join("runs").join(&spec.id).join("result.json");
        let key = file_key(&folder.model(), &run_settings, &probe_set);
        if !force {
            if let Some(prev) = std::fs::read_to_string(&cached)
                .ok()
                .and_then(|t| serde_json::from_str::<RunResult>(&t).ok())
                .filter(|r| r.key == key)
            {
                // Unchanged run and settings: reuse the result; the regime maps are rebuilt from the saved average images.
                let pictured = settings
                    .pictures
                    .unwrap_or(usize::MAX)
                    .min(probe_set.indices.len());
                let load = |p: usize, tag: &str| {
                    image::open(
                        out_dir
                            .join("runs")
                            .join(&spec.id)
                            .join(format!("p{p:03}_{tag}_avg.png")),
                    )
                    .map(|i| i.to_rgb8())
                };
                if let Ok(pairs) = (0..pictured)
                    .map(|p| Ok((load(p, "clean")?, load(p, "wm")?)))
                    .collect::<Result<Vec<_>, image::ImageError>>()
                {
                    crate::detail!("{}: unchanged, audit reused", spec.id);
                    maps.entry(spec.regime()).or_default().push(pairs);
                    results.push(RunResult {
                        run_dir: Some(folder.dir.clone()),
                        ..prev
                    });
                    bar.inc(1);
                    continue;
                }
            }
        }
        let (result, pairs) = audit_run(
            spec,
            folder,
            train,
            test,
            &artefact,
            &probe_set,
            &run_settings,
            &out_dir,
            device,
        )
        .with_context(|| format!("auditing {}", folder.dir.display()))?;
        maps.entry(spec.regime()).or_default().push(pairs);
        results.push(result);
        bar.inc(1);
    }
    bar.finish_and_clear();

    // Per regime: the average-colour map over seeds (and repeats), and mean ± sd of the measures.
    let mut regimes = Vec::new();
    for (regime, per_run) in &maps {
        let dir = out_dir.join("regimes").join(regime);
        std::fs::create_dir_all(&dir)?;
        let pictured = per_run.iter().map(Vec::len).min().unwrap_or(0);
        for p in 0..pictured {
            for (tag, pick) in [("clean", 0usize), ("wm", 1)] {
                let imgs: Vec<RgbImage> = per_run
                    .iter()
                    .map(|pairs| {
                        if pick == 0 {
                            pairs[p].0.clone()
                        } else {
                            pairs[p].1.clone()
                        }
                    })
                    .collect();
                let mean = colour::mean_image(&imgs).expect("one run at least");
                crate::io::write_png(&mean, &dir.join(format!("p{p:03}_{tag}_avgmap.png")))?;
            }
        }
        let members: Vec<&RunResult> = results.iter().filter(|r| &r.regime == regime).collect();
        let ms = |f: &dyn Fn(&RunResult) -> f64| {
            let (mean, sd) = score::mean_sd(&members.iter().map(|r| f(r)).collect::<Vec<_>>());
            MeanSd { mean, sd }
        };
        let mut accuracy = BTreeMap::new();
        for v in ["clean", "as-train", "flipped"] {
            accuracy.insert(
                v.to_string(),
                ms(&|r| r.accuracy.get(v).copied().unwrap_or(f64::NAN)),
            );
        }
        regimes.push(RegimeResult {
            regime: regime.clone(),
            arch: members[0].arch.clone(),
            augment: members[0].augment,
            watermark: members[0].watermark,
            runs: members.iter().map(|r| r.id.clone()).collect(),
            wm_iou: ms(&|r| r.wm_iou),
            wm_iou_fair: ms(&|r| r.wm_iou_fair),
            wm_shift: ms(&|r| r.wm_shift),
            shortcut_gap: ms(&|r| r.shortcut_gap),
            accuracy,
        });
    }
    let by_watermark = WatermarkComparison::of(&results);
    let families = FamilySummary::of(&results);
    let first_test = &store.get(&first)?.test;
    let probe_boxes = results
        .first()
        .map(|r| r.probe_boxes.clone())
        .unwrap_or_default();
    let report = AuditReport {
        schema: 1,
        experiment: experiment.clone(),
        checkpoints: Some(dir.to_path_buf()),
        class_names: first_test.class_names.clone(),
        image_size: first_test.image_size(),
        probe_boxes,
        device: crate::device::device_name(device),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        settings,
        probes: first_probes,
        runs: results,
        by_watermark,
        families,
        regimes,
        skipped_unfinished: unfinished,
    };
    let path = out_dir.join("audit.json");
    crate::io::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
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
    print_verdicts(&report.runs);
    Ok(path)
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
