//! The run folder: the contract between `train` and `audit` (DESIGN.md).
//!
//! `run.yaml` (the resolved run), `model.safetensors` (final weights,
//! torchvision/timm names), `last-NNNN.safetensors` + `state-NNNN.safetensors`
//! (weights and optimiser buffers after epoch NNNN) named by `state.json`,
//! `metrics.jsonl` (one line per epoch), TensorBoard event files, and
//! `COMPLETE`, written last. Every file is written to a temporary name,
//! fsynced and renamed into place (`io`).
//!
//! An epoch has one commit point: its files are written under names of their
//! own, then `state.json`, the manifest that names them with their sizes and
//! hashes, is renamed into place, and only then are the previous epoch's files
//! removed. A kill at any moment leaves a manifest whose files are all there,
//! and resume trusts only what it names, verified. `COMPLETE` records the
//! final weights' and metrics' hashes; `train` and `audit` refuse a run whose
//! files no longer match. `.lock` is held by the one process working in the folder.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::config::RunSpec;
use crate::io::{write_atomic, write_atomic_with, FileDigest};
use crate::lock::Lock;

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

/// Progress saved after every epoch: the manifest `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeState {
    /// Epochs finished (the next epoch to run is this number).
    pub epochs_done: usize,
    pub step: i64,
    pub seed: u64,
    /// Images skipped because they could not be decoded.
    pub skipped_files: usize,
    /// The epoch's files (weights, optimiser state), by name, with their
    /// sizes and hashes: resume reads only these, verified.
    #[serde(default)]
    pub files: BTreeMap<String, FileDigest>,
    /// The first `epochs_done` lines of metrics.jsonl, as bytes and a hash
    /// (the file may hold one line more: the epoch a kill interrupted).
    #[serde(default)]
    pub metrics: Option<FileDigest>,
}

/// Where a run stands, as its folder shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `COMPLETE` is there.
    Complete,
    /// Another process holds the folder.
    Held,
    /// Started (run.yaml written), not finished, not held.
    Unfinished,
    /// Nothing written yet.
    New,
}

/// What `COMPLETE` records: the final files' sizes and hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completion {
    pub files: BTreeMap<String, FileDigest>,
}

/// The files `COMPLETE` vouches for.
const FINAL_FILES: [&str; 2] = ["model.safetensors", "metrics.jsonl"];

impl RunFolder {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn run_yaml(&self) -> PathBuf {
        self.dir.join("run.yaml")
    }
    /// The run's settings, read from run.yaml (names checked as an
    /// experiment's are).
    pub fn spec(&self) -> anyhow::Result<RunSpec> {
        RunSpec::read(&self.run_yaml())
    }
    pub fn model(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    /// The weights after `epoch` (1-based).
    pub fn epoch_weights(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("last-{epoch:04}.safetensors"))
    }
    /// The optimiser's buffers after `epoch` (1-based).
    pub fn epoch_optimizer(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("state-{epoch:04}.safetensors"))
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

    /// Written when training the run ends in an error (its message), for
    /// `status`; removed when the run is trained again.
    pub fn failed(&self) -> PathBuf {
        self.dir.join("FAILED")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.dir.join(".lock")
    }

    pub fn is_complete(&self) -> bool {
        self.complete().is_file()
    }

    /// This folder's lock, or `None` when another process holds it. Holding
    /// it, the temporary files of dead writers are removed.
    pub fn try_lock(&self) -> anyhow::Result<Option<Lock>> {
        let lock = Lock::try_acquire(&self.lock_file())?;
        if lock.is_some() {
            crate::io::remove_stale_temps(&self.dir, "");
        }
        Ok(lock)
    }

    /// This folder's lock, waiting while another process holds it, at most
    /// `limit` when given (then `None`).
    pub fn lock_within(
        &self,
        waiting: impl FnOnce(&str),
        limit: Option<std::time::Duration>,
    ) -> anyhow::Result<Option<Lock>> {
        let lock = Lock::acquire_within(&self.lock_file(), waiting, limit)?;
        if lock.is_some() {
            crate::io::remove_stale_temps(&self.dir, "");
        }
        Ok(lock)
    }

