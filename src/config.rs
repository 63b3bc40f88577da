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

pub mod grid;

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
    /// The grid, read by [`grid::Grid::parse`]: any field can be an axis.
    #[serde(default)]
    pub grid: yaml_serde::Value,
    #[serde(default)]
    pub audit: AuditSpec,
    /// `nave-lab revise` defaults: the methods a study sweeps.
    #[serde(default)]
    pub revise: ReviseDefaults,
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

/// How `revise` neutralises what the verdict found in the training images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReviseMethod {
    /// Counterfactual augmentation: the found object (or global cue) put on
    /// the other classes' images, so that it no longer tells the classes apart.
    Augment,
    /// The found object painted over (filled from the image around it) where
    /// it shows; a global cue taken off the class that carries it.
    Mask,
    /// The control: the same fine-tune on the training images as they are.
    None,
}

impl ReviseMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviseMethod::Augment => "augment",
            ReviseMethod::Mask => "mask",
            ReviseMethod::None => "none",
        }
    }
}

/// `revise:` defaults of an experiment file (the command's options override them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviseDefaults {
    /// Methods each flagged run is revised with, one run folder each.
    pub methods: Vec<ReviseMethod>,
    /// Fine-tuning epochs.
    pub epochs: usize,
    /// The fine-tune's learning rate as a share of the run's.
    pub lr_scale: f64,
}

impl Default for ReviseDefaults {
    fn default() -> Self {
        Self {
            methods: vec![ReviseMethod::Augment],
            // Measured on zoo v2 (benches/RESULTS.md, "Revise"): a model
            // that learned only the shortcut needs to learn the task itself;
            // 6 epochs at 0.2 x left it 5-15 points under the clean runs,
            // 12 epochs at 0.5 x 8 of 15 families within 2 points of them,
            // 20 epochs at 0.5 x 12 of 15.
            epochs: 20,
            lr_scale: 0.5,
        }
    }
}

/// A revised run's origin, in its run.yaml: a fine-tune of the run `from`
/// (a folder beside it) on its training images with the evidence of
/// `revise.json` neutralised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviseSpec {
    pub from: String,
    pub method: ReviseMethod,
    /// SHA-256 of the weights fine-tuned from, and of the evidence file: a
    /// changed original or a new verdict is another revision.
    pub from_weights_sha256: String,
    pub evidence_sha256: String,
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
    /// The grid's named variant this run belongs to, if the grid has variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The values of the grid's other axes, shortened (`size0.05`), as in the id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grid_tags: Vec<String>,
    pub dataset: DatasetSection,
    pub model: ModelSpec,
    pub train: TrainSpec,
    pub augment_spec: AugmentSpec,
    pub watermark_spec: WatermarkSpec,
    pub audit: AuditSpec,
    /// Set on a run `nave-lab revise` made from another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revise: Option<ReviseSpec>,
}

impl RunSpec {
    /// The run's watermark settings when it trains with one.
    pub fn watermark(&self) -> Option<&WatermarkSpec> {
        self.watermark.then_some(&self.watermark_spec)
    }

    /// Runs that differ only by seed share a regime: the id without `-s<seed>`.
    /// A revised run's regime is its original's with `-revised-<method>`.
    pub fn regime(&self) -> String {
        let base = grid::regime_name(
            self.model.arch,
            self.variant.as_deref(),
            self.augment,
            self.watermark,
            &self.grid_tags,
        );
        match &self.revise {
            Some(r) => format!("{base}-revised-{}", r.method.as_str()),
            None => base,
        }
    }

    /// Reads a run.yaml. Its names are checked as an experiment's are
    /// ([`name_problem`]): they become folders and words of job scripts, and
    /// a run.yaml may come from anywhere.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let spec: Self = yaml_serde::from_str(&text)
            .with_context(|| format!("{}: not a valid run.yaml", path.display()))?;
        let names = [
            ("experiment", Some(&spec.experiment)),
            ("id", Some(&spec.id)),
        ]
        .into_iter()
        .chain([("variant", spec.variant.as_ref())]);
        for (key, value) in names {
            if let Some(why) = value.and_then(|v| name_problem(v)) {
                bail!(
                    "{}: {key} '{}': {why}",
                    path.display(),
                    value
                        .map(|v| v.escape_debug().to_string())
                        .unwrap_or_default()
                );
            }
        }
        Ok(spec)
    }
}

