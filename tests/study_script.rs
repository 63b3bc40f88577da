//! benches/full-size-study.sh, the GPU study's one-call script, run at toy
//! sizes on the CPU (`SCALE=tiny`, about two minutes): every stage must run and
//! the summary must carry every figure and the extrapolation, so that the
//! script works the day a GPU is at hand.
mod common;

use std::process::Command;

#[test]
fn the_full_size_study_script_runs_every_stage_and_extrapolates() {
    let dir = common::scratch("study_script");
    let (work, out) = (dir.join("work"), dir.join("out"));
    let root = env!("CARGO_MANIFEST_DIR");
    let result = Command::new("bash")
        .arg(format!("{root}/benches/full-size-study.sh"))
        .arg(&out)
        .env("SCALE", "tiny")
        .env("NAVE_LAB", env!("CARGO_BIN_EXE_nave-lab"))
        .env("PYTHON", common::reference_python())
        .env("WORK", &work)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let log = std::fs::read_to_string(out.join("study.log")).unwrap_or_default();
    assert!(
        result.status.success(),
        "{}\n{}\n{log}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["failed_stages"], serde_json::json!([]), "{log}");
    assert_eq!(summary["skipped_stages"], serde_json::json!([]), "{log}");

    // Throughput: both sides of every pair that has a PyTorch baseline.
    let tp = &summary["throughput"];
    for key in [
        "tp-resnet50-fp32-nchw",
        "tp-resnet50-bf16-cl",
        "tp-vit_s16-bf16",
    ] {
        for side in ["nave", "torch"] {
            assert!(tp[key][side].as_f64().unwrap() > 0.0, "{key} {side}: {tp}");
        }
    }
    assert!(tp["tp-resnet50-bf16-nchw"]["nave"].as_f64().unwrap() > 0.0);

    // Four slices of two runs each, extrapolated beyond what was measured.
    let slices = summary["slices"].as_object().unwrap();
    assert_eq!(slices.len(), 4, "{slices:?}");
    for (name, s) in slices {
        let (wall, at20) = (
            s["wall"].as_f64().unwrap(),
            s["at_20_epochs"].as_f64().unwrap(),
        );
        assert!(at20 > wall, "{name}: {at20} <= {wall}");
        assert_eq!(s["marginal_epoch"].as_object().unwrap().len(), 2, "{name}");
        let parallel = s["parallel"].as_u64().unwrap();
        assert_eq!(parallel, if name.contains("parallel2") { 2 } else { 1 });
    }
    for mode in ["one run at a time", "two runs at once (--parallel 2)"] {
        let e = &summary["estimate"][mode];
        let (train, audit, total) = (
            e["train"].as_f64().unwrap(),
            e["audit"].as_f64().unwrap(),
            e["total"].as_f64().unwrap(),
        );
        assert!(train > 0.0 && audit > 0.0, "{mode}: {e}");
        assert!((total - train - audit).abs() < 1e-6, "{mode}: {e}");
    }

    // The audit covered the 8 runs trained, with the detector's verdicts.
    assert_eq!(summary["audit"]["runs"], 8);
    let figure = summary["figure6"].as_array().unwrap();
    assert_eq!(figure.len(), 8);
    assert!(figure.iter().all(|r| r["verdict"].is_object()));
    assert!(summary["kmeans"][0]["seconds"].as_f64().unwrap() > 0.0);
    assert!(summary["localize"]["seconds_per_image"].as_f64().unwrap() > 0.0);

    // The demo end to end: its two runs audited with a verdict each, and
    // the watermark run's revision audited beside them.
    let demo = summary["demo"]["runs"].as_array().unwrap();
    let ids: Vec<&str> = demo.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "resnet18-aug0-wm0-s0",
            "resnet18-aug0-wm1-s0",
            "resnet18-aug0-wm1-s0-revised-augment"
        ],
        "{demo:?}"
    );
    assert!(demo.iter().all(|r| r["score"].is_f64()), "{demo:?}");

    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("## The whole study, extrapolated"), "{md}");
    let listing = Command::new("tar")
        .arg("tzf")
        .arg(out.join("results.tar.gz"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("audit.json"), "{listing}");
    // 8 study runs, 2 demo runs and the revision.
    assert_eq!(listing.matches("metrics.jsonl").count(), 11, "{listing}");
    assert!(listing.contains("revise.json"), "{listing}");
    assert!(listing.contains("stages.tsv"), "{listing}");
}
