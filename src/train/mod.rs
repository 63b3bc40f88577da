//! `nave-lab train`: every run of an experiment's grid, resumably.
//!
//! Per run: seed libtorch, stamp the watermark on the training images of the
//! target class (watermark regimes), build the model, then per epoch train on
//! shuffled (and, in augmentation regimes, augmented) batches, evaluate on the
//! test split in the three watermark variants, and save the resume state. The
//! final weights and `COMPLETE` are written last.
pub mod amp;
mod epoch;
pub mod metrics;
pub mod optim;
pub mod workers;

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use tch::{Device, Kind, Tensor};

use crate::config::RunSpec;
use crate::data::loader::normalize_u8;
use crate::data::store::{training_images, DataStore, LoadedData};
use crate::data::watermark::{Artefact, Variant};
use crate::data::{Split, SplitData};
use crate::models::memory_format::MemoryFormat;
use crate::models::Model;
use crate::run_folder::{EpochMetrics, ResumeState, RunFolder};
use metrics::Board;
use optim::Optimizer;

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
) -> anyhow::Result<(f64, f64)> {
    let _guard = tch::no_grad_guard();
    let n = labels.len() as i64;
    let (mut correct, mut loss_sum) = (0i64, 0.0);
    let labels_t = Tensor::from_slice(labels);
    let mut start = 0;
    while start < n {
        let len = (batch_size as i64).min(n - start);
        let x = normalize_u8(&images.narrow(0, start, len).to_device(device));
        let y = labels_t.narrow(0, start, len).to_device(device);
        let logits = amp::with_bf16(autocast, || model.forward_t(&x, false))?.to_kind(Kind::Float);
        correct += logits
            .argmax(-1, false)
            .eq_tensor(&y)
            .sum(Kind::Int64)
            .int64_value(&[]);
        loss_sum += logits.cross_entropy_for_logits(&y).double_value(&[]) * len as f64;
        start += len;
    }
    Ok((correct as f64 / n.max(1) as f64, loss_sum / n.max(1) as f64))
}

/// A run that starts from another's weights on training images its caller
/// prepared (`revise`: a fine-tune with a found shortcut neutralised).
pub struct FineTune {
    /// The weights it starts from.
    pub weights: std::path::PathBuf,
    /// uint8 `[N, 3, S, S]`, in the order of the data's training labels.
    pub images: Tensor,
}

