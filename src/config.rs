//! Experiment YAML -> validated [`Experiment`] -> the list of [`RunSpec`]s
//! (the grid's product). Two stages, as STYLE.md asks: serde structs that
//! mirror the file (unknown keys are errors naming the key and the line), then
//! validation into the resolved runs that `train` executes and `run.yaml` records.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::data::synthetic::SyntheticSpec;
use crate::data::transforms::AugmentSpec;
use crate::data::watermark::WatermarkSpec;
use crate::data::{BadFiles, DatasetKind, DatasetSource};
use crate::models::{Arch, ModelSpec};

/// The experiment file, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    pub name: String,
    pub dataset: DatasetSection,
    #[serde(default)]
    pub model: ModelSection,
    pub train: TrainSpec,
    #[serde(default)]
    pub augment: AugmentSpec,
    #[serde(default)]
    pub watermark: WatermarkSpec,
    #[serde(default)]
    pub grid: GridSection,
    #[serde(default)]
    pub audit: AuditSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    pub kind: DatasetKind,
    /// Relative paths are taken from the folder nave-lab runs in.
    #[serde(default)]
    pub root: Option<PathBuf>,
    pub image_size: i64,
    #[serde(default)]
    pub bad_files: BadFiles,
    #[serde(default)]
    pub synthetic: SyntheticSpec,
}

