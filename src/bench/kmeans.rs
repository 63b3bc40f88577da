//! `bench kmeans`: k-means engines on a real NAVE feature matrix (time,
//! iterations, inertia, peak memory), against scikit-learn through
//! `benches/kmeans_sklearn.py` on the same matrix and starts.
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use tch::{Device, Tensor};

use super::{peak_rss, reset_peak_rss, sync};
use crate::config::ClusterMethod;
use crate::data::loader::normalize_u8;
use crate::data::synthetic::{self, SyntheticSpec};
use crate::data::Split;
use crate::models::{Model, ModelSpec};
use crate::nave::{extract, kmeans, pca, reference, stats};
use crate::ui::at_least_one;

#[derive(Debug, Args)]
pub struct BenchKmeansArgs {
    /// Use this feature matrix (.npy, float32, rows x dims) instead of extracting one.
    #[arg(long)]
    pub features: Option<std::path::PathBuf>,
    /// Save the extracted matrix here (for benches/kmeans_sklearn.py).
    #[arg(long)]
    pub save_features: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value = "resnet50")]
    pub arch: crate::models::Arch,
    /// Weights (safetensors, torchvision/timm names); default a seeded random initialisation.
    #[arg(long)]
    pub weights: Option<std::path::PathBuf>,
    #[arg(long, value_delimiter = ',')]
    pub taps: Option<Vec<String>>,
    /// Synthetic probe images to extract features from.
    #[arg(value_parser = at_least_one, long, default_value_t = 200)]
    pub images: usize,
    #[arg(value_parser = clap::value_parser!(i64).range(1..), long, default_value_t = 224)]
    pub image_size: i64,
    #[arg(value_parser = at_least_one, short = 'k', long, value_delimiter = ',', default_value = "5,10")]
    pub k: Vec<usize>,
    /// Engines to time: kmeans (tensor), linfa, ward, pca.
    #[arg(long, value_delimiter = ',', default_value = "kmeans,linfa")]
    pub engines: Vec<crate::config::ClusterMethod>,
    #[arg(long, default_value_t = 1e-4)]
    pub tol: f64,
    #[arg(long, default_value_t = 300)]
    pub max_iter: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run each engine and K with this many seeds (seed, seed + 1, ...) and
    /// report the medians: the iteration count, and so the time, depends on
    /// the initial centres.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Save each seed's k-means++ centres to DIR/centres_k<K>_s<seed>.npy and
    /// time the initialisation and the iterations apart, so that
    /// benches/kmeans_sklearn.py --start DIR iterates from the same centres.
    #[arg(long)]
    pub same_start: Option<std::path::PathBuf>,
    /// With --same-start: then run scikit-learn (this Python, with
    /// scikit-learn installed) from the same centres on the same matrix, in
    /// the same run, and report its times and the speed-up per seed. Runs
    /// benches/kmeans_sklearn.py from the current folder.
    #[arg(long, requires = "same_start")]
    pub sklearn: Option<std::path::PathBuf>,
}