/// Trains one run into `folder`, resuming from its last finished epoch.
/// A `fine_tune` replaces the run's own initial weights and training images.
pub fn train_run(
    spec: &RunSpec,
    folder: &RunFolder,
    data: &LoadedData,
    placement: Placement,
    fine_tune: Option<&FineTune>,
) -> anyhow::Result<()> {
    let device = placement.device;
    folder.create(spec)?;
    tch::manual_seed(spec.seed as i64);
    let mut model = build_model(spec, data.train.class_names.len() as i64, device)?;
    if let Some(f) = fine_tune {
        model
            .load(&f.weights, true)
            .with_context(|| format!("{}: the weights fine-tuned from", f.weights.display()))?;
    }
    let channels_last = placement.channels_last(spec);
    if channels_last {
        // Before resuming: the weights read back are copied into the re-laid
        // tensors, and the optimiser's buffers take their parameters' layout.
        model.to_channels_last();
    }

    // The watermark is part of the training data: stamped on the raw images, before augmentation.
    let artefact = Artefact::new(&spec.watermark_spec, spec.dataset.image_size)?;
    let train_images = match fine_tune {
        Some(f) => {
            anyhow::ensure!(
                f.images.size()[0] == data.train.labels.len() as i64,
                "{} prepared training images for {} labels",
                f.images.size()[0],
                data.train.labels.len()
            );
            f.images.shallow_clone()
        }
        None => training_images(spec.watermark(), spec.seed, &artefact, &data.train)?,
    };
    let test_sets: Vec<(Variant, Tensor)> = Variant::ALL
        .iter()
        .map(|&v| Ok((v, test_variant(spec, &artefact, &data.test, v)?)))
        .collect::<anyhow::Result<_>>()?;

    let mut optimizer = Optimizer::new(spec.train.optimizer.clone(), model.trainable());
    let (mut state, mut lines) = resume(spec, folder, data, &mut model, &mut optimizer)?;

    let autocast = device.is_cuda() && spec.train.mixed_precision;
    if device.is_cuda() {
        // Fixed input sizes: let cuDNN pick the fastest convolution algorithms.
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let mut board = Board::new(&folder.dir)?;
    for epoch in state.epochs_done..spec.train.epochs {
        if let Some(stopped) = crate::signals::received() {
            return Err(stopped_between_epochs(spec, stopped, epoch));
        }
        let started = Instant::now();
        let mut run = epoch::Training {
            spec,
            model: &model,
            optimizer: &mut optimizer,
            images: &train_images,
            labels: &data.train.labels,
            autocast,
            channels_last,
            device,
        };
        let totals = run.epoch(epoch, &mut state.step)?;
        let train_seconds = started.elapsed().as_secs_f64();
        let (test_accuracy, test_loss) = epoch::test(
            &model,
            &test_sets,
            &data.test.labels,
            spec,
            autocast,
            device,
        )?;
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: totals.loss_sum / totals.seen.max(1) as f64,
            train_accuracy: totals.correct as f64 / totals.seen.max(1) as f64,
            lr: totals.lr,
            test_accuracy,
            test_loss,
            seconds: started.elapsed().as_secs_f64(),
            images_per_second: totals.seen as f64 / train_seconds,
            device: crate::device::device_name(device),
        };
        log_epoch(spec, &m);
        // Weights that diverged in the epoch's last steps are never saved.
        epoch::ensure_finite(spec, &model, epoch, m.test_loss)?;
        lines.push(crate::io::finite_json(&m, false, &folder.metrics())?);
        state.epochs_done = epoch + 1;
        let weights = model.state_dict(state.step);
        folder.save_epoch(&mut state, &weights, &optimizer.state(), &lines)?;
        board.write(&m)?;
    }
    model.save(&folder.model(), state.step)?;
    crate::failpoint::hit("before-complete");
    folder.mark_complete()?;
    Ok(())
}

/// The error of a run stopped by a signal once `epochs_done` epochs are saved.
fn stopped_between_epochs(
    spec: &RunSpec,
    stopped: crate::signals::Stopped,
    epochs_done: usize,
) -> anyhow::Error {
    anyhow::Error::new(stopped).context(format!(
        "{}: stopped with {epochs_done} of {} epochs saved; rerun the same command to resume",
        spec.id, spec.train.epochs
    ))
}

/// The run's model, from its `model.init` weights when it names some.
fn build_model(spec: &RunSpec, num_classes: i64, device: Device) -> anyhow::Result<Model> {
    let mut model = Model::new(&spec.model, num_classes, spec.dataset.image_size, device)?;
    if let Some(init) = &spec.model.init {
        let path = crate::fetch::weights::local_path(init, spec.model.init_sha256.as_deref())
            .with_context(|| format!("model.init {}", init.display()))?;
        let skipped = model
            .load(&path, false)
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
    Ok(model)
}

/// The progress a run folder holds (weights, optimiser, metrics lines), or a
/// fresh start.
fn resume(
    spec: &RunSpec,
    folder: &RunFolder,
    data: &LoadedData,
    model: &mut Model,
    optimizer: &mut Optimizer,
) -> anyhow::Result<(ResumeState, Vec<String>)> {
    let Some(saved) = folder.read_state()? else {
        let fresh = ResumeState {
            epochs_done: 0,
            step: 0,
            seed: spec.seed,
            skipped_files: data.train.skipped.len() + data.test.skipped.len(),
            files: Default::default(),
            metrics: None,
        };
        return Ok((fresh, Vec::new()));
    };
    model
        .load(&folder.epoch_weights(saved.epochs_done), true)
        .with_context(|| format!("resuming {}", folder.dir.display()))?;
    optimizer.load_state(
        folder.read_optimizer_state(&saved)?,
        saved.step,
        &folder.epoch_optimizer(saved.epochs_done),
    )?;
    let lines = folder.read_metrics(saved.epochs_done);
    crate::info!("{}: resuming after epoch {}", spec.id, saved.epochs_done);
    Ok((saved, lines))
}

fn log_epoch(spec: &RunSpec, m: &EpochMetrics) {
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
}

/// Loads every run's data and checks what can only be checked against it
/// (the watermark's class and artefact), so that a bad experiment is refused
/// before any run folder is written.
pub fn check_runs(runs: &[RunSpec], store: &mut DataStore) -> anyhow::Result<()> {
    for spec in runs {
        let data = store.get(&spec.dataset.source(), spec.dataset.image_size)?;
        spec.watermark_spec
            .target_index(&data.train.class_names)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("run {}", spec.id))?;
        Artefact::new(&spec.watermark_spec, spec.dataset.image_size)
            .with_context(|| format!("run {}: the watermark", spec.id))?;
    }
    Ok(())
}

