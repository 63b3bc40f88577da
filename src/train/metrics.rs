//! Per-epoch metrics: one JSON line each in metrics.jsonl, and TensorBoard scalars.
use std::path::Path;

use crate::run_folder::EpochMetrics;

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
