//! End-to-end tests of the `nave-lab` binary: one integration binary, helpers in `common`.
mod common;

use common::nave_lab;

#[test]
fn no_subcommand_is_a_usage_error() {
    let out = nave_lab().output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = nave_lab().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frobnicate"));
}

#[test]
fn bad_device_is_a_usage_error_naming_the_value() {
    let out = nave_lab()
        .args(["--device", "tpu:7", "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tpu:7") && err.contains("cuda:N"),
        "stderr: {err}"
    );
}

#[test]
fn zero_counts_and_sizes_are_usage_errors_naming_the_value() {
    for args in [
        vec![
            "explain", "--image", "x.png", "--out", "o.png", "--run", "r", "-k", "0",
        ],
        vec!["audit", "checkpoints/x", "--resolution", "0"],
        vec!["audit", "checkpoints/x", "--probes", "0"],
        vec!["data", "show", "--image-size", "0"],
        vec!["data", "show", "--image-size", "-5"],
    ] {
        let out = nave_lab().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("'0'") || err.contains("-5") || err.contains("at least 1"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn help_and_version_exit_zero() {
    let out = nave_lab().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("doctor"));
    let out = nave_lab().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn quiet_and_verbose_conflict() {
    let out = nave_lab().args(["-q", "-v", "doctor"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn doctor_json_has_every_field() {
    let out = nave_lab()
        .args(["--device", "cpu", "doctor", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("doctor --json prints JSON");
    assert_eq!(v["nave_lab_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["libtorch_version"], "2.11.0");
    let loaded = v["libtorch_path"]
        .as_str()
        .expect("libtorch_path is reported");
    assert!(
        std::path::Path::new(loaded)
            .join("libtorch_cpu.so")
            .exists(),
        "{loaded}"
    );
    assert!(v["cpu_threads"].as_i64().unwrap() >= 1);
    assert!(v["cuda_available"].is_boolean());
    assert!(v["linked_cuda"].is_boolean());
    assert!(v["cudnn_available"].is_boolean());
    assert!(v["cuda_device_count"].is_i64());
    assert!(v["gpus"].is_array());
    assert!(v.get("cudnn_version").is_some());
    assert_eq!(v["default_device"], "cpu");
    // The GPU list agrees with the device count.
    assert_eq!(
        v["gpus"].as_array().unwrap().len() as i64,
        v["cuda_device_count"].as_i64().unwrap()
    );
}

#[test]
fn doctor_text_report() {
    let out = nave_lab()
        .args(["--device", "cpu", "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for field in [
        "nave-lab",
        "libtorch",
        "CPU threads",
        "CUDA available",
        "cuDNN",
        "default device",
    ] {
        assert!(text.contains(field), "missing {field} in:\n{text}");
    }
}

#[test]
fn doctor_fails_when_the_requested_device_is_unusable() {
    // cuda:64 does not exist on any machine this runs on, with or without CUDA.
    let out = nave_lab()
        .args(["--device", "cuda:64", "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("cuda:64"),
        "stderr: {err}"
    );
}

#[test]
fn architecture_names_are_spelled_as_in_yaml() {
    // vit_s16 parses (the error is about the missing weights file, exit 1, not a usage error).
    let out = nave_lab()
        .args([
            "explain",
            "--arch",
            "vit_s16",
            "--weights",
            "/nonexistent.safetensors",
            "--image",
            "x.png",
            "-o",
            "y.png",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent.safetensors"));
}

/// `bench kmeans` and benches/kmeans_sklearn.py on the same saved matrix and
/// from the same initial centres: one result per engine and seed, medians
/// over them, and the same iterations and inertia as scikit-learn's.
#[test]
fn kmeans_bench_runs_every_seed_and_matches_scikit_learn() {
    let dir = common::scratch("bench-kmeans");
    let features = dir.join("feats.npy");
    let starts = dir.join("starts");
    let out = nave_lab()
        .args([
            "--device",
            "cpu",
            "bench",
            "kmeans",
            "--arch",
            "resnet18",
            "--images",
            "6",
            "--image-size",
            "64",
            "-k",
            "3",
            "--seeds",
            "3",
            "--engines",
            "kmeans,linfa",
            "--save-features",
        ])
        .arg(&features)
        .arg("--same-start")
        .arg(&starts)
        .output()
        .unwrap();
    common::assert_ok(&out);
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ours["rows"], 6 * 4 * 4, "6 images on layer3's 4x4 grid");
    let results = ours["results"].as_array().unwrap();
    assert_eq!(results.len(), 2 * 3);
    let seeds: Vec<u64> = results
        .iter()
        .map(|r| r["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, [0, 1, 2, 0, 1, 2]);
    let kmeans: Vec<&serde_json::Value> =
        results.iter().filter(|r| r["engine"] == "kmeans").collect();
    let mut secs: Vec<f64> = kmeans
        .iter()
        .map(|r| r["seconds"].as_f64().unwrap())
        .collect();
    secs.sort_by(f64::total_cmp);
    let medians = ours["medians"].as_array().unwrap();
    assert_eq!(medians[0]["engine"], "kmeans");
    assert_eq!(medians[0]["runs"], 3);
    assert_eq!(medians[0]["seconds"].as_f64().unwrap(), secs[1]);
    assert!(kmeans
        .iter()
        .all(|r| r["iteration_seconds"].as_f64().unwrap() > 0.0));
    assert!(starts.join("centres_k3_s2.npy").is_file());

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/kmeans_sklearn.py");
    let out = std::process::Command::new(common::reference_python())
        .arg(script)
        .arg(&features)
        .args(["-k", "3", "--seeds", "3", "--start"])
        .arg(&starts)
        .output()
        .unwrap();
    common::assert_ok(&out);
    let sklearn: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sklearn["rows"], ours["rows"]);
    for (a, b) in kmeans.iter().zip(sklearn["results"].as_array().unwrap()) {
        assert_eq!(a["seed"], b["seed"]);
        assert_eq!(a["iterations"], b["iterations"], "{a}\n{b}");
        let (ia, ib) = (
            a["inertia"].as_f64().unwrap(),
            b["inertia"].as_f64().unwrap(),
        );
        assert!(
            (ia - ib).abs() / ib < 1e-4,
            "inertia: ours {ia}, scikit-learn {ib}"
        );
    }

    // The same comparison in one run: --sklearn runs the script itself.
    let out = nave_lab()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--device", "cpu", "bench", "kmeans", "-k", "3", "--seeds", "3",
        ])
        .args(["--engines", "kmeans", "--features"])
        .arg(&features)
        .arg("--same-start")
        .arg(dir.join("starts-again"))
        .arg("--sklearn")
        .arg(common::reference_python())
        .output()
        .unwrap();
    common::assert_ok(&out);
    let both: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let per_k = &both["sklearn"]["per_k"][0];
    assert_eq!(per_k["k"], 3);
    let seeds = per_k["seeds"].as_array().unwrap();
    assert_eq!(seeds.len(), 3, "{per_k}");
    for s in seeds {
        let its = s["iterations"].as_array().unwrap();
        assert_eq!(its[0], its[1], "{s}");
        assert!(s["speed_up"].as_f64().unwrap() > 0.0);
    }
    assert!(per_k["largest_inertia_difference"].as_f64().unwrap() < 1e-4);
}