/// Where and how runs compute: the device and the convolutions' memory layout.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub device: Device,
    pub memory_format: MemoryFormat,
}

impl Placement {
    /// Whether `spec`'s model runs channels-last here.
    pub fn channels_last(&self, spec: &RunSpec) -> bool {
        let autocast = self.device.is_cuda() && spec.train.mixed_precision;
        self.memory_format
            .channels_last(spec.model.arch, self.device, autocast)
    }

    /// "cuda:0 (NVIDIA H200), bf16, channels-last" for the log.
    fn describe(&self, spec: &RunSpec) -> String {
        let precision = if self.device.is_cuda() && spec.train.mixed_precision {
            "bf16 autocast"
        } else {
            "fp32"
        };
        format!(
            "{}, {precision}, {}",
            crate::device::device_name(self.device),
            MemoryFormat::describe(self.channels_last(spec))
        )
    }
}

/// Outcome of one run for the summary.
pub enum RunOutcome {
    Trained,
    AlreadyComplete,
    /// Another process holds the run folder (it is training it).
    HeldElsewhere(String),
}

/// What to do with a run another process is training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenHeld {
    /// Skip it and say so (the default).
    Skip,
    /// Wait until it is released (`--wait`), at most this long when given
    /// (`--wait=30m`); then skip it.
    Wait(Option<std::time::Duration>),
    /// Skip it quietly: a sibling worker of `--parallel` has it.
    PassOver,
}

/// Refuses, before anything is written, runs whose folders exist with other
/// settings than the experiment now gives (the error names the difference).
pub fn check_existing_settings(runs: &[RunSpec], checkpoints: &Path) -> anyhow::Result<()> {
    for spec in runs {
        let folder = RunFolder::new(checkpoints.join(&spec.experiment).join(&spec.id));
        if folder.run_yaml().is_file() {
            folder.check_settings(spec)?;
        }
    }
    Ok(())
}

/// The line `train` ends with: how many runs were trained, already
/// complete, or held by another process.
pub fn outcome_line(experiment: &str, outcomes: &[(String, RunOutcome)], dir: &Path) -> String {
    let count = |f: fn(&RunOutcome) -> bool| outcomes.iter().filter(|(_, o)| f(o)).count();
    let trained = count(|o| matches!(o, RunOutcome::Trained));
    let complete = count(|o| matches!(o, RunOutcome::AlreadyComplete));
    let held = count(|o| matches!(o, RunOutcome::HeldElsewhere(_)));
    let held_note = if held > 0 {
        format!(", {held} being trained by another process (--wait waits for them)")
    } else {
        String::new()
    };
    format!(
        "{experiment}: {trained} run(s) trained, {complete} already complete{held_note}, in {}",
        dir.display()
    )
}