pub fn bench_kmeans(a: &BenchKmeansArgs, device: Device) -> anyhow::Result<serde_json::Value> {
    let (x, source) = feature_matrix(a, device)?;
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
            let column = |key: &str| finite(stats::median(&values(key)));
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
                "inertia_mean": finite(stats::mean_sd(&values("inertia")).0),
                "peak_over_matrix": column("peak_over_matrix"),
            }));
            results.extend(runs);
        }
    }
    let versus = match &a.sklearn {
        Some(python) => Some(versus_sklearn(a, python, &results)?),
        None => None,
    };
    Ok(json!({
        "bench": "kmeans",
        "sklearn": versus,
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

/// `--sklearn`: scikit-learn's KMeans from the centres `--same-start` saved,
/// on the matrix file, timed by benches/kmeans_sklearn.py; per K, each
/// seed's speed-up (its seconds over our iterations' seconds, both from the
/// same start) and how far the two inertias are apart.
fn versus_sklearn(
    a: &BenchKmeansArgs,
    python: &std::path::Path,
    ours: &[serde_json::Value],
) -> anyhow::Result<serde_json::Value> {
    let script = std::path::Path::new("benches/kmeans_sklearn.py");
    anyhow::ensure!(
        script.is_file(),
        "{} not found: run `bench kmeans --sklearn` from the repository root",
        script.display()
    );
    let matrix = a
        .features
        .as_ref()
        .or(a.save_features.as_ref())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--sklearn needs the matrix as a file: give --features or --save-features"
            )
        })?;
    let start_dir = a.same_start.as_ref().expect("clap requires --same-start");
    let ks: Vec<String> = a.k.iter().map(|k| k.to_string()).collect();
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(matrix)
        .args(["-k", &ks.join(",")])
        .args([
            "--tol",
            &a.tol.to_string(),
            "--max-iter",
            &a.max_iter.to_string(),
        ])
        .args([
            "--seed",
            &a.seed.to_string(),
            "--seeds",
            &a.seeds.max(1).to_string(),
        ])
        .arg("--start")
        .arg(start_dir)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} {} failed: {}",
        python.display(),
        script.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let theirs: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("reading the output of {}", script.display()))?;
    let their_runs = theirs["results"].as_array().cloned().unwrap_or_default();
    let mut per_k = Vec::new();
    for &k in &a.k {
        let mut seeds = Vec::new();
        for run in ours
            .iter()
            .filter(|r| r["engine"] == "kmeans" && r["k"] == k)
        {
            let Some(them) = their_runs
                .iter()
                .find(|t| t["k"] == k && t["seed"] == run["seed"])
            else {
                continue;
            };
            let (Some(ours_s), Some(theirs_s)) =
                (run["iteration_seconds"].as_f64(), them["seconds"].as_f64())
            else {
                continue;
            };
            let (oi, ti) = (
                run["inertia"].as_f64().unwrap_or(f64::NAN),
                them["inertia"].as_f64().unwrap_or(f64::NAN),
            );
            seeds.push(json!({
                "seed": run["seed"],
                "ours_seconds": ours_s,
                "sklearn_seconds": theirs_s,
                "speed_up": theirs_s / ours_s,
                "iterations": [run["iterations"], them["iterations"]],
                "inertia_relative_difference": (oi - ti).abs() / ti.abs(),
            }));
        }
        let column =
            |key: &str| -> Vec<f64> { seeds.iter().filter_map(|s| s[key].as_f64()).collect() };
        let (ours_s, theirs_s) = (column("ours_seconds"), column("sklearn_seconds"));
        per_k.push(json!({
            "k": k,
            "seeds": seeds,
            "median_speed_up": stats::median(&column("speed_up")),
            // The ratio of the median times, which the seed with the median
            // iteration count dominates.
            "speed_up_of_medians": stats::median(&theirs_s) / stats::median(&ours_s),
            "largest_inertia_difference": column("inertia_relative_difference").into_iter().fold(0.0, f64::max),
        }));
    }
    Ok(json!({ "python": python.display().to_string(), "per_k": per_k, "runs": their_runs }))
}

/// The matrix to cluster, on `device`, and where it came from: a saved
/// `.npy`, or features extracted from synthetic probe images (saved when
/// asked, for scikit-learn to read).
fn feature_matrix(a: &BenchKmeansArgs, device: Device) -> anyhow::Result<(Tensor, String)> {
    let matrix = match &a.features {
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
            let spec = ModelSpec::plain(a.arch, None);
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
    Ok(matrix)
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
                let (r, init, iterate) = kmeans_from_saved_start(x, k, seed, a, dir, device)?;
                phases.push(("init_seconds", init));
                phases.push(("iteration_seconds", iterate));
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

/// `--same-start`: k-means++ centres saved for scikit-learn to start from,
/// then the iterations; the result and the seconds of each phase.
fn kmeans_from_saved_start(
    x: &Tensor,
    k: usize,
    seed: u64,
    a: &BenchKmeansArgs,
    dir: &std::path::Path,
    device: Device,
) -> anyhow::Result<(kmeans::KMeansResult, f64, f64)> {
    let start = Instant::now();
    let centres = kmeans::initial_centres(x, k, seed);
    sync(device);
    let init_seconds = start.elapsed().as_secs_f64();
    let cpu = centres.to_device(Device::Cpu).contiguous();
    let path = dir.join(format!("centres_k{k}_s{seed}.npy"));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::io::write_npy_f32(
        &path,
        &[k, x.size()[1] as usize],
        &Vec::<f32>::try_from(cpu.flatten(0, -1))?,
    )?;
    let iterating = Instant::now();
    let r = kmeans::kmeans_from(x, &centres, a.tol, a.max_iter);
    sync(device);
    Ok((r, init_seconds, iterating.elapsed().as_secs_f64()))
}
