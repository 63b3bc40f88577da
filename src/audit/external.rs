//! Auditing a model trained anywhere: `nave-lab audit --weights FILE --arch A
//! --data DIR`. An auditor is handed weights (torchvision, timm or DINO
//! names, `.pth`/`.pt`/`.safetensors`) and the data they were trained on (a
//! folder of class folders or a CSV of `path,label`), not a run folder. The
//! audit is the same as for a nave-lab run where it can be: NAVE on probe
//! images, the blind verdict from the model and its training images; and it
//! says what it cannot give: no known-box measures (no artefact is known)
//! and no shortcut gap (no flipped test set).
//!
//! For a flagged model whose evidence is a reproduced object, every training
//! file is scored for the object's presence by the detector's own match;
//! whose evidence is where the model looks, by the sharpest stroke there
//! (`detect::carriers`): `carriers.csv`, ranked, with the region, and a page
//! of the top and borderline files, so that the data can be cleaned.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::measures::{self, Grid};
use super::pictures;
use super::{choose_probes, AuditOverrides, AuditReport, AuditSettings, Audited, RunResult, Truth};
use crate::config::AuditSpec;
use crate::data::image_file::Fit;
use crate::data::labelled::{self, Labelled};
use crate::data::loader::normalize_u8;
use crate::data::{BadFiles, Split};
use crate::detect::carriers::{self, Carrier};
use crate::detect::verdict;
use crate::models::{self, Arch, Model};
use crate::nave::extract;

/// What `audit --weights` was asked.
pub struct ExternalRequest {
    pub weights: PathBuf,
    pub arch: Arch,
    /// The training data: a folder of class folders, or a CSV.
    pub data: PathBuf,
    /// Held-out images to probe and to measure accuracy on (else the
    /// training images are probed).
    pub test: Option<PathBuf>,
    /// The side the images are resized to, as the model was trained.
    pub image_size: i64,
    /// Resized to the side, or the shorter side first and the centre cropped.
    pub fit: Fit,
    /// The model's output order of the classes (default: sorted names).
    pub classes: Option<Vec<String>>,
    /// The input statistics the model was trained with (on [0, 1] pixels).
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// The report's name: `reports/<name>/`.
    pub name: String,
    pub reports: PathBuf,
    pub overrides: AuditOverrides,
}

/// Where the audited model and data came from, and how they were read: what
/// audit.json records of an audit from files, and the report states.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExternalSource {
    pub weights: PathBuf,
    pub weights_sha256: String,
    pub arch: String,
    pub data: PathBuf,
    #[serde(default)]
    pub test: Option<PathBuf>,
    /// Resizing and normalisation, in words.
    pub preprocessing: String,
    /// Training files skipped as undecodable.
    #[serde(default)]
    pub skipped: Vec<PathBuf>,
    /// The carriers' summary, when the verdict's evidence is an object or
    /// where the model looks.
    #[serde(default)]
    pub carriers: Option<CarrierSummary>,
}

/// How many training files carry the found object, and the files the
/// report shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CarrierSummary {
    pub scored: usize,
    /// At or above the detector's cut.
    pub carrying: usize,
    pub cut: f64,
    /// What the files are scored by (`carriers::Measure::describe`, or
    /// `carriers::LOOKED_MEASURE`).
    #[serde(default)]
    pub measure: String,
    /// How the cut is set, in words (empty in audits written before it was
    /// kept: the report then gives the object's rule).
    #[serde(default)]
    pub rule: String,
    /// The class the object pushes towards, and how many of the carrying
    /// files are of it.
    pub class: String,
    pub carrying_in_class: usize,
    /// The highest-scoring files.
    pub top: Vec<ShownCarrier>,
    /// The files just above and just below the cut.
    pub borderline: Vec<ShownCarrier>,
}

