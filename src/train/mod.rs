//! `nave-lab train`: every run of an experiment's grid, resumably.
//!
//! Per run: seed libtorch, stamp the watermark on the training images of the
//! target class (watermark regimes), build the model, then per epoch train on
//! shuffled (and, in augmentation regimes, augmented) batches, evaluate on the
//! test split in the three watermark variants, and save the resume state. The
//! final weights and `COMPLETE` are written last.
pub mod amp;
pub mod metrics;
pub mod optim;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use tch::{Device, Kind, Tensor};

use crate::config::RunSpec;
use crate::data::loader::{epoch_batches, normalize_u8, BatchSpec};
use crate::data::store::{training_images, DataStore, LoadedData};
use crate::data::watermark::{Artefact, Variant};
use crate::data::{Split, SplitData};
use crate::models::Model;
use crate::run_folder::{EpochMetrics, ResumeState, RunFolder};
use metrics::Board;
use optim::{learning_rate, Optimizer};

/// Steps between reads of the running loss (each read waits for the device).
const SYNC_EVERY: usize = 20;

/// Test images of one variant (uint8, stamped with the run's artefact).
pub fn test_variant(
    spec: &RunSpec,
    artefact: &Artefact,
    test: &SplitData,
    variant: Variant,
) -> anyhow::Result<Tensor> {
    let target = spec
        .watermark_spec
        .target_index(&test.class_names)
        .map_err(anyhow::Error::msg)?;
    let boxes = artefact.plan(spec.seed, Split::Test, &test.labels, target, variant);
    Ok(artefact.stamp(&test.images, &boxes))
}

/// Accuracy and mean loss of `model` on uint8 images.
pub fn evaluate(
    model: &Model,
    images: &Tensor,
    labels: &[i64],
    batch_size: usize,
    device: Device,
    autocast: bool,
) -> (f64, f64) {
    let _guard = tch::no_grad_guard();
    let n = labels.len() as i64;
    let (mut correct, mut loss_sum) = (0i64, 0.0);
    let labels_t = Tensor::from_slice(labels);
    let mut start = 0;
    while start < n {
        let len = (batch_size as i64).min(n - start);
        let x = normalize_u8(&images.narrow(0, start, len).to_device(device));
        let y = labels_t.narrow(0, start, len).to_device(device);
        let logits = amp::with_bf16(autocast, || model.forward_t(&x, false)).to_kind(Kind::Float);
        correct += logits
            .argmax(-1, false)
            .eq_tensor(&y)
            .sum(Kind::Int64)
            .int64_value(&[]);
        loss_sum += logits.cross_entropy_for_logits(&y).double_value(&[]) * len as f64;
        start += len;
    }
    (correct as f64 / n.max(1) as f64, loss_sum / n.max(1) as f64)
}