impl DatasetSection {
    pub fn source(&self) -> DatasetSource {
        DatasetSource {
            kind: self.kind,
            root: self.root.clone(),
            bad_files: self.bad_files,
            synthetic: self.synthetic.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Architecture when `grid.arch` is not given.
    #[serde(default = "default_arch")]
    pub arch: Arch,
    #[serde(default)]
    pub width: Option<i64>,
    #[serde(default)]
    pub init: Option<PathBuf>,
    #[serde(default)]
    pub registers: i64,
}

fn default_arch() -> Arch {
    Arch::Resnet18
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            arch: default_arch(),
            width: None,
            init: None,
            registers: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adamw,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    pub kind: OptimizerKind,
    pub lr: f64,
    /// SGD momentum (ignored by AdamW).
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// AdamW betas.
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
}

fn default_momentum() -> f64 {
    0.9
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Constant,
    Cosine,
    Step,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub kind: ScheduleKind,
    /// Linear warm-up from 0 over this many epochs (counted in steps).
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Step schedule: multiply the rate by `gamma` every `step_size` epochs.
    #[serde(default = "default_step_size")]
    pub step_size: usize,
    #[serde(default = "default_gamma")]
    pub gamma: f64,
}

fn default_step_size() -> usize {
    30
}
fn default_gamma() -> f64 {
    0.1
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Cosine,
            warmup_epochs: 0.0,
            step_size: default_step_size(),
            gamma: default_gamma(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerSpec,
    #[serde(default)]
    pub schedule: ScheduleSpec,
    #[serde(default)]
    pub label_smoothing: f64,
    /// Mixed precision (bf16 autocast) on CUDA; always off on the CPU.
    #[serde(default = "default_true")]
    pub mixed_precision: bool,
}

fn default_true() -> bool {
    true
}

/// The grid: every combination is one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridSection {
    #[serde(default)]
    pub arch: Option<Vec<Arch>>,
    #[serde(default = "default_false_list")]
    pub augment: Vec<bool>,
    #[serde(default = "default_false_list")]
    pub watermark: Vec<bool>,
    #[serde(default = "default_seeds")]
    pub seed: Vec<u64>,
}

fn default_false_list() -> Vec<bool> {
    vec![false]
}
fn default_seeds() -> Vec<u64> {
    vec![0]
}

impl Default for GridSection {
    fn default() -> Self {
        Self {
            arch: None,
            augment: default_false_list(),
            watermark: default_false_list(),
            seed: default_seeds(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMethod {
    Kmeans,
    Linfa,
    Ward,
    Pca,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Each image clustered alone.
    Image,
    /// All probe images clustered together: cluster k is one concept across images.
    Set,
}

/// `audit:` defaults (the audit command's options override them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSpec {
    /// Taps to cluster; default per architecture (ResNet layer3,layer4; ViT the last block).
    pub taps: Option<Vec<String>>,
    /// Number of clusters K.
    pub k: usize,
    pub method: ClusterMethod,
    pub scope: Scope,
    /// Probe images from the test split.
    pub probes: usize,
    /// Classes the probes are drawn from; default the watermark's target class.
    pub classes: Option<Vec<String>>,
    /// Clustering repeats with different seeds.
    pub repeats: usize,
    pub tol: f64,
    pub max_iter: usize,
    /// Cluster on a grid of this side instead of the first tap's.
    pub resolution: Option<i64>,
}

impl Default for AuditSpec {
    fn default() -> Self {
        Self {
            taps: None,
            k: 10,
            method: ClusterMethod::Kmeans,
            scope: Scope::Set,
            probes: 200,
            classes: None,
            repeats: 1,
            tol: 1e-4,
            max_iter: 300,
            resolution: None,
        }
    }
}

/// One run of the grid, fully resolved: what `run.yaml` records and what
/// `audit` rebuilds the model from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub experiment: String,
    pub id: String,
    pub seed: u64,
    /// The regime: augmentation and watermark on or off.
    pub augment: bool,
    pub watermark: bool,
    pub dataset: DatasetSection,
    pub model: ModelSpec,
    pub train: TrainSpec,
    pub augment_spec: AugmentSpec,
    pub watermark_spec: WatermarkSpec,
    pub audit: AuditSpec,
}

impl RunSpec {
    /// Runs that differ only by seed share a regime.
    pub fn regime(&self) -> String {
        format!(
            "{}-aug{}-wm{}",
            self.model.arch, self.augment as u8, self.watermark as u8
        )
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        yaml_serde::from_str(&text)
            .with_context(|| format!("{}: not a valid run.yaml", path.display()))
    }
}

/// A validated experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub file: ExperimentFile,
    pub source_path: PathBuf,
    pub source_text: String,
}

impl Experiment {
    /// Reads and validates an experiment file; `overrides` are `key.path=value` pairs.
    pub fn load(path: &Path, overrides: &[String]) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading experiment {}", path.display()))?;
        let file: ExperimentFile = if overrides.is_empty() {
            yaml_serde::from_str(&text).with_context(|| format!("{}", path.display()))?
        } else {
            let mut value: yaml_serde::Value =
                yaml_serde::from_str(&text).with_context(|| format!("{}", path.display()))?;
            for o in overrides {
                apply_override(&mut value, o)?;
            }
            yaml_serde::from_value(value).with_context(|| {
                format!(
                    "{} with --set {}",
                    path.display(),
                    overrides.join(" --set ")
                )
            })?
        };
        validate(&file).with_context(|| format!("{}", path.display()))?;
        Ok(Self {
            file,
            source_path: path.to_path_buf(),
            source_text: text,
        })
    }

    pub fn name(&self) -> &str {
        &self.file.name
    }

    /// The grid's product, in a fixed order: arch, augment, watermark, seed.
    pub fn runs(&self) -> Vec<RunSpec> {
        let f = &self.file;
        let archs = f.grid.arch.clone().unwrap_or_else(|| vec![f.model.arch]);
        let mut out = Vec::new();
        for &arch in &archs {
            for &augment in &f.grid.augment {
                for &watermark in &f.grid.watermark {
                    for &seed in &f.grid.seed {
                        out.push(RunSpec {
                            experiment: f.name.clone(),
                            id: format!(
                                "{arch}-aug{}-wm{}-s{seed}",
                                augment as u8, watermark as u8
                            ),
                            seed,
                            augment,
                            watermark,
                            dataset: f.dataset.clone(),
                            model: ModelSpec {
                                arch,
                                width: f.model.width,
                                init: f.model.init.clone(),
                                registers: f.model.registers,
                                layer_scale: false,
                            },
                            train: f.train.clone(),
                            augment_spec: f.augment.clone(),
                            watermark_spec: f.watermark.clone(),
                            audit: f.audit.clone(),
                        });
                    }
                }
            }
        }
        out
    }
}

fn validate(f: &ExperimentFile) -> anyhow::Result<()> {
    if f.name.is_empty() || f.name.contains(['/', '\\']) || f.name == "." || f.name == ".." {
        bail!(
            "name must be a non-empty folder name without slashes, got '{}'",
            f.name
        );
    }
    if f.dataset.kind != DatasetKind::Synthetic && f.dataset.root.is_none() {
        bail!(
            "dataset.root is required for dataset.kind {}",
            f.dataset.kind.as_str()
        );
    }
    if !(8..=1024).contains(&f.dataset.image_size) {
        bail!(
            "dataset.image_size must be between 8 and 1024, got {}",
            f.dataset.image_size
        );
    }
    if f.train.epochs == 0 || f.train.batch_size == 0 {
        bail!("train.epochs and train.batch_size must be at least 1");
    }
    // Written so that NaN is refused too.
    if f.train.optimizer.lr.is_nan() || f.train.optimizer.lr <= 0.0 {
        bail!(
            "train.optimizer.lr must be positive, got {}",
            f.train.optimizer.lr
        );
    }
    if !(0.0..1.0).contains(&f.train.label_smoothing) {
        bail!(
            "train.label_smoothing must be in [0, 1), got {}",
            f.train.label_smoothing
        );
    }
    f.augment.validate().map_err(anyhow::Error::msg)?;
    f.watermark.validate().map_err(anyhow::Error::msg)?;
    for (key, empty) in [
        ("grid.augment", f.grid.augment.is_empty()),
        ("grid.watermark", f.grid.watermark.is_empty()),
        ("grid.seed", f.grid.seed.is_empty()),
    ] {
        if empty {
            bail!("{key} must list at least one value");
        }
    }
    if f.grid.arch.as_ref().is_some_and(Vec::is_empty) {
        bail!("grid.arch must list at least one architecture");
    }
    if f.audit.k < 2 {
        bail!("audit.k must be at least 2, got {}", f.audit.k);
    }
    Ok(())
}

/// `train.optimizer.lr=0.1` -> sets that key (the value is parsed as YAML).
fn apply_override(root: &mut yaml_serde::Value, assignment: &str) -> anyhow::Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .with_context(|| format!("--set {assignment}: expected key.path=value"))?;
    let value: yaml_serde::Value = yaml_serde::from_str(raw)
        .with_context(|| format!("--set {assignment}: cannot parse the value"))?;
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let map = match node {
            yaml_serde::Value::Mapping(m) => m,
            yaml_serde::Value::Null => {
                *node = yaml_serde::Value::Mapping(Default::default());
                match node {
                    yaml_serde::Value::Mapping(m) => m,
                    _ => unreachable!(),
                }
            }
            _ => bail!(
                "--set {assignment}: '{}' is not a section",
                parts[..i].join(".")
            ),
        };
        let k = yaml_serde::Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(k, value);
            return Ok(());
        }
        if map.get(&k).is_none() {
            map.insert(k.clone(), yaml_serde::Value::Null);
        }
        node = map.get_mut(&k).expect("inserted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name: t\ndataset:\n  kind: synthetic\n  image_size: 32\ntrain:\n  epochs: 2\n  batch_size: 8\n  optimizer:\n    kind: sgd\n    lr: 0.1\ngrid:\n  augment: [false, true]\n  watermark: [false, true]\n  seed: [0, 1]\n";

    fn write(text: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nave-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn grid_expands_to_its_product_with_stable_ids() {
        let e = Experiment::load(&write(MINIMAL), &[]).unwrap();
        let runs = e.runs();
        assert_eq!(runs.len(), 8);
        assert_eq!(runs[0].id, "resnet18-aug0-wm0-s0");
        assert_eq!(runs[7].id, "resnet18-aug1-wm1-s1");
        assert_eq!(runs[5].regime(), "resnet18-aug1-wm0");
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_line() {
        let text = MINIMAL.replace("  epochs: 2\n", "  epochs: 2\n  epoch_count: 3\n");
        let err = format!("{:#}", Experiment::load(&write(&text), &[]).unwrap_err());
        assert!(
            err.contains("epoch_count") && err.contains("line 7"),
            "{err}"
        );
        let text = MINIMAL.replace("  epochs: 2\n", "  epochs: two\n");
        let err = format!("{:#}", Experiment::load(&write(&text), &[]).unwrap_err());
        assert!(err.contains("epochs") && err.contains("line 6"), "{err}");
    }

    #[test]
    fn set_overrides_any_field_and_validation_names_it() {
        let p = write(MINIMAL);
        let e = Experiment::load(
            &p,
            &[
                "train.optimizer.lr=0.5".into(),
                "grid.seed=[3]".into(),
                "watermark.size=0.2".into(),
            ],
        )
        .unwrap();
        assert_eq!(e.file.train.optimizer.lr, 0.5);
        assert_eq!(e.runs().len(), 4);
        assert_eq!(e.file.watermark.size, 0.2);
        let err = format!(
            "{:#}",
            Experiment::load(&p, &["watermark.size=3".into()]).unwrap_err()
        );
        assert!(err.contains("watermark.size"), "{err}");
        let err = format!(
            "{:#}",
            Experiment::load(&p, &["train.nope=1".into()]).unwrap_err()
        );
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn run_spec_round_trips_through_yaml() {
        let e = Experiment::load(&write(MINIMAL), &[]).unwrap();
        let run = e.runs().remove(3);
        let text = yaml_serde::to_string(&run).unwrap();
        let back: RunSpec = yaml_serde::from_str(&text).unwrap();
        assert_eq!(run, back);
    }
}