/// One training file as the carriers page shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShownCarrier {
    pub rank: usize,
    pub path: PathBuf,
    pub class: String,
    /// How well it matches the object (the summary's `measure`).
    #[serde(alias = "correlation")]
    pub likeness: f64,
    pub carries: bool,
    /// The image with the region outlined, relative to the report folder.
    pub picture: String,
}

/// Files shown on the carriers page: the top ones, and as many on each side
/// of the cut.
const SHOWN_TOP: usize = 24;
const SHOWN_EACH_SIDE: usize = 12;

/// Probes of an audit from files unless `--probes` says otherwise.
pub const EXTERNAL_PROBES: usize = 40;

/// The run id an audit from files gets in the report.
const RUN_ID: &str = "model";

/// Audits `r`'s model and data into a staging folder beside
/// `reports/<name>/` (see [`Audited::commit`]); nothing is written anywhere
/// else, and nothing at all when the input is refused.
pub fn audit_external(r: &ExternalRequest, device: Device) -> anyhow::Result<Audited> {
    if let Some(why) = crate::config::name_problem(&r.name) {
        anyhow::bail!("--name '{}': {why}", r.name.escape_debug());
    }
    let inputs = Inputs::read(r, device)?;
    let weights_sha256 = crate::io::FileDigest::of_file(&r.weights)?.sha256;
    let staged = crate::staging::StagedFolder::begin(&r.reports.join(&r.name))?;
    let run_dir = staged.dir().join("runs").join(RUN_ID);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let started = std::time::Instant::now();
    let i = &inputs;
    let (grid, feature_dim) = picture_probes(&i.model, &i.probes, &i.settings, &run_dir, device)?;
    let (verdict, accuracy, summary) = inputs.findings(staged.dir(), device)?;
    let result = RunResult {
        accuracy: accuracy
            .map(|a| BTreeMap::from([("clean".to_string(), a)]))
            .unwrap_or_default(),
        probes: i.probe_indices.clone(),
        verdict: Some(verdict),
        grid,
        feature_dim,
        seconds: started.elapsed().as_secs_f64(),
        key: format!("weights {weights_sha256}"),
        ..unmeasured(r.arch)
    };
    crate::io::write_json(&run_dir.join("result.json"), &result)?;
    let source = ExternalSource {
        weights: r.weights.clone(),
        weights_sha256,
        arch: r.arch.to_string(),
        data: r.data.clone(),
        test: r.test.clone(),
        preprocessing: preprocessing(r),
        skipped: i.train.data.skipped.clone(),
        carriers: summary,
    };
    let report = AuditReport {
        experiment: r.name.clone(),
        class_names: i.train.data.class_names.clone(),
        image_size: r.image_size,
        device: crate::device::device_name(device),
        created_unix: crate::io::unix_seconds(),
        settings: Some(i.settings.clone()),
        probes: i.probe_indices.clone(),
        runs: vec![result],
        external: Some(source),
        ..AuditReport::default()
    };
    report.write_into(staged.dir())?;
    print_summary(&report);
    Ok(Audited::new(staged))
}

/// What an audit from files reads before it writes anything: the data, the
/// model, the settings and the probes.
struct Inputs {
    train: Labelled,
    test: Option<Labelled>,
    model: Model,
    settings: AuditSettings,
    probe_indices: Vec<usize>,
    probes: Tensor,
}

impl Inputs {
    /// Everything checked: a refusal here leaves nothing written.
    fn read(r: &ExternalRequest, device: Device) -> anyhow::Result<Self> {
        let size = (r.image_size, r.fit);
        let train = load_data(&r.data, size, r.classes.as_deref(), Split::Train)?;
        let names = train.data.class_names.clone();
        let test = match &r.test {
            Some(t) => Some(load_data(t, size, Some(&names), Split::Test)?),
            None => None,
        };
        let model = load_model(r, names.len(), device)?;
        let settings = settings(r, &names);
        let probed = test.as_ref().unwrap_or(&train);
        let probe_indices = choose_probes(&probed.data, &settings.classes, settings.probes)?;
        let probes = probed
            .data
            .images
            .index_select(0, &crate::data::index_tensor(&probe_indices));
        Ok(Self {
            train,
            test,
            model,
            settings,
            probe_indices,
            probes,
        })
    }