/// `model.init` names (`torchvision:resnet50`...) are fetched into the cache
/// once, and the SHA-256 of the file each run starts from goes into its
/// run.yaml.
pub fn record_named_inits(runs: &mut [RunSpec]) -> anyhow::Result<()> {
    let mut resolved: std::collections::HashMap<String, String> = Default::default();
    for spec in runs.iter_mut() {
        let Some(init) = &spec.model.init else {
            continue;
        };
        let name = init.to_string_lossy().into_owned();
        if !crate::fetch::weights::is_name(&name) {
            continue;
        }
        if !resolved.contains_key(&name) {
            let options = crate::fetch::FetchOptions::new(None, None);
            let got = crate::fetch::weights::resolve(&name, None, &options)?;
            anyhow::ensure!(
                got.arch == spec.model.arch,
                "model.init {name} holds {} weights, but run {} is a {}",
                got.arch,
                spec.id,
                spec.model.arch
            );
            resolved.insert(name.clone(), got.sha256);
        }
        spec.model.init_sha256 = resolved.get(&name).cloned();
    }
    Ok(())
}

/// [`train_run`] under its caller's lock, with a failure written to the
/// folder's FAILED for `status` (a scheduler's task log may be far away); a
/// run stopped by a signal is not failed, it resumes.
pub fn train_noting_failure(
    spec: &RunSpec,
    folder: &RunFolder,
    data: &LoadedData,
    placement: Placement,
    fine_tune: Option<&FineTune>,
) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(folder.failed());
    if let Err(e) = train_run(spec, folder, data, placement, fine_tune) {
        if e.downcast_ref::<crate::signals::Stopped>().is_none() && folder.dir.is_dir() {
            let _ = crate::io::write_atomic(&folder.failed(), format!("{e:#}\n").as_bytes());
        }
        return Err(e.context(format!("run {}", folder.dir.display())));
    }
    Ok(())
}

/// Trains `runs` of an experiment under `checkpoints/<name>/`. A run another
/// process is training is skipped or waited for, as `when_held` says.
pub fn train_runs(
    runs: &[RunSpec],
    checkpoints: &Path,
    store: &mut DataStore,
    placement: Placement,
    when_held: WhenHeld,
) -> anyhow::Result<Vec<(String, RunOutcome)>> {
    let mut out = Vec::new();
    for (i, spec) in runs.iter().enumerate() {
        let folder = RunFolder::new(checkpoints.join(&spec.experiment).join(&spec.id));
        let counter = format!("[{}/{}]", i + 1, runs.len());
        let lock = if let WhenHeld::Wait(limit) = when_held {
            let lock = folder.lock_within(
                |holder| {
                    crate::info!(
                        "{counter} {} is being trained by {holder}; waiting",
                        spec.id
                    )
                },
                limit,
            )?;
            if lock.is_none() {
                crate::warn!(
                    "{counter} {} is still held after {}s of waiting (--wait's limit); skipped",
                    spec.id,
                    limit.unwrap_or_default().as_secs()
                );
            }
            lock
        } else {
            folder.try_lock()?
        };
        let Some(_lock) = lock else {
            let holder = crate::lock::holder(&folder.lock_file());
            if when_held == WhenHeld::Skip {
                crate::info!(
                    "{counter} {} is being trained by {holder}, skipped (--wait waits for it)",
                    spec.id
                );
            }
            out.push((spec.id.clone(), RunOutcome::HeldElsewhere(holder)));
            continue;
        };
        if folder.is_complete() {
            folder.check_settings(spec)?;
            folder.verify_complete()?;
            if when_held == WhenHeld::PassOver {
                crate::detail!("{counter} {} is complete, skipped", spec.id);
            } else {
                crate::info!("{counter} {} is complete, skipped", spec.id);
            }
            out.push((spec.id.clone(), RunOutcome::AlreadyComplete));
            continue;
        }
        if let Some(stopped) = crate::signals::received() {
            return Err(stopped_between_epochs(spec, stopped, 0)
                .context(format!("run {}", folder.dir.display())));
        }
        crate::info!(
            "{counter} training {} on {}",
            spec.id,
            placement.describe(spec)
        );
        let data = store.get(&spec.dataset.source(), spec.dataset.image_size)?;
        train_noting_failure(spec, &folder, data, placement, None)?;
        out.push((spec.id.clone(), RunOutcome::Trained));
    }
    Ok(out)
}