/// Trains one run into `folder`, resuming from its last finished epoch.
pub fn train_run(
    spec: &RunSpec,
    folder: &RunFolder,
    data: &LoadedData,
    device: Device,
) -> anyhow::Result<()> {
    folder.create(spec)?;
    let class_names = &data.train.class_names;
    let num_classes = class_names.len() as i64;
    let image_size = spec.dataset.image_size;

    tch::manual_seed(spec.seed as i64);
    let mut model = Model::new(&spec.model, num_classes, image_size, device)?;
    if let Some(init) = &spec.model.init {
        let skipped = model
            .load(init, false)
            .with_context(|| format!("model.init {}", init.display()))?;
        if !skipped.is_empty() {
            crate::info!(
                "{}: classifier head re-initialised for {num_classes} classes ({} from {})",
                spec.id,
                skipped.join(", "),
                init.display()
            );
        }
    }

    // The watermark is part of the training data: stamped on the raw images, before augmentation.
    let artefact = Artefact::new(&spec.watermark_spec, image_size)?;
    let train_images = training_images(spec, &artefact, &data.train)?;
    let test_sets: Vec<(Variant, Tensor)> = Variant::ALL
        .iter()
        .map(|&v| Ok((v, test_variant(spec, &artefact, &data.test, v)?)))
        .collect::<anyhow::Result<_>>()?;

    let mut optimizer = Optimizer::new(spec.train.optimizer.clone(), model.trainable());
    let mut state = ResumeState {
        epochs_done: 0,
        step: 0,
        seed: spec.seed,
        skipped_files: data.train.skipped.len() + data.test.skipped.len(),
    };
    let mut lines = Vec::new();
    if let Some(saved) = folder.read_state()? {
        model
            .load(&folder.last(), true)
            .with_context(|| format!("resuming {}", folder.dir.display()))?;
        optimizer.load_state(folder.read_optimizer_state()?, saved.step);
        lines = folder.read_metrics(saved.epochs_done);
        crate::info!("{}: resuming after epoch {}", spec.id, saved.epochs_done);
        state = saved;
    }

    let autocast = device.is_cuda() && spec.train.mixed_precision;
    if device.is_cuda() {
        // Fixed input sizes: let cuDNN pick the fastest convolution algorithms.
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let batches = BatchSpec {
        batch_size: spec.train.batch_size,
        shuffle: true,
        augment: spec.augment.then(|| spec.augment_spec.clone()),
        seed: spec.seed,
        device,
        prefetch: 3,
    };
    let n_train = data.train.len();
    let per_epoch = n_train.div_ceil(spec.train.batch_size);
    let total_steps = per_epoch * spec.train.epochs;
    let mut board = Board::new(&folder.dir);

    for epoch in state.epochs_done..spec.train.epochs {
        let started = Instant::now();
        let bar = crate::ui::progress_bar(
            per_epoch as u64,
            &format!("{} {}/{}", spec.id, epoch + 1, spec.train.epochs),
        );
        // Running sums stay on the device; reading them forces a sync, so
        // that happens only every few steps (and at the end of the epoch).
        let loss_sum = Tensor::zeros([], (Kind::Float, device));
        let correct = Tensor::zeros([], (Kind::Int64, device));
        let mut seen = 0usize;
        let mut lr = spec.train.optimizer.lr;
        for (i, batch) in
            epoch_batches(&train_images, &data.train.labels, &batches, epoch).enumerate()
        {
            lr = learning_rate(
                spec.train.optimizer.lr,
                &spec.train.schedule,
                state.step as usize,
                per_epoch,
                total_steps,
            );
            let logits = amp::with_bf16(autocast, || model.forward_t(&batch.images, true))
                .to_kind(Kind::Float);
            let loss = logits.cross_entropy_loss(
                &batch.labels,
                None::<Tensor>,
                tch::Reduction::Mean,
                -100,
                spec.train.label_smoothing,
            );
            optimizer.zero_grad();
            loss.backward();
            optimizer.step(lr);
            state.step += 1;
            let b = batch.indices.len();
            let _ = tch::no_grad(|| {
                let _ = loss_sum.shallow_clone().g_add_(&(loss.detach() * b as f64));
                correct.shallow_clone().g_add_(
                    &logits
                        .argmax(-1, false)
                        .eq_tensor(&batch.labels)
                        .sum(Kind::Int64),
                )
            });
            seen += b;
            bar.inc(1);
            if i % SYNC_EVERY == SYNC_EVERY - 1 || i + 1 == per_epoch {
                let mean_loss = loss_sum.double_value(&[]) / seen as f64;
                if !mean_loss.is_finite() {
                    bail!(
                        "{}: the training loss became {mean_loss} in epoch {} by step {}; lower train.optimizer.lr (now {}) or check the data",
                        spec.id,
                        epoch + 1,
                        state.step,
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
        let loss_sum = loss_sum.double_value(&[]);
        let correct = correct.int64_value(&[]);
        bar.finish_and_clear();
        let train_seconds = started.elapsed().as_secs_f64();
        let mut test_accuracy = BTreeMap::new();
        let mut test_loss = 0.0;
        for (variant, images) in &test_sets {
            let (acc, loss) = evaluate(
                &model,
                images,
                &data.test.labels,
                spec.train.batch_size * 2,
                device,
                autocast,
            );
            if *variant == Variant::Clean {
                test_loss = loss;
            }
            test_accuracy.insert(variant.as_str().to_string(), acc);
        }
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            lr,
            test_accuracy,
            test_loss,
            seconds: started.elapsed().as_secs_f64(),
            images_per_second: seen as f64 / train_seconds,
            device: crate::device::device_name(device),
        };
        crate::info!(
            "{} epoch {}/{}: loss {:.4} acc {:.3} | test clean {:.3} as-train {:.3} flipped {:.3} | {:.0} img/s",
            spec.id,
            m.epoch,
            spec.train.epochs,
            m.train_loss,
            m.train_accuracy,
            m.test_accuracy["clean"],
            m.test_accuracy["as-train"],
            m.test_accuracy["flipped"],
            m.images_per_second
        );
        lines.push(serde_json::to_string(&m)?);
        state.epochs_done = epoch + 1;
        model.save(&folder.last(), state.step)?;
        folder.save_epoch(&state, &optimizer.state(), &lines)?;
        board.write(&m);
    }
    model.save(&folder.model(), state.step)?;
    folder.mark_complete()?;
    Ok(())
}

/// Outcome of one run for the summary.
pub enum RunOutcome {
    Trained,
    AlreadyComplete,
}

/// Trains `runs` of an experiment under `checkpoints/<name>/`.
pub fn train_runs(
    runs: &[RunSpec],
    checkpoints: &Path,
    device: Device,
) -> anyhow::Result<Vec<(String, RunOutcome)>> {
    let mut store = DataStore::default();
    let mut out = Vec::new();
    for (i, spec) in runs.iter().enumerate() {
        let folder = RunFolder::new(checkpoints.join(&spec.experiment).join(&spec.id));
        if folder.is_complete() {
            folder.check_settings(spec)?;
            crate::info!(
                "[{}/{}] {} is complete, skipped",
                i + 1,
                runs.len(),
                spec.id
            );
            out.push((spec.id.clone(), RunOutcome::AlreadyComplete));
            continue;
        }
        crate::info!(
            "[{}/{}] training {} on {}",
            i + 1,
            runs.len(),
            spec.id,
            crate::device::device_name(device)
        );
        let data = store.get(spec)?;
        train_run(spec, &folder, data, device)
            .with_context(|| format!("run {}", folder.dir.display()))?;
        out.push((spec.id.clone(), RunOutcome::Trained));
    }
    Ok(out)
}