    /// The verdict, the accuracy on the test images, and for a flagged
    /// object the training files that carry it (written into `dir`).
    fn findings(
        &self,
        dir: &Path,
        device: Device,
    ) -> anyhow::Result<(verdict::Verdict, Option<f64>, Option<CarrierSummary>)> {
        let (train, model) = (&self.train, &self.model);
        let verdict = verdict::judge(
            model,
            &train.data.images,
            &train.data.labels,
            &train.data.class_names,
            &self.probes,
            &self.settings.taps,
            device,
        )?;
        let accuracy = self
            .test
            .as_ref()
            .map(|t| clean_accuracy(model, &t.data.images, &t.data.labels, device))
            .transpose()?;
        let summary = match (&verdict.object, &verdict.looked, verdict.flagged) {
            (Some(object), _, true) => {
                let scored = carriers::score(object, &train.data.images)?;
                let how = (object.measure.describe(), OBJECT_RULE);
                Some(write_carriers(
                    dir, &scored, train, &verdict, object.cut, how,
                )?)
            }
            // No object to match: the files are scored where the model looks.
            (None, Some(looked), true) => {
                let (scored, cut) = carriers::score_looked(
                    looked,
                    model,
                    &train.data.images,
                    &train.data.labels,
                    device,
                )?;
                let how = (carriers::LOOKED_MEASURE, LOOKED_RULE);
                Some(write_carriers(dir, &scored, train, &verdict, cut, how)?)
            }
            _ => None,
        };
        Ok((verdict, accuracy, summary))
    }
}

/// A result with nothing measured: no known box, no gap, no run folder.
fn unmeasured(arch: Arch) -> RunResult {
    RunResult {
        run_dir: None,
        id: RUN_ID.into(),
        regime: RUN_ID.into(),
        seed: 0,
        augment: false,
        watermark: false,
        arch: arch.to_string(),
        variant: None,
        wm_iou: f64::NAN,
        wm_iou_fair: f64::NAN,
        wm_recall: f64::NAN,
        wm_precision: f64::NAN,
        wm_shift: f64::NAN,
        accuracy: BTreeMap::new(),
        shortcut_gap: f64::NAN,
        truth: Truth::Unknown,
        probes: vec![],
        probe_boxes: vec![],
        mask_boxes: vec![],
        global_artefact: false,
        revised_from: None,
        revise_method: None,
        verdict: None,
        grid: 0,
        feature_dim: 0,
        seconds: 0.0,
        key: String::new(),
    }
}

/// What the command prints: the accuracy, the verdict, the carriers.
fn print_summary(report: &AuditReport) {
    let Some(run) = report.runs.first() else {
        return;
    };
    if let Some(a) = run.accuracy.get("clean") {
        println!("accuracy on the test images: {a:.3}");
    }
    if let Some(v) = &run.verdict {
        println!(
            "Is it a Clever Hans? blind detector, threshold {:.3}",
            v.threshold
        );
        println!("  {}", v.line(&run.id));
    }
    if let Some(c) = report.external.as_ref().and_then(|e| e.carriers.as_ref()) {
        println!(
            "  {} of {} training files carry it ({} of them {}): carriers.csv",
            c.carrying, c.scored, c.carrying_in_class, c.class
        );
    }
    println!(
        "no known-box measures and no shortcut gap: no artefact is known for a model from files"
    );
}

/// The data at `source`, undecodable files skipped and named.
fn load_data(
    source: &Path,
    size: (i64, Fit),
    classes: Option<&[String]>,
    split: Split,
) -> anyhow::Result<Labelled> {
    let loaded = labelled::load(source, size, classes, BadFiles::Skip, split)?;
    if let Some(first) = loaded.data.skipped.first() {
        crate::warn!(
            "{}: {} undecodable file(s) skipped, e.g. {}",
            source.display(),
            loaded.data.skipped.len(),
            first.display()
        );
    }
    Ok(loaded)
}