/// A validated experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub file: ExperimentFile,
    pub source_path: PathBuf,
    pub source_text: String,
    /// Every run of the grid with its grid values (`key=value`), in grid order.
    points: Vec<(RunSpec, Vec<String>)>,
}

impl Experiment {
    /// Reads and validates an experiment file; `overrides` are `key.path=value`
    /// pairs. Every run of the grid is resolved and validated here, so a bad
    /// value anywhere in the grid is reported before anything trains.
    pub fn load(path: &Path, overrides: &[String]) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading experiment {}", path.display()))?;
        Self::parse(path, text, overrides)
    }

    /// An experiment from its text; `path` is where it came from (named in
    /// errors, recorded as its source).
    pub fn parse(path: &Path, text: String, overrides: &[String]) -> anyhow::Result<Self> {
        // Parsed once as typed structs, for errors with the key's line.
        let file: ExperimentFile =
            yaml_serde::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let mut value: yaml_serde::Value =
            yaml_serde::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let file = if overrides.is_empty() {
            file
        } else {
            for o in overrides {
                apply_override(&mut value, o)?;
            }
            yaml_serde::from_value(value.clone()).with_context(|| {
                format!(
                    "{} with --set {}",
                    path.display(),
                    overrides.join(" --set ")
                )
            })?
        };
        if let Some(why) = name_problem(&file.name) {
            bail!(
                "{}: name '{}': {why}",
                name_origin(path, &text, overrides),
                file.name.escape_debug()
            );
        }
        validate(&file).with_context(|| format!("{}", path.display()))?;
        let grid = grid::Grid::parse(&file.grid)
            .map_err(|e| e.at_line_of(&text))
            .with_context(|| format!("{}", path.display()))?;
        for o in overrides {
            let key = o.split_once('=').map_or(o.as_str(), |(k, _)| k);
            if let Some(place) = grid.varies(key) {
                bail!(
                    "--set {o}: {key} is varied by {place}; change the grid instead (--set 'grid.{key}=[...]')"
                );
            }
        }
        let points = grid
            .expand(&value, &file.name)
            .map_err(|e| e.at_line_of(&text))
            .with_context(|| format!("{}", path.display()))?;
        Ok(Self {
            file,
            source_path: path.to_path_buf(),
            source_text: text,
            points,
        })
    }

    pub fn name(&self) -> &str {
        &self.file.name
    }

    /// The grid's runs in a fixed order: variant, arch, augment, watermark,
    /// the other axes in file order, seed.
    pub fn runs(&self) -> Vec<RunSpec> {
        self.points.iter().map(|(r, _)| r.clone()).collect()
    }

    /// The runs with the grid values that made each (`watermark.size=0.05`).
    pub fn points(&self) -> &[(RunSpec, Vec<String>)] {
        &self.points
    }

    /// The runs a command asked for: the one with id `run`, the one at grid
    /// position `index`, or all; an error naming the file and the choices
    /// when there is no such run.
    pub fn select(&self, run: Option<&str>, index: Option<usize>) -> anyhow::Result<Vec<RunSpec>> {
        let mut runs = self.runs();
        if let Some(id) = run {
            let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
            runs.retain(|r| r.id == id);
            if runs.is_empty() {
                bail!(
                    "{}: no run '{id}'; the runs are {}",
                    self.source_path.display(),
                    ids.join(", ")
                );
            }
        }
        if let Some(i) = index {
            if i >= runs.len() {
                bail!(
                    "{}: --index {i} is out of range; the grid has {} runs (0..{})",
                    self.source_path.display(),
                    runs.len(),
                    runs.len()
                );
            }
            runs = vec![runs.swap_remove(i)];
        }
        Ok(runs)
    }

    /// The distinct artefacts among the runs trained with a watermark (one
    /// per dataset and watermark setting), each with the ids of its runs.
    pub fn artefact_families(&self) -> Vec<(&RunSpec, Vec<&str>)> {
        let mut families: Vec<(&RunSpec, Vec<&str>)> = Vec::new();
        for (r, _) in self.points.iter().filter(|(r, _)| r.watermark) {
            match families
                .iter_mut()
                .find(|(f, _)| f.watermark_spec == r.watermark_spec && f.dataset == r.dataset)
            {
                Some((_, ids)) => ids.push(&r.id),
                None => families.push((r, vec![&r.id])),
            }
        }
        families
    }

    /// Keeps the experiment file beside its runs
    /// (`<checkpoints>/<name>/experiment.yaml`), with the `--set` overrides
    /// noted, for the report.
    pub fn write_copy(&self, checkpoints: &Path, overrides: &[String]) -> anyhow::Result<()> {
        let dir = checkpoints.join(self.name());
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        let mut text = format!("# {}\n", self.source_path.display());
        for o in overrides {
            text += &format!("# --set {o}\n");
        }
        text += &self.source_text;
        // Under a lock, so that a temporary left by a writer killed between
        // its write and its rename is swept (no live writer owns one) while
        // two processes on one study can still both start.
        let _lock = crate::lock::Lock::acquire_waiting(&dir.join(".experiment.lock"), |holder| {
            crate::info!("waiting for {holder}, which is writing {}", dir.display());
        })?;
        crate::io::remove_stale_temps(&dir, "experiment.yaml.");
        let copy = dir.join("experiment.yaml");
        crate::io::write_atomic_with(&copy, |tmp| {
            std::fs::write(tmp, text.as_bytes())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", copy.display()))?;
            crate::failpoint::hit("experiment-copy");
            Ok(())
        })
    }
}

