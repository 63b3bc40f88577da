//! Per-epoch metrics: one JSON line each in metrics.jsonl, and TensorBoard scalars.
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

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

/// TensorBoard scalars, written with tensorboard-rs (its files are read by TensorBoard's own reader).
pub struct Board {
    writer: tensorboard_rs::summary_writer::SummaryWriter,
}

impl Board {
    pub fn new(dir: &Path) -> Self {
        Self {
            writer: tensorboard_rs::summary_writer::SummaryWriter::new(dir),
        }
    }

    pub fn write(&mut self, m: &EpochMetrics) {
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