/// The model, refused with the file named when it is not a checkpoint of
/// `r.arch` or its head does not have one output per class.
fn load_model(r: &ExternalRequest, classes: usize, device: Device) -> anyhow::Result<Model> {
    let mut model =
        models::from_weights(r.arch, &r.weights, r.image_size, device).with_context(|| {
            format!(
                "{}: not a {} checkpoint this audit reads",
                r.weights.display(),
                r.arch
            )
        })?;
    let outputs = model.num_classes();
    anyhow::ensure!(
        outputs == classes as i64,
        "{}: the model has {outputs} output(s) but {} has {classes} classes; \
         give the data it was trained on (or --classes in its output order)",
        r.weights.display(),
        r.data.display()
    );
    model.set_input_statistics(r.mean, r.std)?;
    Ok(model)
}

/// The audit's settings: the defaults of an experiment's `audit:` block
/// under the command line's, probing every class.
fn settings(r: &ExternalRequest, classes: &[String]) -> AuditSettings {
    let spec = AuditSpec {
        // Forty, as the demo's audit: pictures of every probe stay few.
        probes: EXTERNAL_PROBES,
        ..AuditSpec::default()
    };
    let o = &r.overrides;
    let taps = o
        .taps
        .clone()
        .unwrap_or_else(|| r.arch.audit_taps(r.image_size));
    AuditSettings::merged(&spec, o, taps, classes.to_vec())
}

fn preprocessing(r: &ExternalRequest) -> String {
    let fitted = match r.fit {
        Fit::Stretch => format!("resized to {s} x {s} (bilinear, no crop)", s = r.image_size),
        Fit::CentreCrop { shorter } => format!(
            "resized to a shorter side of {shorter} (bilinear, aspect kept), the centre {s} x {s} cropped",
            s = r.image_size
        ),
    };
    format!(
        "{fitted}, RGB, normalised with mean {:?} and std {:?}",
        r.mean, r.std
    )
}

/// NAVE on the probes: the first clustering's pictures (overlay, average
/// colour, label map) of each pictured probe. Returns the grid side and the
/// feature dimension.
fn picture_probes(
    model: &Model,
    probes: &Tensor,
    settings: &AuditSettings,
    run_dir: &Path,
    device: Device,
) -> anyhow::Result<(i64, i64)> {
    let feats = extract::features(
        model,
        &normalize_u8(&probes.to_device(device)),
        &settings.taps,
        settings.resolution,
        32,
    )?;
    let (n, d, h, _) = feats.size4()?;
    let labels = measures::cluster_probes(&feats, settings, 0)?;
    let grid = Grid::of(&feats, probes.size()[2])?;
    let pictured = settings.pictures.unwrap_or(n as usize).min(n as usize);
    for (p, labels) in labels.iter().enumerate().take(pictured) {
        pictures::write_probe_pictures(&grid, labels, probes, (p, p), "clean", run_dir)?;
    }
    Ok((h, d))
}

/// The share of `images` the model classifies as `labels` say.
fn clean_accuracy(
    model: &Model,
    images: &Tensor,
    labels: &[i64],
    device: Device,
) -> anyhow::Result<f64> {
    let predicted: Vec<i64> =
        Vec::try_from(crate::detect::probabilities(model, images, device).argmax(1, false))?;
    let right = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    Ok(right as f64 / labels.len().max(1) as f64)
}

/// How the cut is set for a found object, in words (the report's caption).
pub const OBJECT_RULE: &str = "The cut is halfway between the object's match with the other images of its class and with the other classes'. Of the two measures (the high-pass correlation, which sees edges and strokes whatever shows through; the grey levels, which see a flat stamped copy), the detector keeps the one that tells its class from the others better on its own sample.";

