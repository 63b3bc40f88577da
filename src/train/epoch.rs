//! One epoch of a run: the training steps over shuffled (and, in
//! augmentation regimes, augmented) batches, then the test accuracy in the
//! three watermark variants.
use std::collections::BTreeMap;

use anyhow::bail;
use tch::{Device, Kind, Tensor};

use super::optim::{learning_rate, Optimizer};
use super::{amp, evaluate};
use crate::config::RunSpec;
use crate::data::loader::{epoch_batches, BatchSpec};
use crate::data::watermark::Variant;
use crate::models::memory_format::to_channels_last;
use crate::models::Model;

/// Steps between reads of the running loss (each read waits for the device).
const SYNC_EVERY: usize = 20;

/// What one epoch's training needs.
pub(super) struct Training<'a> {
    pub spec: &'a RunSpec,
    pub model: &'a Model,
    pub optimizer: &'a mut Optimizer,
    pub images: &'a Tensor,
    pub labels: &'a [i64],
    pub autocast: bool,
    /// The model is channels-last, and so are its batches.
    pub channels_last: bool,
    pub device: Device,
}

/// Sums over an epoch's training steps.
pub(super) struct Totals {
    pub loss_sum: f64,
    pub correct: i64,
    pub seen: usize,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
}

impl Training<'_> {
    /// Trains epoch `epoch` (0-based); `step` counts optimiser steps over the run.
    pub fn epoch(&mut self, epoch: usize, step: &mut i64) -> anyhow::Result<Totals> {
        let spec = self.spec;
        let per_epoch = self.labels.len().div_ceil(spec.train.batch_size);
        let batches = BatchSpec {
            batch_size: spec.train.batch_size,
            shuffle: true,
            augment: spec.augment.then(|| spec.augment_spec.clone()),
            seed: spec.seed,
            device: self.device,
            prefetch: 3,
        };
        let started = std::time::Instant::now();
        let bar = crate::ui::progress_bar(
            per_epoch as u64,
            &format!("{} {}/{}", spec.id, epoch + 1, spec.train.epochs),
        );
        // Running sums stay on the device; reading them forces a sync, so
        // that happens only every few steps (and at the end of the epoch).
        let loss_sum = Tensor::zeros([], (Kind::Float, self.device));
        let correct = Tensor::zeros([], (Kind::Int64, self.device));
        let mut seen = 0usize;
        let mut lr = spec.train.optimizer.lr;
        for (i, batch) in epoch_batches(self.images, self.labels, &batches, epoch).enumerate() {
            lr = learning_rate(
                spec.train.optimizer.lr,
                &spec.train.schedule,
                *step as usize,
                per_epoch,
                per_epoch * spec.train.epochs,
            );
            let images = if self.channels_last {
                to_channels_last(&batch.images)
            } else {
                batch.images.shallow_clone()
            };
            let logits = amp::with_bf16(self.autocast, || self.model.forward_t(&images, true))?
                .to_kind(Kind::Float);
            let loss = logits.cross_entropy_loss(
                &batch.labels,
                None::<Tensor>,
                tch::Reduction::Mean,
                -100,
                spec.train.label_smoothing,
            );
            self.optimizer.zero_grad()?;
            loss.backward();
            self.optimizer.step(lr)?;
            *step += 1;
            let b = batch.indices.len();
            let _ = tch::no_grad(|| {
                let _ = loss_sum.shallow_clone().g_add_(&(loss.detach() * b as f64));
                let hits = logits
                    .argmax(-1, false)
                    .eq_tensor(&batch.labels)
                    .sum(Kind::Int64);
                correct.shallow_clone().g_add_(&hits)
            });
            seen += b;
            bar.inc(1);
            // A termination signal ends the epoch after this step, unless
            // it was the last: then the epoch is finished and saved first.
            if let Some(stopped) = crate::signals::received() {
                if i + 1 < per_epoch {
                    bar.finish_and_clear();
                    return Err(anyhow::Error::new(stopped).context(format!(
                        "{}: epoch {} stopped after its step {} of {per_epoch}; its progress is dropped and the {epoch} epoch(s) before it are saved; rerun the same command to resume",
                        spec.id,
                        epoch + 1,
                        i + 1
                    )));
                }
            }
            if i % SYNC_EVERY == SYNC_EVERY - 1 || i + 1 == per_epoch {
                let mean_loss = loss_sum.double_value(&[]) / seen as f64;
                if !mean_loss.is_finite() {
                    bail!(
                        "{}: the training loss became {mean_loss} in epoch {} by step {}; lower train.optimizer.lr (now {}) or check the data",
                        spec.id,
                        epoch + 1,
                        step,
                        spec.train.optimizer.lr
                    );
                }
                bar.set_prefix(format!(
                    "loss {:.3} acc {:.3} {:.0} img/s",
                    mean_loss,
                    correct.int64_value(&[]) as f64 / seen as f64,
                    seen as f64 / started.elapsed().as_secs_f64()
                ));
            }
        }
        bar.finish_and_clear();
        Ok(Totals {
            loss_sum: loss_sum.double_value(&[]),
            correct: correct.int64_value(&[]),
            seen,
            lr,
        })
    }
}

/// Test accuracy per watermark variant, and the clean variant's mean loss.
pub(super) fn test(
    model: &Model,
    test_sets: &[(Variant, Tensor)],
    labels: &[i64],
    spec: &RunSpec,
    autocast: bool,
    device: Device,
) -> anyhow::Result<(BTreeMap<String, f64>, f64)> {
    let mut accuracy = BTreeMap::new();
    let mut clean_loss = 0.0;
    for (variant, images) in test_sets {
        let batch = spec.train.batch_size * 2;
        let (acc, loss) = evaluate(model, images, labels, batch, device, autocast)?;
        if *variant == Variant::Clean {
            clean_loss = loss;
        }
        accuracy.insert(variant.as_str().to_string(), acc);
    }
    Ok((accuracy, clean_loss))
}

/// An error when any weight is NaN or infinite, or the epoch's test loss is:
/// the training loss is checked before each step, so the update of an
/// epoch's last step is checked here, before anything of the epoch is saved
/// (and a run is never marked complete with diverged weights).
pub(super) fn ensure_finite(
    spec: &RunSpec,
    model: &Model,
    epoch: usize,
    test_loss: f64,
) -> anyhow::Result<()> {
    if !test_loss.is_finite() {
        bail!(
            "{}: the test loss became {test_loss} after epoch {}: the weights diverged in its last steps; nothing of this epoch is saved. Lower train.optimizer.lr (now {}) or check the data",
            spec.id,
            epoch + 1,
            spec.train.optimizer.lr
        );
    }
    let _guard = tch::no_grad_guard();
    for (name, t) in model.trainable() {
        if t.isfinite().all().int64_value(&[]) == 0 {
            bail!(
                "{}: weight {name} is not finite after epoch {}; nothing of this epoch is saved. Lower train.optimizer.lr (now {}) or check the data",
                spec.id,
                epoch + 1,
                spec.train.optimizer.lr
            );
        }
    }
    Ok(())
}
