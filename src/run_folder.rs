//! The run folder: the contract between `train` and `audit` (DESIGN.md).
//!
//! `run.yaml` (the resolved run), `model.safetensors` (final weights,
//! torchvision/timm names), `last.safetensors` + `state.safetensors` +
//! `state.json` (what resume needs), `metrics.jsonl` (one line per epoch),
//! TensorBoard event files, and `COMPLETE`, written last. Every file is written
//! to a temporary name and renamed into place.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::config::RunSpec;
use crate::io::{write_atomic, write_atomic_with};

/// One line of metrics.jsonl: an epoch's figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub lr: f64,
    /// Test accuracy per watermark variant (clean, as-train, flipped).
    pub test_accuracy: BTreeMap<String, f64>,
    pub test_loss: f64,
    pub seconds: f64,
    pub images_per_second: f64,
    /// The device the epoch trained on (cpu, cuda:0 ...).
    #[serde(default)]
    pub device: String,
}

pub struct RunFolder {
    pub dir: PathBuf,
}

/// Progress saved after every epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeState {
    /// Epochs finished (the next epoch to run is this number).
    pub epochs_done: usize,
    pub step: i64,
    pub seed: u64,
    /// Images skipped because they could not be decoded.
    pub skipped_files: usize,
}

impl RunFolder {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn run_yaml(&self) -> PathBuf {
        self.dir.join("run.yaml")
    }
    pub fn model(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    pub fn last(&self) -> PathBuf {
        self.dir.join("last.safetensors")
    }
    pub fn state_tensors(&self) -> PathBuf {
        self.dir.join("state.safetensors")
    }
    pub fn state_json(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }
    pub fn complete(&self) -> PathBuf {
        self.dir.join("COMPLETE")
    }

    pub fn is_complete(&self) -> bool {
        self.complete().is_file()
    }

    pub fn create(&self, spec: &RunSpec) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        if self.run_yaml().is_file() {
            return self.check_settings(spec);
        }
        write_atomic(&self.run_yaml(), yaml_serde::to_string(spec)?.as_bytes())
    }

    /// Compares the run this folder holds with `spec`. Any difference in how
    /// it trains is an error that names the keys; a new `audit` block alone
    /// is written into run.yaml, since the audit reads it from there.
    pub fn check_settings(&self, spec: &RunSpec) -> anyhow::Result<()> {
        let path = self.run_yaml();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        // Through RunSpec and back, so that a field added since the run was
        // written compares as its default rather than as a difference.
        let held: RunSpec = yaml_serde::from_str(&text)
            .with_context(|| format!("{}: not a run.yaml nave-lab can read", path.display()))?;
        let held = yaml_serde::to_value(&held)?;
        let wanted = yaml_serde::to_value(spec)?;
        let mut differences = Vec::new();
        diff_values("", &held, &wanted, &mut differences);
        let (audit, training): (Vec<_>, Vec<_>) = differences
            .into_iter()
            .partition(|d| d.starts_with("audit.") || d.starts_with("audit:"));
        if !training.is_empty() {
            anyhow::bail!(
                "{} holds a run trained with other settings ({}): the experiment changed since; \
                 move the folder away (`make clean-runs` for the demo) or train under another name (--set name=...)",
                self.dir.display(),
                training.join(", ")
            );
        }
        if !audit.is_empty() {
            write_atomic(&path, yaml_serde::to_string(spec)?.as_bytes())?;
        }
        Ok(())
    }
    pub fn read_state(&self) -> anyhow::Result<Option<ResumeState>> {
        let path = self.state_json();
        if !path.is_file() || !self.last().is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{}: not a valid resume state", path.display())
        })?))
    }

    pub fn read_optimizer_state(&self) -> anyhow::Result<HashMap<String, Tensor>> {
        let path = self.state_tensors();
        if !path.is_file() {
            return Ok(HashMap::new());
        }
        Ok(Tensor::read_safetensors(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .into_iter()
            .collect())
    }

    /// Saves the end-of-epoch state. The weights and buffers go first, the
    /// small state.json last: a kill in between leaves the previous
    /// state.json, whose epoch is replayed (the weights of a later epoch are
    /// then overwritten by that replay, which is deterministic).
    pub fn save_epoch(
        &self,
        state: &ResumeState,
        optimizer: &[(String, Tensor)],
        metrics_lines: &[String],
    ) -> anyhow::Result<()> {
        let cpu: Vec<(String, Tensor)> = optimizer
            .iter()
            .map(|(n, t)| (n.clone(), t.to_device(tch::Device::Cpu)))
            .collect();
        let refs: Vec<(&str, &Tensor)> = cpu.iter().map(|(n, t)| (n.as_str(), t)).collect();
        write_atomic_with(&self.state_tensors(), |tmp| {
            Ok(Tensor::write_safetensors(&refs, tmp)?)
        })?;
        let mut text = metrics_lines.join("\n");
        text.push('\n');
        write_atomic(&self.metrics(), text.as_bytes())?;
        write_atomic(
            &self.state_json(),
            serde_json::to_string_pretty(state)?.as_bytes(),
        )
    }

    /// Metrics lines of the epochs already done.
    pub fn read_metrics(&self, epochs_done: usize) -> Vec<String> {
        std::fs::read_to_string(self.metrics())
            .map(|t| {
                t.lines()
                    .filter(|l| !l.trim().is_empty())
                    .take(epochs_done)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn mark_complete(&self) -> anyhow::Result<()> {
        write_atomic(&self.complete(), b"")
    }
}

/// Every run folder under `dir` (one level, or `dir` itself), sorted.
/// The keys (dotted paths) where `a` and `b` differ, as "key: a -> b".
fn diff_values(prefix: &str, a: &yaml_serde::Value, b: &yaml_serde::Value, out: &mut Vec<String>) {
    use yaml_serde::Value;
    // A value on one line, as YAML writes it.
    let show = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => yaml_serde::to_string(other)
            .unwrap_or_default()
            .trim()
            .replace('\n', " "),
    };
    if let (Value::Mapping(ma), Value::Mapping(mb)) = (a, b) {
        let only_in_b = mb.keys().filter(|k| !ma.contains_key(*k));
        for key in ma.keys().chain(only_in_b) {
            let path = if prefix.is_empty() {
                show(key)
            } else {
                format!("{prefix}.{}", show(key))
            };
            let (va, vb) = (
                ma.get(key).unwrap_or(&Value::Null),
                mb.get(key).unwrap_or(&Value::Null),
            );
            diff_values(&path, va, vb, out);
        }
    } else if a != b {
        out.push(format!("{prefix}: {} -> {}", show(a), show(b)));
    }
}

pub fn find_runs(dir: &Path) -> anyhow::Result<Vec<RunFolder>> {
    if dir.join("run.yaml").is_file() {
        return Ok(vec![RunFolder::new(dir)]);
    }
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut runs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("run.yaml").is_file())
        .collect();
    runs.sort();
    Ok(runs.into_iter().map(RunFolder::new).collect())
}