/// ... and for where the model looks.
const LOOKED_RULE: &str = "The evidence is where the model looks (an object whose copies vary, so no template to match): each file is scored at the place the model looks for the class, by the sharpest stroke there on the image's own scale. The cut is the 99th percentile of the same score over the other classes' files, which do not carry a shortcut of this class.";

/// `carriers.csv` (every training file, closest match first), and
/// the pictures of the files the report shows (the top ones and those
/// around the cut, each with the region drawn) under `carriers/`.
fn write_carriers(
    dir: &Path,
    scored: &[Carrier],
    train: &Labelled,
    verdict: &verdict::Verdict,
    cut: f64,
    (measure, rule): (&str, &str),
) -> anyhow::Result<CarrierSummary> {
    let mut ranked: Vec<&Carrier> = scored.iter().collect();
    ranked.sort_by(|a, b| {
        b.likeness
            .total_cmp(&a.likeness)
            .then(a.index.cmp(&b.index))
    });
    let names = &train.data.class_names;
    let class_of = |c: &Carrier| names[train.data.labels[c.index] as usize].as_str();
    write_carriers_csv(&dir.join("carriers.csv"), &ranked, train)?;
    let class = verdict.class.clone().unwrap_or_default();
    let carrying: Vec<&&Carrier> = ranked.iter().filter(|c| c.carries).collect();
    let first_below = carrying.len();
    let shown = |range: std::ops::Range<usize>| -> anyhow::Result<Vec<ShownCarrier>> {
        range
            .filter(|&rank| rank < ranked.len())
            .map(|rank| {
                let c = ranked[rank];
                let picture = format!("carriers/{:06}.png", rank + 1);
                crate::io::write_png(&outlined(&train.data.images, c), &dir.join(&picture))?;
                Ok(ShownCarrier {
                    rank: rank + 1,
                    path: train.files[c.index].clone(),
                    class: class_of(c).to_string(),
                    likeness: c.likeness,
                    carries: c.carries,
                    picture,
                })
            })
            .collect()
    };
    std::fs::create_dir_all(dir.join("carriers"))
        .with_context(|| format!("creating {}", dir.join("carriers").display()))?;
    let top = shown(0..SHOWN_TOP)?;
    // Around the cut, after the top files (when the cut falls among them,
    // the files just below it).
    let start = first_below.saturating_sub(SHOWN_EACH_SIDE).max(SHOWN_TOP);
    let around = start..first_below.max(start) + SHOWN_EACH_SIDE;
    Ok(CarrierSummary {
        scored: scored.len(),
        carrying: carrying.len(),
        cut,
        measure: measure.to_string(),
        rule: rule.to_string(),
        carrying_in_class: carrying.iter().filter(|c| class_of(c) == class).count(),
        class,
        top,
        borderline: shown(around)?,
    })
}

/// Training image `c.index` with the matched region outlined (2 px, magenta).
fn outlined(images: &Tensor, c: &Carrier) -> image::RgbImage {
    let mut picture = pictures::rgb_image(images, c.index as i64);
    let b = c.region;
    let (w, h) = (b.w.max(1) as u32, b.h.max(1) as u32);
    crate::nave::colour::outline(
        &mut picture,
        (b.x as i32, b.y as i32),
        (w, h),
        [230, 0, 200],
    );
    picture
}

/// `carriers.csv`: every training file, closest match first.
fn write_carriers_csv(path: &Path, ranked: &[&Carrier], train: &Labelled) -> anyhow::Result<()> {
    let names = &train.data.class_names;
    let mut csv = String::from("rank,path,class,likeness,carries,x,y,w,h\n");
    for (rank, c) in ranked.iter().enumerate() {
        csv += &format!(
            "{},{},{},{:.4},{},{},{},{},{}\n",
            rank + 1,
            csv_field(&train.files[c.index].display().to_string()),
            csv_field(&names[train.data.labels[c.index] as usize]),
            c.likeness,
            c.carries,
            c.region.x,
            c.region.y,
            c.region.w,
            c.region.h
        );
    }
    crate::io::write_atomic(path, csv.as_bytes())
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