/// One run's resolved sections: the experiment file with the grid point's
/// values applied, as `grid` hands it over.
pub(crate) fn run_spec(
    file: &ExperimentFile,
    arch: Arch,
    point: grid::Point,
) -> anyhow::Result<RunSpec> {
    validate(file)?;
    Ok(RunSpec {
        experiment: file.name.clone(),
        id: format!(
            "{}-s{}",
            grid::regime_name(
                arch,
                point.variant.as_deref(),
                point.augment,
                point.watermark,
                &point.tags
            ),
            point.seed
        ),
        seed: point.seed,
        augment: point.augment,
        watermark: point.watermark,
        variant: point.variant,
        grid_tags: point.tags,
        dataset: file.dataset.clone(),
        model: ModelSpec {
            arch,
            width: file.model.width,
            init: file.model.init.clone(),
            init_sha256: None,
            registers: file.model.registers,
            layer_scale: false,
        },
        train: file.train.clone(),
        augment_spec: file.augment.clone(),
        watermark_spec: file.watermark.clone(),
        audit: file.audit.clone(),
        revise: None,
    })
}

/// The longest name: run ids add their regime to it and must stay within a
/// file name's 255 bytes.
const MAX_NAME_LEN: usize = 128;

/// Why `name` cannot name an experiment, a variant or a run, or `None` when
/// it can: letters, digits, `.`, `_` and `-`, not empty, not `.` or `..`, at
/// most 128 characters. Names become folders (`checkpoints/<name>/<id>/`),
/// Slurm job names and words of job scripts, so nothing that a shell, a path
/// or an `#SBATCH` line would read as syntax gets through.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    if name == "." || name == ".." {
        return Some(format!("'{name}' names a folder's parent or itself"));
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!(
            "it is {} bytes long; at most {MAX_NAME_LEN}",
            name.len()
        ));
    }
    let (at, bad) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || "._-".contains(c)))?;
    Some(format!(
        "{} at character {} is not allowed; names are letters, digits, '.', '_' and '-'",
        describe_char(bad),
        name[..at].chars().count() + 1
    ))
}

