//! `nave-lab bench ...`: speed measurements printed as JSON (never asserted in tests).
use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::cli::{BenchCommand, BenchDataArgs, BenchDetectArgs, BenchKmeansArgs, BenchTrainArgs};
use crate::config::{ClusterMethod, OptimizerKind, OptimizerSpec};
use crate::data::loader::{epoch_batches, normalize_u8, BatchSpec};
use crate::data::synthetic::{self, SyntheticSpec};
use crate::data::transforms::AugmentSpec;
use crate::data::Split;
use crate::models::memory_format::{to_channels_last, MemoryFormat};
use crate::models::{Model, ModelSpec};
use crate::nave::{extract, kmeans, pca, reference, score};
use crate::train::amp;
use crate::train::optim::Optimizer;

pub fn run(cmd: BenchCommand, device: Device) -> anyhow::Result<()> {
    let detect_out = match &cmd {
        BenchCommand::Detect(a) => a.out.clone(),
        _ => None,
    };
    let out = match cmd {
        BenchCommand::Data(a) => bench_data(&a, device)?,
        BenchCommand::Kmeans(a) => bench_kmeans(&a, device)?,
        BenchCommand::Train(a) => bench_train(&a, device)?,
        BenchCommand::Detect(a) => bench_detect(&a, device)?,
    };
    if let Some(path) = detect_out {
        crate::io::write_atomic(&path, serde_json::to_string_pretty(&out)?.as_bytes())?;
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn bench_detect(a: &BenchDetectArgs, device: Device) -> anyhow::Result<serde_json::Value> {
    crate::audit::zoo_bench::bench_detect(
        &crate::audit::zoo_bench::BenchDetect {
            dir: &a.dir,
            probes: a.probes,
            split: &crate::detect::splits::SplitRequest {
                file: a.splits.clone(),
                tune_seeds: a.tune_seeds.clone(),
                held_out: a.held_out.clone(),
                exploratory: a.exploratory,
            },
            families: &a.families,
            seeds: &a.seeds,
            max_fpr: a.max_fpr,
            baseline: !a.no_baseline,
        },
        device,
    )
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn bench_data(a: &BenchDataArgs, device: Device) -> anyhow::Result<serde_json::Value> {
    let spec = SyntheticSpec {
        train: a.images,
        ..Default::default()
    };
    let data = synthetic::generate(&spec, Split::Train, a.image_size);
    let mut results = Vec::new();
    for augment in [false, true] {
        let batches = BatchSpec {
            batch_size: a.batch_size,
            shuffle: true,
            augment: augment.then(AugmentSpec::default),
            seed: 0,
            device,
            prefetch: 4,
        };
        // Warm-up epoch (allocations, CUDA context), then timed epochs.
        for b in epoch_batches(&data.images, &data.labels, &batches, 0) {
            let _ = b.images.sum(Kind::Float).double_value(&[]);
        }
        let start = Instant::now();
        let mut n = 0;
        for epoch in 1..=a.epochs {
            for b in epoch_batches(&data.images, &data.labels, &batches, epoch) {
                // Force the work to finish, as a consumer would.
                let _ = b.images.sum(Kind::Float).double_value(&[]);
                n += b.indices.len();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        results.push(json!({ "augment": augment, "images": n, "seconds": secs, "images_per_s": n as f64 / secs }));
    }
    Ok(json!({
        "bench": "data",
        "device": crate::device::device_name(device),
        "threads": tch::get_num_threads(),
        "image_size": a.image_size,
        "batch_size": a.batch_size,
        "results": results,
    }))
}

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn bench_kmeans(a: &BenchKmeansArgs, device: Device) -> anyhow::Result<serde_json::Value> {
    let (x, source) = match &a.features {
        Some(path) => {
            let (shape, data) = crate::io::read_npy_f32(path)?;
            anyhow::ensure!(
                shape.len() == 2,
                "{}: expected a 2-D matrix, got shape {shape:?}",
                path.display()
            );
            (
                Tensor::from_slice(&data)
                    .view([shape[0] as i64, shape[1] as i64])
                    .to_device(device),
                path.display().to_string(),
            )
        }
        None => {
            let spec = ModelSpec {
                arch: a.arch,
                width: None,
                init: None,
                init_sha256: None,
                registers: 0,
                layer_scale: false,
            };
            tch::manual_seed(a.seed as i64);
            let mut model = Model::new(&spec, 2, a.image_size, device)?;
            if let Some(w) = &a.weights {
                model
                    .load(w, false)
                    .with_context(|| format!("loading {}", w.display()))?;
            }
            let taps = a.taps.clone().unwrap_or_else(|| a.arch.default_taps());
            let data = synthetic::generate(
                &SyntheticSpec {
                    test: a.images,
                    ..Default::default()
                },
                Split::Test,
                a.image_size,
            );
            let images = normalize_u8(&data.images.to_device(device));
            let feats = extract::features(&model, &images, &taps, None, 16)?;
            let rows = extract::to_rows(&feats);
            if let Some(p) = &a.save_features {
                let cpu = rows.to_device(Device::Cpu).contiguous();
                let v: Vec<f32> = Vec::try_from(cpu.flatten(0, -1))?;
                crate::io::write_npy_f32(
                    p,
                    &[rows.size()[0] as usize, rows.size()[1] as usize],
                    &v,
                )?;
            }
            (
                rows,
                format!(
                    "{} {} over {} synthetic images at {}",
                    a.arch,
                    taps.join("+"),
                    a.images,
                    a.image_size
                ),
            )
        }
    };
    let (n, d) = x.size2()?;
    let matrix_bytes = (n * d * 4) as u64;
    let mut results = Vec::new();
    let mut medians = Vec::new();
    for &k in &a.k {
        for &engine in &a.engines {
            let mut runs = Vec::new();
            for seed in a.seed..a.seed + a.seeds.max(1) {
                runs.push(time_engine(engine, &x, k, seed, a, device)?);
            }
            let values =
                |key: &str| -> Vec<f64> { runs.iter().filter_map(|r| r[key].as_f64()).collect() };
            // Absent (null) where the engine does not report the value.
            let finite = |v: f64| v.is_finite().then_some(v);
            let column = |key: &str| finite(score::median(&values(key)));
            medians.push(json!({
                "engine": engine_name(engine),
                "k": k,
                "runs": runs.len(),
                "seconds": column("seconds"),
                "init_seconds": column("init_seconds"),
                "iteration_seconds": column("iteration_seconds"),
                "iterations": column("iterations"),
                "inertia": column("inertia"),
                // Runs end in different local optima; the mean weighs them all.
                "inertia_mean": finite(score::mean_sd(&values("inertia")).0),
                "peak_over_matrix": column("peak_over_matrix"),
            }));
            results.extend(runs);
        }
    }
    Ok(json!({
        "bench": "kmeans",
        "device": crate::device::device_name(device),
        "threads": tch::get_num_threads(),
        "source": source,
        "rows": n,
        "dims": d,
        "matrix_bytes": matrix_bytes,
        "tol": a.tol,
        "max_iter": a.max_iter,
        "results": results,
        "medians": medians,
    }))
}

fn engine_name(engine: ClusterMethod) -> String {
    format!("{engine:?}").to_lowercase()
}

/// One timed clustering of `x`: seconds, iterations, inertia and the host
/// memory it added.
fn time_engine(
    engine: ClusterMethod,
    x: &Tensor,
    k: usize,
    seed: u64,
    a: &BenchKmeansArgs,
    device: Device,
) -> anyhow::Result<serde_json::Value> {
    let matrix_bytes = (x.numel() * 4) as u64;
    sync(device);
    reset_peak_rss();
    let before = peak_rss();
    let start = Instant::now();
    // With --same-start: the initialisation and the iterations timed apart.
    let mut phases: Vec<(&str, f64)> = Vec::new();
    let (inertia, iterations) = match engine {
        ClusterMethod::Kmeans => match &a.same_start {
            None => {
                let r = kmeans::kmeans(x, k, seed, a.tol, a.max_iter);
                (Some(r.inertia), Some(r.iterations))
            }
            Some(dir) => {
                let centres = kmeans::initial_centres(x, k, seed);
                sync(device);
                phases.push(("init_seconds", start.elapsed().as_secs_f64()));
                let cpu = centres.to_device(Device::Cpu).contiguous();
                let path = dir.join(format!("centres_k{k}_s{seed}.npy"));
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                crate::io::write_npy_f32(
                    &path,
                    &[k, x.size()[1] as usize],
                    &Vec::<f32>::try_from(cpu.flatten(0, -1))?,
                )?;
                let iterating = Instant::now();
                let r = kmeans::kmeans_from(x, &centres, a.tol, a.max_iter);
                sync(device);
                phases.push(("iteration_seconds", iterating.elapsed().as_secs_f64()));
                (Some(r.inertia), Some(r.iterations))
            }
        },
        ClusterMethod::Linfa => (
            Some(reference::linfa_kmeans(x, k, seed, a.tol, a.max_iter)?.1),
            None,
        ),
        ClusterMethod::Ward => {
            let _ = reference::ward(x, k, seed)?;
            (None, None)
        }
        ClusterMethod::Pca => {
            let _ = pca::pca_labels(x, k);
            (None, None)
        }
    };
    sync(device);
    let seconds = start.elapsed().as_secs_f64();
    let extra = peak_rss().zip(before).map(|(p, b)| p.saturating_sub(b));
    let mut row = json!({
        "engine": engine_name(engine),
        "k": k,
        "seed": seed,
        "seconds": seconds,
        "iterations": iterations,
        "inertia": inertia,
        // Host memory the engine added above the matrix already held (CPU runs).
        "extra_host_bytes": extra,
        "peak_over_matrix": extra.map(|e| (matrix_bytes + e) as f64 / matrix_bytes as f64),
    });
    for (name, secs) in phases {
        row[name] = json!(secs);
    }
    Ok(row)
}

fn bench_train(a: &BenchTrainArgs, device: Device) -> anyhow::Result<serde_json::Value> {
    tch::manual_seed(0);
    let spec = ModelSpec {
        arch: a.arch,
        width: a.width,
        init: None,
        init_sha256: None,
        registers: 0,
        layer_scale: false,
    };
    let model = Model::new(&spec, 10, a.image_size, device)?;
    let mut opt = Optimizer::new(
        OptimizerSpec {
            kind: OptimizerKind::Sgd,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 1e-4,
            betas: [0.9, 0.999],
        },
        model.trainable(),
    );
    let x = Tensor::randn(
        [a.batch_size, 3, a.image_size, a.image_size],
        (Kind::Float, device),
    );
    let y = Tensor::randint(10, [a.batch_size], (Kind::Int64, device));
    let amp_on = a.mixed_precision && device.is_cuda();
    let channels_last = a.memory_format.channels_last(a.arch, device, amp_on);
    let x = if channels_last {
        model.to_channels_last();
        to_channels_last(&x)
    } else {
        x
    };
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let step = |opt: &mut Optimizer| -> anyhow::Result<()> {
        let logits = amp::with_bf16(amp_on, || model.forward_t(&x, true))?.to_kind(Kind::Float);
        let loss = logits.cross_entropy_for_logits(&y);
        opt.zero_grad()?;
        loss.backward();
        if !a.no_optimizer {
            opt.step(0.01)?;
        }
        Ok(())
    };
    for _ in 0..3 {
        step(&mut opt)?;
    }
    sync(device);
    let start = Instant::now();
    for _ in 0..a.steps {
        step(&mut opt)?;
    }
    sync(device);
    let seconds = start.elapsed().as_secs_f64();
    Ok(json!({
        "bench": "train",
        "device": crate::device::device_name(device),
        "threads": tch::get_num_threads(),
        "arch": a.arch.as_str(),
        "width": a.width.unwrap_or(a.arch.default_width()),
        "image_size": a.image_size,
        "batch_size": a.batch_size,
        "mixed_precision": amp_on,
        "memory_format": MemoryFormat::describe(channels_last),
        "optimizer": !a.no_optimizer,
        "steps": a.steps,
        "seconds": seconds,
        "images_per_s": (a.steps as i64 * a.batch_size) as f64 / seconds,
    }))
}