    /// Checks the final files against `COMPLETE`; returns the weights' digest
    /// (`None` for a run completed before digests were recorded, which is
    /// taken as it is).
    pub fn verify_complete(&self) -> anyhow::Result<Option<FileDigest>> {
        let path = self.complete();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        let done: Completion = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a completion record nave-lab can read; delete it to finish the run again",
                path.display()
            )
        })?;
        for name in FINAL_FILES {
            let recorded = done.files.get(name).with_context(|| {
                format!(
                    "{} does not record {name}; delete it to finish the run again",
                    path.display()
                )
            })?;
            recorded.check(&self.dir.join(name), &path).with_context(|| {
                format!(
                    "{} is not the run that finished: restore the file, or retrain (delete {} and the run resumes from its last epoch)",
                    self.dir.display(),
                    path.display()
                )
            })?;
        }
        Ok(done.files.get("model.safetensors").cloned())
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
    /// The progress saved by the last finished epoch, every file it names
    /// verified; `None` when no epoch finished.
    pub fn read_state(&self) -> anyhow::Result<Option<ResumeState>> {
        let path = self.state_json();
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let state: ResumeState = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid resume state", path.display()))?;
        let expected = [
            self.epoch_weights(state.epochs_done),
            self.epoch_optimizer(state.epochs_done),
        ];
        let names: Vec<String> = expected
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        if names.iter().any(|n| !state.files.contains_key(n)) || state.metrics.is_none() {
            anyhow::bail!(
                "{} does not name this epoch's files (written by an older nave-lab?): delete {} to retrain the run from the start",
                path.display(),
                self.dir.display()
            );
        }
        let fix = || {
            format!(
                "resuming {}: delete the folder to retrain the run from the start",
                self.dir.display()
            )
        };
        for (name, digest) in &state.files {
            digest
                .check(&self.dir.join(name), &path)
                .with_context(fix)?;
        }
        let lines = self.metrics_text(state.epochs_done);
        if Some(FileDigest::of_bytes(lines.as_bytes())) != state.metrics {
            return Err(anyhow::anyhow!(
                "{}: its first {} line(s) are not those {} recorded",
                self.metrics().display(),
                state.epochs_done,
                path.display()
            ))
            .with_context(fix);
        }
        Ok(Some(state))
    }

    /// The optimiser's buffers saved with `state`.
    pub fn read_optimizer_state(
        &self,
        state: &ResumeState,
    ) -> anyhow::Result<HashMap<String, Tensor>> {
        let path = self.epoch_optimizer(state.epochs_done);
        Ok(Tensor::read_safetensors(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .into_iter()
            .collect())
    }

    /// Saves the end-of-epoch state (see the module's comment): the epoch's
    /// files under their own names, then the manifest, then the previous
    /// epoch's files are removed.
    pub fn save_epoch(
        &self,
        state: &mut ResumeState,
        weights: &[(String, Tensor)],
        optimizer: &[(String, Tensor)],
        metrics_lines: &[String],
    ) -> anyhow::Result<()> {
        let epoch = state.epochs_done;
        let mut files = BTreeMap::new();
        for (path, tensors) in [
            (self.epoch_weights(epoch), weights),
            (self.epoch_optimizer(epoch), optimizer),
        ] {
            write_tensors(&path, tensors)?;
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(name, FileDigest::of_file(&path)?);
        }
        crate::failpoint::hit("epoch-files");
        let mut text = metrics_lines.join("\n");
        text.push('\n');
        write_atomic(&self.metrics(), text.as_bytes())?;
        crate::failpoint::hit("epoch-metrics");
        state.files = files;
        state.metrics = Some(FileDigest::of_bytes(text.as_bytes()));
        write_atomic(
            &self.state_json(),
            serde_json::to_string_pretty(state)?.as_bytes(),
        )?;
        crate::failpoint::hit("epoch-manifest");
        self.remove_unnamed_epoch_files(state);
        Ok(())
    }

    /// Removes epoch files the manifest does not name (the previous epoch's,
    /// or those of an epoch a kill interrupted before its commit).
    fn remove_unnamed_epoch_files(&self, state: &ResumeState) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_epoch_file = (name.starts_with("last-") || name.starts_with("state-"))
                && name.ends_with(".safetensors");
            if is_epoch_file && !state.files.contains_key(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The first `epochs` lines of metrics.jsonl, each ending in a newline.
    fn metrics_text(&self, epochs: usize) -> String {
        let lines = self.read_metrics(epochs);
        let mut text = lines.join("\n");
        if !lines.is_empty() {
            text.push('\n');
        }
        text
    }

    /// The figures of the first `epochs` epochs (fewer when metrics.jsonl
    /// is shorter; a line that does not parse is left out). Every reader of
    /// metrics.jsonl goes through here.
    pub fn epoch_metrics(&self, epochs: usize) -> Vec<EpochMetrics> {
        self.read_metrics(epochs)
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The last epoch's figures in metrics.jsonl.
    pub fn last_epoch(&self) -> Option<EpochMetrics> {
        self.epoch_metrics(usize::MAX).pop()
    }

    /// Where the run stands.
    pub fn stage(&self) -> Stage {
        if self.is_complete() {
            Stage::Complete
        } else if self.is_held_elsewhere() {
            Stage::Held
        } else if self.run_yaml().is_file() {
            Stage::Unfinished
        } else {
            Stage::New
        }
    }

    /// Whether another process holds this folder's lock (training in it,
    /// auditing it). Probing takes the lock for an instant when it is free.
    pub fn is_held_elsewhere(&self) -> bool {
        self.lock_file().is_file() && matches!(Lock::try_acquire(&self.lock_file()), Ok(None))
    }

    /// Metrics lines of the epochs already done, as written (resume hashes
    /// them).
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

    /// Marks the run finished: `COMPLETE` records the final files' digests.
    pub fn mark_complete(&self) -> anyhow::Result<()> {
        let files = FINAL_FILES
            .iter()
            .map(|name| Ok((name.to_string(), FileDigest::of_file(&self.dir.join(name))?)))
            .collect::<anyhow::Result<_>>()?;
        let record = Completion { files };
        write_atomic(
            &self.complete(),
            serde_json::to_string_pretty(&record)?.as_bytes(),
        )
    }
}

/// Writes named tensors as safetensors (on the CPU), atomically.
pub fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> anyhow::Result<()> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.to_device(tch::Device::Cpu).contiguous()))
        .collect();
    let refs: Vec<(&str, &Tensor)> = cpu.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_atomic_with(path, |tmp| {
        Tensor::write_safetensors(&refs, tmp).with_context(|| format!("writing {}", path.display()))
    })
}
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

/// Every run folder under `dir` (one level, or `dir` itself), sorted.
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