/// A character as an error message shows it: printable ones quoted, the
/// others by their code point (a newline would break the message's line).
pub fn describe_char(c: char) -> String {
    match c {
        '\n' => "a newline (U+000A)".into(),
        '\r' => "a carriage return (U+000D)".into(),
        '\t' => "a tab (U+0009)".into(),
        ' ' => "a space".into(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("'{c}' (U+{:04X})", c as u32),
    }
}

/// Where the experiment's `name` came from, for its error: the `--set` that
/// gave it, else the file's line.
fn name_origin(path: &Path, text: &str, overrides: &[String]) -> String {
    if let Some(o) = overrides.iter().rev().find(|o| o.starts_with("name=")) {
        return format!("--set {}", o.escape_debug());
    }
    match text.lines().position(|l| l.starts_with("name:")) {
        Some(i) => format!("{}, line {}", path.display(), i + 1),
        None => path.display().to_string(),
    }
}

fn validate(f: &ExperimentFile) -> anyhow::Result<()> {
    if let Some(why) = name_problem(&f.name) {
        bail!("name '{}': {why}", f.name.escape_debug());
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
    if f.audit.k < 2 {
        bail!("audit.k must be at least 2, got {}", f.audit.k);
    }
    if f.audit.taps.as_ref().is_some_and(Vec::is_empty) {
        bail!("audit.taps is empty: name at least one layer (e.g. [layer3]), or leave it out for the architecture's default");
    }
    if f.audit.probes == 0 || f.audit.repeats == 0 {
        bail!(
            "audit.probes and audit.repeats must be at least 1, got {} and {}",
            f.audit.probes,
            f.audit.repeats
        );
    }
    if f.audit.resolution.is_some_and(|r| r < 1) {
        bail!(
            "audit.resolution must be at least 1, got {:?}",
            f.audit.resolution
        );
    }
    if f.model.registers < 0 {
        bail!(
            "model.registers must be 0 or more, got {}",
            f.model.registers
        );
    }
    Ok(())
}

/// `train.optimizer.lr=0.1` -> sets that key (the value is parsed as YAML).
pub(crate) fn apply_override(root: &mut yaml_serde::Value, assignment: &str) -> anyhow::Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .with_context(|| format!("--set {assignment}: expected key.path=value"))?;
    let value: yaml_serde::Value = yaml_serde::from_str(raw)
        .with_context(|| format!("--set {assignment}: cannot parse the value"))?;
    set_path(root, key, value).with_context(|| format!("--set {assignment}"))
}

/// Sets the dotted path `key` (`watermark.size`) of a YAML value, creating
/// the sections on the way.
pub(crate) fn set_path(
    root: &mut yaml_serde::Value,
    key: &str,
    value: yaml_serde::Value,
) -> anyhow::Result<()> {
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if node.is_null() {
            *node = yaml_serde::Value::Mapping(Default::default());
        }
        let yaml_serde::Value::Mapping(map) = node else {
            bail!("'{}' is not a section", parts[..i].join("."));
        };
        // A key written with its dots (`watermark.size:` in a grid) is set as it is.
        let rest = yaml_serde::Value::String(parts[i..].join("."));
        if i + 1 < parts.len() && map.contains_key(&rest) {
            map.insert(rest, value);
            return Ok(());
        }
        let k = yaml_serde::Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map.entry(k).or_insert(yaml_serde::Value::Null);
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
    fn settings_that_used_to_panic_are_errors_naming_the_key() {
        let p = write(MINIMAL);
        for (assignment, key) in [
            ("audit.taps=[]", "audit.taps"),
            ("audit.probes=0", "audit.probes"),
            ("audit.repeats=0", "audit.repeats"),
            ("audit.resolution=0", "audit.resolution"),
            ("model.registers=-1", "model.registers"),
        ] {
            let err = format!(
                "{:#}",
                Experiment::load(&p, &[assignment.into()]).unwrap_err()
            );
            assert!(err.contains(key), "{assignment}: {err}");
        }
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

    #[test]
    fn any_field_is_an_axis_with_readable_ids() {
        let text = MINIMAL.replace(
            "grid:\n  augment: [false, true]\n  watermark: [false, true]\n  seed: [0, 1]\n",
            "grid:\n  watermark: [true]\n  watermark.size: [0.05, 0.1]\n  watermark.p: [0.6, 1.0]\n  seed: [0, 1]\n",
        );
        let e = Experiment::load(&write(&text), &[]).unwrap();
        let ids: Vec<String> = e.runs().iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids.len(), 8);
        assert_eq!(ids[0], "resnet18-aug0-wm1-size0.05-p0.6-s0");
        assert_eq!(ids[1], "resnet18-aug0-wm1-size0.05-p0.6-s1");
        assert_eq!(ids[7], "resnet18-aug0-wm1-size0.1-p1.0-s1");
        let runs = e.runs();
        assert_eq!(
            (runs[7].watermark_spec.size, runs[7].watermark_spec.p),
            (0.1, 1.0)
        );
        assert_eq!(runs[7].regime(), "resnet18-aug0-wm1-size0.1-p1.0");
        assert_eq!(e.points()[7].1, ["watermark.size=0.1", "watermark.p=1.0"]);
        // --set still overrides other fields, and a grid axis through grid.*.
        let e = Experiment::load(
            &write(&text),
            &[
                "train.optimizer.lr=0.5".into(),
                "grid.watermark.size=[0.2]".into(),
            ],
        )
        .unwrap();
        assert_eq!(e.runs().len(), 4);
        assert_eq!(e.runs()[0].id, "resnet18-aug0-wm1-size0.2-p0.6-s0");
        assert_eq!(e.runs()[0].train.optimizer.lr, 0.5);
        // ... but not a field the grid varies.
        let err = format!(
            "{:#}",
            Experiment::load(&write(&text), &["watermark.size=0.3".into()]).unwrap_err()
        );
        assert!(
            err.contains("watermark.size") && err.contains("grid"),
            "{err}"
        );
    }

    #[test]
    fn named_variants_bundle_overrides_and_axes() {
        let text = MINIMAL.replace(
            "grid:\n  augment: [false, true]\n  watermark: [false, true]\n  seed: [0, 1]\n",
            "grid:\n  seed: [0, 1]\n  variants:\n    clean: {watermark: false, seed: [0, 1, 2]}\n    red-box:\n      watermark: true\n      watermark.colour: [255, 0, 0]\n    partial:\n      watermark: true\n      grid: {watermark.p: [0.6, 0.8]}\n",
        );
        let e = Experiment::load(&write(&text), &[]).unwrap();
        let ids: Vec<String> = e.runs().iter().map(|r| r.id.clone()).collect();
        assert_eq!(
            ids,
            [
                "resnet18-clean-aug0-wm0-s0",
                "resnet18-clean-aug0-wm0-s1",
                "resnet18-clean-aug0-wm0-s2",
                "resnet18-red-box-aug0-wm1-s0",
                "resnet18-red-box-aug0-wm1-s1",
                "resnet18-partial-aug0-wm1-p0.6-s0",
                "resnet18-partial-aug0-wm1-p0.6-s1",
                "resnet18-partial-aug0-wm1-p0.8-s0",
                "resnet18-partial-aug0-wm1-p0.8-s1",
            ]
        );
        let runs = e.runs();
        assert_eq!(runs[3].watermark_spec.colour, [255, 0, 0]);
        assert_eq!(runs[0].watermark_spec.colour, [0, 0, 0]);
        assert_eq!(runs[7].watermark_spec.p, 0.8);
        assert_eq!(runs[3].variant.as_deref(), Some("red-box"));
        assert_eq!(runs[3].regime(), "resnet18-red-box-aug0-wm1");
        // A run.yaml of a variant round-trips.
        let back: RunSpec =
            yaml_serde::from_str(&yaml_serde::to_string(&runs[7]).unwrap()).unwrap();
        assert_eq!(back, runs[7]);
        // A bad value in a variant names the variant and the key.
        let bad = text.replace("watermark.colour: [255, 0, 0]", "watermark.size: 3");
        let err = format!("{:#}", Experiment::load(&write(&bad), &[]).unwrap_err());
        assert!(
            err.contains("red-box") && err.contains("watermark.size") && err.contains("line 15"),
            "{err}"
        );
    }

    #[test]
    fn grid_mistakes_name_the_key_and_the_line() {
        let axis = |grid: &str| {
            MINIMAL.replace(
                "grid:\n  augment: [false, true]\n  watermark: [false, true]\n  seed: [0, 1]\n",
                grid,
            )
        };
        let err = format!(
            "{:#}",
            Experiment::load(&write(&axis("grid:\n  watermark.sise: [0.1, 0.2]\n")), &[])
                .unwrap_err()
        );
        assert!(
            err.contains("watermark.sise") && err.contains("sise") && err.contains("line 12"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Experiment::load(
                &write(&axis("grid:\n  seed: [0]\n  watermark.size: 0.1\n")),
                &[]
            )
            .unwrap_err()
        );
        assert!(
            err.contains("watermark.size")
                && err.contains("line 13")
                && err.contains("lists its values"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Experiment::load(&write(&axis("grid:\n  seed: []\n")), &[]).unwrap_err()
        );
        assert!(
            err.contains("seed") && err.contains("at least one"),
            "{err}"
        );
        // Two values that shorten to the same id.
        let err = format!(
            "{:#}",
            Experiment::load(&write(&axis("grid:\n  dataset.root: [a/x, b/x]\n")), &[])
                .unwrap_err()
        );
        assert!(err.contains("run id") && err.contains("root"), "{err}");
    }

    #[test]
    fn the_shipped_zoo_is_a_zoo() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/zoo.yaml");
        let e = Experiment::load(&path, &[]).unwrap();
        let runs = e.runs();
        // Zoo v2: at least 160 runs, 40% of them on real X-rays, and
        // families of every kind: varied appearance, both-class rates,
        // colour-only and global artefacts.
        assert!(runs.len() >= 160, "{} runs", runs.len());
        let real = runs
            .iter()
            .filter(|r| r.dataset.kind == DatasetKind::ChestXray)
            .count();
        assert!(
            5 * real >= 2 * runs.len(),
            "{real} of {} runs on real images",
            runs.len()
        );
        use crate::data::watermark::Shape;
        let wm: Vec<&RunSpec> = runs.iter().filter(|r| r.watermark).collect();
        assert!(wm.iter().any(
            |r| r.watermark_spec.vary.scale.is_some() && r.watermark_spec.shape == Shape::Text
        ));
        assert!(wm.iter().any(
            |r| r.watermark_spec.p_other > 0.0 && r.watermark_spec.p_other < r.watermark_spec.p
        ));
        for global in [Shape::Tint, Shape::Noise, Shape::Border, Shape::Blur] {
            assert!(
                wm.iter().any(|r| r.watermark_spec.shape == global),
                "{global:?}"
            );
        }
        let variants: std::collections::BTreeSet<_> =
            runs.iter().filter_map(|r| r.variant.clone()).collect();
        let correlated: std::collections::BTreeSet<_> = runs
            .iter()
            .filter(|r| r.watermark && r.watermark_spec.p_other == 0.0)
            .filter_map(|r| r.variant.clone())
            .collect();
        assert!(correlated.len() >= 4, "{correlated:?}");
        assert!(variants.contains("clean") && variants.contains("uncorrelated"));
        // Ids are unique and every artefact renders.
        let ids: std::collections::BTreeSet<_> = runs.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids.len(), runs.len());
        for r in &runs {
            let mut spec = r.watermark_spec.clone();
            spec.patch = spec
                .patch
                .map(|p| Path::new(env!("CARGO_MANIFEST_DIR")).join(p));
            crate::data::watermark::Artefact::new(&spec, r.dataset.image_size).unwrap();
        }
    }

    #[test]
    fn the_demo_runs_on_the_shipped_real_sample() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let e = Experiment::load(&manifest.join("experiments/demo.yaml"), &[]).unwrap();
        let runs = e.runs();
        assert_eq!(runs.len(), 8);
        for r in &runs {
            assert_eq!(r.dataset.kind, DatasetKind::ChestXray);
            let root = manifest.join(r.dataset.root.as_ref().unwrap());
            assert!(root.join("train/NORMAL").is_dir(), "{}", root.display());
        }
        let synthetic =
            Experiment::load(&manifest.join("experiments/demo-synthetic.yaml"), &[]).unwrap();
        assert_eq!(synthetic.runs()[0].dataset.kind, DatasetKind::Synthetic);
        assert_eq!(
            synthetic.runs()[0].id,
            runs[0].id,
            "the same grid, the same ids"
        );
    }
}
