//! `nave-lab train` end to end on tiny synthetic experiments.
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{nave_lab, scratch};

fn experiment(dir: &Path, epochs: usize, train: usize) -> std::path::PathBuf {
    let text = format!(
        "name: t\ndataset:\n  kind: synthetic\n  image_size: 32\n  synthetic: {{seed: 0, train: {train}, test: 64}}\nmodel:\n  arch: resnet18\n  width: 8\ntrain:\n  epochs: {epochs}\n  batch_size: 16\n  optimizer: {{kind: sgd, lr: 0.05}}\nwatermark: {{size: 0.2}}\ngrid:\n  augment: [false]\n  watermark: [false, true]\n  seed: [0]\n"
    );
    let p = dir.join("t.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `nave-lab [-q] train EXP --checkpoints DIR ARGS...`
fn train(exp: &Path, checkpoints: &Path, quiet: bool, args: &[&str]) -> std::process::Command {
    let mut cmd = nave_lab();
    if quiet {
        cmd.arg("-q");
    }
    cmd.arg("train")
        .arg(exp)
        .arg("--checkpoints")
        .arg(checkpoints)
        .args(args);
    cmd
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn list_run_and_index_select_runs() {
    let dir = scratch("train_list");
    let exp = experiment(&dir, 1, 32);
    let out = train(&exp, &dir, false, &["--list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("resnet18-aug0-wm0-s0")
            && text.contains("resnet18-aug0-wm1-s0")
            && text.contains("new"),
        "{text}"
    );
    let out = train(&exp, &dir, false, &["--run", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resnet18-aug0-wm1-s0"));
    let out = train(&exp, &dir, true, &["--index", "1"]).output().unwrap();
    common::assert_ok(&out);
    assert!(dir.join("t/resnet18-aug0-wm1-s0/COMPLETE").is_file());
    assert!(!dir.join("t/resnet18-aug0-wm0-s0").exists());
}

#[test]
fn bad_experiment_names_key_and_line() {
    let dir = scratch("train_bad");
    let exp = experiment(&dir, 1, 32);
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("  batch_size: 16\n", "  batch_size: 16\n  bach: 3\n");
    std::fs::write(&exp, text).unwrap();
    let out = train(&exp, &dir, false, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("t.yaml") && err.contains("bach") && err.contains("line 12"),
        "{err}"
    );
    assert!(
        !dir.join("t").exists(),
        "nothing is written for a bad experiment"
    );
}

#[test]
fn same_seed_gives_identical_metrics_and_a_killed_run_resumes() {
    let dir = scratch("train_resume");
    let exp = experiment(&dir, 4, 160);
    let a = dir.join("a");
    let b = dir.join("b");
    // Uninterrupted reference run.
    let ok = train(&exp, &a, true, &["--index", "0"]).status().unwrap();
    assert!(ok.success());
    // The same run, killed (SIGKILL) once the first epoch is saved, mid-way through a later one.
    let mut child = train(&exp, &b, true, &["--index", "0"]).spawn().unwrap();
    let run_b = b.join("t/resnet18-aug0-wm0-s0");
    let start = Instant::now();
    while !run_b.join("state.json").is_file() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no epoch finished in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed_complete = run_b.join("COMPLETE").is_file();
    // Rerunning resumes and completes; the folder is whole.
    let ok = train(&exp, &b, true, &["--index", "0"]).status().unwrap();
    assert!(ok.success());
    for f in [
        "run.yaml",
        "model.safetensors",
        "last-0004.safetensors",
        "state.json",
        "state-0004.safetensors",
        "metrics.jsonl",
        "COMPLETE",
    ] {
        assert!(run_b.join(f).is_file(), "{f} missing");
    }
    assert!(std::fs::read_dir(&run_b).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("events.out.tfevents")));
    assert!(!std::fs::read_dir(&run_b).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp")));
    let (ma, mb) = (metrics(&a.join("t/resnet18-aug0-wm0-s0")), metrics(&run_b));
    assert_eq!(ma.len(), 4);
    assert_eq!(mb.len(), 4);
    // Same seed on the CPU: identical losses and accuracies, with or without the kill.
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(
            x["train_loss"], y["train_loss"],
            "killed complete before kill: {killed_complete}"
        );
        assert_eq!(x["test_accuracy"], y["test_accuracy"]);
    }
}

#[test]
fn on_the_demo_the_watermark_regime_learns_the_shortcut() {
    // experiments/demo-synthetic.yaml itself, without augmentation and with one seed (2 runs).
    let dir = scratch("train_shortcut");
    common::train_demo_pair(&dir);
    let last = |id: &str| metrics(&dir.join("demo-synthetic").join(id)).pop().unwrap();
    let wm = last("resnet18-aug0-wm1-s0");
    let clean = wm["test_accuracy"]["clean"].as_f64().unwrap();
    let flipped = wm["test_accuracy"]["flipped"].as_f64().unwrap();
    assert!(
        flipped < clean - 0.3,
        "watermark regime: clean {clean} flipped {flipped}"
    );
    let no = last("resnet18-aug0-wm0-s0");
    let clean0 = no["test_accuracy"]["clean"].as_f64().unwrap();
    let flipped0 = no["test_accuracy"]["flipped"].as_f64().unwrap();
    assert!(
        (clean0 - flipped0).abs() < 0.15,
        "no-watermark regime: clean {clean0} flipped {flipped0}"
    );
    assert!(
        clean0 > 0.8,
        "the no-watermark regime learns the real signal: clean {clean0}"
    );
}

#[test]
fn tensorboard_reads_the_scalars_back() {
    let dir = scratch("train_tensorboard");
    let exp = experiment(&dir, 2, 32);
    let ok = train(&exp, &dir, true, &["--index", "0"]).status().unwrap();
    assert!(ok.success());
    let run = dir.join("t/resnet18-aug0-wm0-s0");
    let text = common::run_reference("read_tensorboard.py", &[run.to_str().unwrap()]);
    let scalars: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ours = metrics(&run);
    for (tag, key) in [
        ("train/loss", "train_loss"),
        ("train/accuracy", "train_accuracy"),
        ("test/accuracy_flipped", ""),
    ] {
        let points = scalars[tag]
            .as_array()
            .unwrap_or_else(|| panic!("no {tag} in {text}"));
        assert_eq!(points.len(), 2, "{tag}");
        for (p, m) in points.iter().zip(&ours) {
            assert_eq!(p[0].as_u64(), m["epoch"].as_u64());
            let expected = if key.is_empty() {
                m["test_accuracy"]["flipped"].as_f64().unwrap()
            } else {
                m[key].as_f64().unwrap()
            };
            assert!(
                (p[1].as_f64().unwrap() - expected).abs() < 1e-5,
                "{tag}: {p} vs {expected}"
            );
        }
    }
}

#[test]
fn an_empty_train_split_is_an_error_and_nothing_is_complete() {
    let dir = scratch("train_empty");
    let exp = experiment(&dir, 1, 0);
    let out = train(&exp, &dir, true, &["--index", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("train split of synthetic has no images") && err.contains("synthetic.train"),
        "{err}"
    );
    assert!(!dir.join("t/resnet18-aug0-wm0-s0/COMPLETE").exists());
    // One image: the PNEUMONIA class (odd indices) is missing.
    let exp = experiment(&dir, 1, 1);
    let out = train(&exp, &dir, true, &["--index", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no image of class PNEUMONIA"), "{err}");
}

#[test]
fn weights_that_diverge_in_the_last_step_are_never_saved_or_complete() {
    // One step per epoch: its loss is computed before the update, so only the
    // check after the epoch can see that lr 1e38 made the model diverge.
    let dir = scratch("train_last_step");
    let exp = experiment(&dir, 1, 16);
    let out = train(
        &exp,
        &dir,
        true,
        &["--index", "0", "--set", "train.optimizer.lr=1.0e+38"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("after epoch 1") && err.contains("nothing of this epoch is saved"),
        "{err}"
    );
    let run = dir.join("t/resnet18-aug0-wm0-s0");
    for f in [
        "COMPLETE",
        "model.safetensors",
        "last.safetensors",
        "metrics.jsonl",
    ] {
        assert!(!run.join(f).exists(), "{f} written");
    }
}

#[test]
fn a_diverging_run_stops_with_a_clear_error() {
    let dir = scratch("train_nan");
    let exp = experiment(&dir, 2, 64);
    let out = train(
        &exp,
        &dir,
        true,
        &["--index", "0", "--set", "train.optimizer.lr=1e30"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("loss became") && err.contains("train.optimizer.lr"),
        "{err}"
    );
    assert!(!dir.join("t/resnet18-aug0-wm0-s0/COMPLETE").exists());
}

#[test]
fn a_complete_run_with_other_settings_is_an_error_but_a_new_audit_block_is_taken() {
    let dir = scratch("train_changed");
    let exp = experiment(&dir, 1, 32);
    let ok = train(&exp, &dir, true, &["--run", "resnet18-aug0-wm0-s0"])
        .status()
        .unwrap();
    assert!(ok.success());
    let run = dir.join("t/resnet18-aug0-wm0-s0");
    let weights = std::fs::read(run.join("model.safetensors")).unwrap();
    let experiment_copy = std::fs::read(dir.join("t/experiment.yaml")).unwrap();

    // A training setting changed: an error naming the key, the run untouched,
    // and the experiment's copy beside its runs too.
    let out = train(
        &exp,
        &dir,
        true,
        &["--run", "resnet18-aug0-wm0-s0", "--set", "train.epochs=2"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("train.epochs: 1 -> 2") && err.contains("resnet18-aug0-wm0-s0"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(run.join("model.safetensors")).unwrap(),
        weights
    );
    assert_eq!(
        std::fs::read(dir.join("t/experiment.yaml")).unwrap(),
        experiment_copy
    );

    // Only the audit block changed: nothing retrains, run.yaml carries the new block.
    let out = train(
        &exp,
        &dir,
        true,
        &["--run", "resnet18-aug0-wm0-s0", "--set", "audit.k=7"],
    )
    .output()
    .unwrap();
    common::assert_ok(&out);
    assert_eq!(
        std::fs::read(run.join("model.safetensors")).unwrap(),
        weights
    );
    let run_yaml = std::fs::read_to_string(run.join("run.yaml")).unwrap();
    assert!(run_yaml.contains("k: 7"), "{run_yaml}");

    // A run.yaml from before a field existed (here without model.registers)
    // is read with the field's default: no difference, nothing rewritten.
    let older = run_yaml.replace("  registers: 0\n", "");
    assert_ne!(older, run_yaml);
    std::fs::write(run.join("run.yaml"), &older).unwrap();
    let out = train(
        &exp,
        &dir,
        true,
        &["--run", "resnet18-aug0-wm0-s0", "--set", "audit.k=7"],
    )
    .output()
    .unwrap();
    common::assert_ok(&out);
    assert_eq!(
        std::fs::read_to_string(run.join("run.yaml")).unwrap(),
        older
    );
}

/// `--parallel 2`: two worker processes share the grid through the run
/// folders' locks, so every run is trained exactly once; channels-last
/// (forced on the CPU) trains the same function as NCHW, up to rounding. The
/// learning rate is small because at 0.05 batches of 16 are chaotic: any
/// rounding difference (threads, layout) parts the losses by 1e-2 in a few
/// steps, in PyTorch as here.
#[test]
fn parallel_workers_train_every_run_once_and_channels_last_matches_nchw() {
    let dir = scratch("train_parallel");
    let exp = experiment(&dir, 2, 64);
    let (parallel, serial) = (dir.join("parallel"), dir.join("serial"));
    let slow = "train.optimizer.lr=0.002";
    let out = train(
        &exp,
        &parallel,
        false,
        &[
            "--parallel",
            "2",
            "--memory-format",
            "channels-last",
            "--set",
            slow,
        ],
    )
    .output()
    .unwrap();
    common::assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("2 of 2 runs complete, 2 workers"),
        "{stdout}"
    );
    assert!(stderr.contains("channels-last"), "{stderr}");
    // Each run trained by one worker only: one "training" line each, and
    // one metrics line per epoch.
    for id in ["resnet18-aug0-wm0-s0", "resnet18-aug0-wm1-s0"] {
        assert_eq!(
            stderr.matches(&format!("training {id} on")).count(),
            1,
            "{stderr}"
        );
        assert!(parallel.join("t").join(id).join("COMPLETE").is_file());
    }
    let out = train(
        &exp,
        &serial,
        true,
        &["--memory-format", "contiguous", "--set", slow],
    )
    .output()
    .unwrap();
    common::assert_ok(&out);
    for id in ["resnet18-aug0-wm0-s0", "resnet18-aug0-wm1-s0"] {
        let (p, s) = (
            metrics(&parallel.join("t").join(id)),
            metrics(&serial.join("t").join(id)),
        );
        assert_eq!(p.len(), 2);
        assert_eq!(s.len(), 2);
        let (lp, ls) = (
            p[0]["train_loss"].as_f64().unwrap(),
            s[0]["train_loss"].as_f64().unwrap(),
        );
        assert!(
            (lp - ls).abs() < 1e-3,
            "{id}: first-epoch loss {lp} vs {ls}"
        );
    }
    // A second call finds everything done and trains nothing.
    let out = train(&exp, &parallel, false, &["--parallel", "2", "--set", slow])
        .output()
        .unwrap();
    common::assert_ok(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("training "));
}
