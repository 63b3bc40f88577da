//! Per-epoch metrics: one JSON line each in metrics.jsonl, and TensorBoard scalars.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crate::run_folder::EpochMetrics;

/// TensorBoard scalars, written with tensorboard-rs (its files are read by TensorBoard's own reader).
pub struct Board {
    writer: tensorboard_rs::summary_writer::SummaryWriter,
    dir: PathBuf,
}

/// Runs `f`, turning a panic into an error: tensorboard-rs panics when a
/// write fails (a full disk, a quota), and a panic must not end a run
/// without saying which file failed.
fn catching<T>(dir: &Path, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|payload| {
        let reason = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown failure".to_string());
        anyhow::anyhow!(
            "writing TensorBoard events in {} failed (disk full?): {reason}",
            dir.display()
        )
    })
}

impl Board {
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        let writer = catching(dir, || {
            tensorboard_rs::summary_writer::SummaryWriter::new(dir)
        })?;
        Ok(Self {
            writer,
            dir: dir.to_path_buf(),
        })
    }

    pub fn write(&mut self, m: &EpochMetrics) -> anyhow::Result<()> {
        let dir = self.dir.clone();
        catching(&dir, || self.add(m))
    }

    fn add(&mut self, m: &EpochMetrics) {
        let step = m.epoch;
        self.writer
            .add_scalar("train/loss", m.train_loss as f32, step);
        self.writer
            .add_scalar("train/accuracy", m.train_accuracy as f32, step);
        self.writer.add_scalar("train/lr", m.lr as f32, step);
        self.writer
            .add_scalar("test/loss", m.test_loss as f32, step);
        for (variant, acc) in &m.test_accuracy {
            self.writer
                .add_scalar(&format!("test/accuracy_{variant}"), *acc as f32, step);
        }
        self.writer.flush();
    }
}
