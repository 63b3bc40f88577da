//! Nothing lost, nothing trusted that is broken: kills at any moment,
//! SIGTERM, two processes on one study, a write that fails, bad input.
//!
//! Each test compares against an uninterrupted run of the same tiny study.
//! The CPU is deterministic, so weights compare bit for bit; what cannot be
//! equal are wall-clock fields: `seconds` and `images_per_second` in
//! metrics.jsonl, `created_unix` and each run's `seconds` in audit.json.
mod common;

use std::collections::BTreeMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{nave_lab, scratch};
use rand::{Rng, SeedableRng};

const RUNS: [&str; 2] = ["resnet18-aug0-wm0-s0", "resnet18-aug0-wm1-s0"];

/// A two-run study (with and without the watermark) small enough to train in
/// a few seconds: `train` images per run, `epochs` epochs.
fn study(dir: &Path, train: usize, epochs: usize) -> PathBuf {
    let text = format!(
        "name: tiny\n\
         dataset:\n  kind: synthetic\n  image_size: 32\n  synthetic: {{seed: 0, train: {train}, test: 32}}\n\
         model:\n  arch: resnet18\n  width: 4\n\
         train:\n  epochs: {epochs}\n  batch_size: 16\n  optimizer: {{kind: sgd, lr: 0.05, momentum: 0.9}}\n\
         watermark: {{size: 0.2, target_class: NORMAL}}\n\
         grid:\n  augment: [false]\n  watermark: [false, true]\n  seed: [0]\n\
         audit:\n  taps: [layer2, layer3]\n  k: 4\n  probes: 8\n"
    );
    let path = dir.join("tiny.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn train(exp: &Path, checkpoints: &Path) -> Command {
    let mut cmd = nave_lab();
    cmd.arg("-q")
        .arg("train")
        .arg(exp)
        .arg("--checkpoints")
        .arg(checkpoints);
    cmd
}

fn audit(checkpoints: &Path, reports: &Path) -> Command {
    let mut cmd = nave_lab();
    cmd.arg("-q")
        .arg("audit")
        .arg(checkpoints.join("tiny"))
        .arg("--reports")
        .arg(reports);
    cmd
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    common::assert_ok(&out);
    out
}

/// Per run: the final weights' bytes and the metrics without wall-clock fields.
fn trained(checkpoints: &Path) -> BTreeMap<String, (Vec<u8>, Vec<serde_json::Value>)> {
    RUNS.iter()
        .map(|id| {
            let dir = checkpoints.join("tiny").join(id);
            assert!(dir.join("COMPLETE").is_file(), "{id} is not complete");
            let metrics = std::fs::read_to_string(dir.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let m = v.as_object_mut().unwrap();
                    m.remove("seconds");
                    m.remove("images_per_second");
                    v
                })
                .collect();
            let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
            (id.to_string(), (weights, metrics))
        })
        .collect()
}

/// audit.json without its wall-clock fields.
fn audited(reports: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(reports.join("tiny/audit.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object_mut().unwrap().remove("created_unix");
    for run in v["runs"].as_array_mut().unwrap() {
        run.as_object_mut().unwrap().remove("seconds");
    }
    v
}

/// Every file under `dir` (relative path -> bytes), lock files aside.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.map(Result::unwrap) {
            let path = e.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if !e.file_name().to_string_lossy().ends_with("lock") {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Names under `dir` of temporary files a writer left behind.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir)
        .into_keys()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.contains(".tmp-") || p.iter().any(|c| c.to_string_lossy().ends_with(".staging"))
        })
        .collect()
}

/// Runs `cmd` and kills it (SIGKILL) after `delay`; returns whether the kill landed.
fn kill_after(cmd: &mut Command, delay: Duration) -> bool {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let landed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    landed
}

#[test]
fn a_study_killed_at_any_moment_resumes_to_the_uninterrupted_result() {
    let dir = scratch("reliability_kill_train");
    let exp = study(&dir, 96, 4);
    let reference = dir.join("reference");
    let started = std::time::Instant::now();
    ok(&mut train(&exp, &reference));
    let uninterrupted = started.elapsed();
    let expected = trained(&reference);

    // Named moments (the k-th time a point is reached over both runs' 8
    // epochs): between the study's copy of the experiment file and its
    // rename, between an epoch's files and its metrics, between the metrics
    // and the manifest, right after the manifest, and between the final
    // weights and COMPLETE. Then moments picked at random.
    let mut points: Vec<(String, Option<&str>, Duration)> = [
        "experiment-copy",
        "epoch-files@2",
        "epoch-metrics@3",
        "epoch-manifest@1",
        "epoch-files@5",
        "epoch-manifest@6",
        "before-complete@1",
    ]
    .iter()
    .map(|p| (p.to_string(), Some(*p), Duration::ZERO))
    .collect();
    // Random moments: 10-90% of the way through an uninterrupted training on
    // this machine, so that each kill lands whatever the machine's speed.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..4 {
        let delay = uninterrupted.mul_f64(rng.gen_range(0.1..0.9));
        points.push((format!("{} ms", delay.as_millis()), None, delay));
    }
    for (i, (label, failpoint, delay)) in points.iter().enumerate() {
        let checkpoints = dir.join(format!("killed{i}"));
        let mut cmd = train(&exp, &checkpoints);
        match failpoint {
            Some(point) => {
                let out = cmd.env("NAVE_LAB_FAILPOINT", point).output().unwrap();
                assert_eq!(out.status.signal(), Some(9), "{label}: not killed there");
            }
            None => {
                assert!(
                    kill_after(&mut cmd, *delay),
                    "{label}: training finished before the kill"
                );
            }
        }
        ok(&mut train(&exp, &checkpoints));
        assert_eq!(trained(&checkpoints), expected, "killed at {label}");
        assert_eq!(leftovers(&checkpoints), Vec::<PathBuf>::new(), "{label}");
        // One epoch's files remain per run: the last, named by its manifest.
        for id in RUNS {
            let run = checkpoints.join("tiny").join(id);
            let epoch_files: Vec<String> = std::fs::read_dir(&run)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("last-") || n.starts_with("state-"))
                .collect();
            assert_eq!(epoch_files.len(), 2, "{label}: {epoch_files:?}");
        }
    }
}

#[test]
fn an_audit_killed_at_any_moment_leaves_the_previous_report_whole() {
    let dir = scratch("reliability_kill_audit");
    let exp = study(&dir, 96, 2);
    let checkpoints = dir.join("checkpoints");
    ok(&mut train(&exp, &checkpoints));
    let reference = dir.join("reference");
    let started = std::time::Instant::now();
    ok(&mut audit(&checkpoints, &reference));
    // The random moment is halfway through an audit on this machine, so the
    // kill lands whatever the machine's speed.
    let halfway = started.elapsed() / 2;
    let expected = audited(&reference);

    let points: [(&str, Option<&str>); 5] = [
        ("after the first run", Some("audit-run@1")),
        ("after the second run", Some("audit-run@2")),
        ("after audit.json", Some("audit-json")),
        ("after the HTML, before the swap", Some("report-built")),
        ("at a random moment", None),
    ];
    for (i, (label, failpoint)) in points.iter().enumerate() {
        let reports = dir.join(format!("reports{i}"));
        // A previous report, made with other settings, that the killed audit
        // would replace.
        ok(audit(&checkpoints, &reports).args(["-k", "3"]));
        let before = snapshot(&reports);
        let mut cmd = audit(&checkpoints, &reports);
        match failpoint {
            Some(point) => {
                let out = cmd.env("NAVE_LAB_FAILPOINT", point).output().unwrap();
                assert_eq!(out.status.signal(), Some(9), "{label}: not killed there");
            }
            None => {
                assert!(
                    kill_after(&mut cmd, halfway),
                    "{label}: the audit finished before half its own time ({halfway:?})"
                );
            }
        }
        let after = snapshot(&reports);
        let report_files = |s: &BTreeMap<PathBuf, Vec<u8>>| -> BTreeMap<PathBuf, Vec<u8>> {
            s.iter()
                .filter(|(p, _)| p.starts_with("tiny"))
                .map(|(p, b)| (p.clone(), b.clone()))
                .collect()
        };
        assert!(
            report_files(&after) == report_files(&before),
            "killed {label}: the previous report changed"
        );
        ok(&mut audit(&checkpoints, &reports));
        assert_eq!(audited(&reports), expected, "killed {label}");
        assert_eq!(leftovers(&reports), Vec::<PathBuf>::new(), "{label}");
    }
}

#[test]
fn sigterm_stops_at_a_step_keeps_the_last_epoch_and_the_rerun_resumes() {
    let dir = scratch("reliability_sigterm");
    let exp = study(&dir, 480, 3);
    let reference = dir.join("reference");
    ok(&mut train(&exp, &reference));

    let checkpoints = dir.join("stopped");
    let mut cmd = train(&exp, &checkpoints);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = checkpoints.join("tiny").join(RUNS[0]);
    let started = Instant::now();
    while !first.join("state.json").is_file() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no epoch saved"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100)); // into the second epoch
                                                    // SAFETY: signals a child process of this test.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 15), "{err}");
    assert!(
        err.contains("stopped by SIGTERM") && err.contains("rerun the same command to resume"),
        "{err}"
    );
    assert!(!first.join("COMPLETE").exists());
    assert_eq!(leftovers(&checkpoints), Vec::<PathBuf>::new());
    ok(&mut train(&exp, &checkpoints));
    assert_eq!(trained(&checkpoints), trained(&reference));
}

#[test]
fn two_processes_on_one_study_train_every_run_once() {
    let dir = scratch("reliability_two_processes");
    let exp = study(&dir, 240, 3);
    let reference = dir.join("reference");
    ok(&mut train(&exp, &reference));

    for wait in [false, true] {
        let checkpoints = dir.join(format!("shared-wait-{wait}"));
        let spawn = || {
            let mut cmd = nave_lab();
            cmd.arg("train")
                .arg(&exp)
                .arg("--checkpoints")
                .arg(&checkpoints)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if wait {
                cmd.arg("--wait");
            }
            cmd.spawn().unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let mut log = String::new();
        for out in &outputs {
            common::assert_ok(out);
            log += &String::from_utf8_lossy(&out.stderr);
            log += &String::from_utf8_lossy(&out.stdout);
        }
        for id in RUNS {
            let times = log.matches(&format!("training {id}")).count();
            assert_eq!(
                times, 1,
                "{id} trained {times} times (--wait {wait}):\n{log}"
            );
        }
        assert_eq!(trained(&checkpoints), trained(&reference), "--wait {wait}");
    }
}

#[test]
fn a_write_that_fails_names_the_file_and_leaves_nothing_half_written() {
    let dir = scratch("reliability_full_disk");
    let exp = study(&dir, 96, 2);
    let reference = dir.join("reference");
    ok(&mut train(&exp, &reference));

    let checkpoints = dir.join("limited");
    let mut cmd = train(&exp, &checkpoints);
    // A file-size limit stands in for a full disk: writes past 64 KiB fail
    // (EFBIG) instead of killing the process (SIGXFSZ ignored).
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 64 * 1024,
                rlim_max: 64 * 1024,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("last-0001.safetensors") && err.contains(RUNS[0]),
        "the error names the file: {err}"
    );
    let run = checkpoints.join("tiny").join(RUNS[0]);
    assert!(!run.join("COMPLETE").exists());
    assert!(
        !run.join("last-0001.safetensors").exists(),
        "no short file in place"
    );
    assert_eq!(leftovers(&checkpoints), Vec::<PathBuf>::new());
    ok(&mut train(&exp, &checkpoints));
    assert_eq!(trained(&checkpoints), trained(&reference));
}

#[test]
fn a_damaged_or_misshaped_resume_state_is_refused() {
    let dir = scratch("reliability_resume_state");
    let exp = study(&dir, 64, 2);
    let checkpoints = dir.join("checkpoints");
    // Killed right after the first epoch's manifest: resume state, no COMPLETE.
    let out = train(&exp, &checkpoints)
        .env("NAVE_LAB_FAILPOINT", "epoch-manifest@1")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9));
    let run = checkpoints.join("tiny").join(RUNS[0]);
    let weights = run.join("last-0001.safetensors");
    let good = std::fs::read(&weights).unwrap();

    // A flipped bit in the weights the manifest names.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 5] ^= 1;
    std::fs::write(&weights, &bad).unwrap();
    let out = train(&exp, &checkpoints).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("last-0001.safetensors")
            && err.contains("does not match")
            && err.contains("state.json"),
        "{err}"
    );
    assert!(!run.join("COMPLETE").exists());

    // Optimiser buffers of the wrong shape, with a manifest that vouches for
    // them: refused by name, not a failure inside libtorch.
    std::fs::write(&weights, &good).unwrap();
    let state = run.join("state-0001.safetensors");
    let buffers = tch::Tensor::read_safetensors(&state).unwrap();
    let (name, _) = &buffers[0];
    let wrong = tch::Tensor::zeros([3, 5], (tch::Kind::Float, tch::Device::Cpu));
    let mut changed: Vec<(String, tch::Tensor)> = buffers
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    changed[0].1 = wrong;
    tch::Tensor::write_safetensors(&changed, &state).unwrap();
    let manifest_path = run.join("state.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let digest = nave_lab::io::FileDigest::of_file(&state).unwrap();
    manifest["files"]["state-0001.safetensors"] = serde_json::to_value(digest).unwrap();
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let out = train(&exp, &checkpoints).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("optimiser buffer")
            && err.contains(name.as_str())
            && !err.contains("panicked"),
        "{err}"
    );
}

/// One bad input: the command, what its error must say, its exit code.
struct Case {
    name: &'static str,
    /// The experiment file's text, written to `{dir}/e.yaml` (None: not written).
    yaml: Option<String>,
    /// Arguments; `{dir}` is the case's folder, `{ck}` a trained study's copy.
    args: Vec<&'static str>,
    expect: Vec<&'static str>,
    code: i32,
    /// Changes the copied study before the command runs.
    prepare: Option<fn(&Path)>,
}

const GOOD: &str = "name: e\ndataset:\n  kind: synthetic\n  image_size: 32\n  synthetic: {seed: 0, train: 32, test: 16}\nmodel:\n  arch: resnet18\n  width: 4\ntrain:\n  epochs: 1\n  batch_size: 16\n  optimizer: {kind: sgd, lr: 0.05}\n";

fn yaml(extra: &str) -> Option<String> {
    Some(format!("{GOOD}{extra}"))
}

fn good_with(from: &str, to: &str) -> Option<String> {
    assert!(GOOD.contains(from), "{from}");
    Some(GOOD.replacen(from, to, 1))
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{}: no {from} in\n{text}",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn run_dir(ck: &Path) -> PathBuf {
    ck.join("tiny").join(RUNS[0])
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().map(Result::unwrap) {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn cases() -> Vec<Case> {
    let train_args = vec!["train", "{dir}/e.yaml", "--checkpoints", "{dir}/out"];
    let audit_args = vec!["audit", "{ck}/tiny", "--reports", "{dir}/out"];
    let t = |name, yaml, expect: Vec<&'static str>| Case {
        name,
        yaml,
        args: train_args.clone(),
        expect,
        code: 1,
        prepare: None,
    };
    let a = |name, prepare: fn(&Path), expect: Vec<&'static str>| Case {
        name,
        yaml: None,
        args: audit_args.clone(),
        expect,
        code: 1,
        prepare: Some(prepare),
    };
    let cli = |name, args: Vec<&'static str>, expect: Vec<&'static str>, code| Case {
        name,
        yaml: Some(GOOD.to_string()),
        args,
        expect,
        code,
        prepare: None,
    };
    vec![
        // The experiment file.
        t(
            "unknown key",
            yaml("trian:\n  epochs: 2\n"),
            vec!["e.yaml", "trian", "line 13"],
        ),
        t(
            "unknown nested key",
            good_with("  epochs: 1\n", "  epochs: 1\n  bach_size: 3\n"),
            vec!["bach_size", "line 11"],
        ),
        t(
            "wrong type",
            good_with("epochs: 1", "epochs: many"),
            vec!["e.yaml", "epochs"],
        ),
        t(
            "unknown architecture",
            good_with("arch: resnet18", "arch: resnet99"),
            vec!["resnet99"],
        ),
        t(
            "YAML syntax",
            good_with("synthetic: {seed: 0,", "synthetic: {seed: [0,"),
            vec!["e.yaml", "line"],
        ),
        t("empty file", Some(String::new()), vec!["e.yaml"]),
        t(
            "name with a slash",
            good_with("name: e", "name: ../escape"),
            vec!["../escape"],
        ),
        t(
            "absolute name",
            good_with("name: e", "name: /srv/elsewhere"),
            vec!["/srv/elsewhere"],
        ),
        t(
            "name with a space and a slash",
            good_with("name: e", "name: \"a b/c\""),
            vec!["a b/c"],
        ),
        t(
            "target class that does not exist",
            yaml("watermark: {target_class: \"../x\"}\n"),
            vec!["../x"],
        ),
        t(
            "audit taps empty",
            yaml("audit: {taps: []}\n"),
            vec!["audit.taps"],
        ),
        t(
            "audit probes zero",
            yaml("audit: {probes: 0}\n"),
            vec!["audit.probes"],
        ),
        t(
            "registers negative",
            good_with("width: 4", "width: 4\n  registers: -1"),
            vec!["registers"],
        ),
        t(
            "zero epochs",
            good_with("epochs: 1", "epochs: 0"),
            vec!["epochs"],
        ),
        t(
            "zero image size",
            good_with("image_size: 32", "image_size: 0"),
            vec!["image_size"],
        ),
        t(
            "empty train split",
            good_with("train: 32,", "train: 0,"),
            vec!["no images", "synthetic.train"],
        ),
        t(
            "chest-xray folder missing",
            good_with("kind: synthetic", "kind: chest-xray\n  root: {dir}/nowhere"),
            vec!["nowhere"],
        ),
        // The command line of train.
        cli(
            "experiment file missing",
            vec!["train", "{dir}/missing.yaml", "--checkpoints", "{dir}/out"],
            vec!["missing.yaml"],
            1,
        ),
        cli(
            "experiment is a folder",
            vec!["train", "{dir}", "--checkpoints", "{dir}/out"],
            vec!["{dir}"],
            1,
        ),
        cli(
            "--set without =",
            vec![
                "train",
                "{dir}/e.yaml",
                "--set",
                "train.epochs",
                "--checkpoints",
                "{dir}/out",
            ],
            vec!["train.epochs"],
            1,
        ),
        cli(
            "--set of an unknown key",
            vec![
                "train",
                "{dir}/e.yaml",
                "--set",
                "train.epoch=3",
                "--checkpoints",
                "{dir}/out",
            ],
            vec!["epoch"],
            1,
        ),
        cli(
            "--index out of range",
            vec![
                "train",
                "{dir}/e.yaml",
                "--index",
                "9",
                "--checkpoints",
                "{dir}/out",
            ],
            vec!["--index 9"],
            1,
        ),
        cli(
            "--run unknown",
            vec![
                "train",
                "{dir}/e.yaml",
                "--run",
                "nope",
                "--checkpoints",
                "{dir}/out",
            ],
            vec!["nope"],
            1,
        ),
        // Other commands' arguments.
        cli(
            "explain -k 0",
            vec![
                "explain",
                "--weights",
                "{dir}/e.yaml",
                "--image",
                "{dir}/e.yaml",
                "-k",
                "0",
                "--out",
                "{dir}/out",
            ],
            vec!["0"],
            2,
        ),
        cli(
            "data show --image-size 0",
            vec![
                "data",
                "show",
                "--dataset",
                "synthetic",
                "--image-size",
                "0",
                "--out",
                "{dir}/out/x.png",
            ],
            vec!["image-size"],
            2,
        ),
        cli(
            "data show --image-size -3",
            vec![
                "data",
                "show",
                "--dataset",
                "synthetic",
                "--image-size",
                "-3",
                "--out",
                "{dir}/out/x.png",
            ],
            vec!["-3"],
            2,
        ),
        cli(
            "audit --resolution 0",
            vec![
                "audit",
                "{dir}",
                "--resolution",
                "0",
                "--reports",
                "{dir}/out",
            ],
            vec!["resolution"],
            2,
        ),
        cli(
            "audit of a missing folder",
            vec!["audit", "{dir}/nowhere", "--reports", "{dir}/out"],
            vec!["nowhere"],
            1,
        ),
        cli(
            "audit of a folder without runs",
            vec!["audit", "{dir}", "--reports", "{dir}/out"],
            vec!["no run folders"],
            1,
        ),
        // Run folders the audit reads.
        a(
            "run.yaml names an absolute experiment",
            |ck| {
                edit(
                    &run_dir(ck).join("run.yaml"),
                    "experiment: tiny",
                    "experiment: /srv/elsewhere",
                )
            },
            vec!["/srv/elsewhere", "run.yaml", "is not allowed"],
        ),
        a(
            "run.yaml names an id outside",
            |ck| {
                edit(
                    &run_dir(ck).join("run.yaml"),
                    "id: resnet18-aug0-wm0-s0",
                    "id: ../../x",
                )
            },
            vec!["../../x"],
        ),
        a(
            "two folders of one run",
            |ck| {
                copy_dir(
                    &run_dir(ck),
                    &ck.join("tiny").join("resnet18-aug0-wm0-s0.bak"),
                )
            },
            vec!["resnet18-aug0-wm0-s0.bak", "both run"],
        ),
        a(
            "weights changed after training",
            |ck| {
                let p = run_dir(ck).join("model.safetensors");
                let mut bytes = std::fs::read(&p).unwrap();
                let n = bytes.len();
                bytes[n - 9] ^= 0x40;
                std::fs::write(p, bytes).unwrap();
            },
            vec!["model.safetensors", "does not match", "COMPLETE"],
        ),
        a(
            "weights truncated",
            |ck| {
                let p = run_dir(ck).join("model.safetensors");
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
            },
            vec!["model.safetensors", "does not match"],
        ),
        a(
            "weights of another width, recorded as complete",
            |ck| {
                // A run folder whose COMPLETE vouches for weights that are not its model's.
                let run = run_dir(ck);
                edit(&run.join("run.yaml"), "width: 4", "width: 8");
            },
            vec![
                "resnet18-aug0-wm0-s0",
                "the weights do not match its run.yaml",
                "expects [8]",
            ],
        ),
        a(
            "run.yaml that is not YAML",
            |ck| std::fs::write(run_dir(ck).join("run.yaml"), "id: [unclosed\n").unwrap(),
            vec!["run.yaml"],
        ),
        a(
            "COMPLETE that is not a record",
            |ck| std::fs::write(run_dir(ck).join("COMPLETE"), "{half").unwrap(),
            vec!["COMPLETE", "not a completion record"],
        ),
        // Hostile run names: variants become part of run ids.
        t(
            "variant name that climbs out",
            yaml("grid:\n  variants:\n    \"../up\":\n      watermark: true\n"),
            vec!["../up", "line 15"],
        ),
        t(
            "variant name with a space",
            yaml("grid:\n  variants:\n    \"a b\":\n      watermark: true\n"),
            vec!["a b", "part of run ids"],
        ),
        cli(
            "--run that climbs out",
            vec![
                "train",
                "{dir}/e.yaml",
                "--run",
                "../../x",
                "--checkpoints",
                "{dir}/out",
            ],
            vec!["../../x", "no run"],
            1,
        ),
    ]
}

#[test]
fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let dir = scratch("reliability_bad_input");
    let exp = study(&dir, 64, 1);
    let trained_study = dir.join("trained");
    ok(&mut train(&exp, &trained_study));
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let case_dir = dir.join(format!("case{i:02}"));
        std::fs::create_dir_all(&case_dir).unwrap();
        let case_dir_text = case_dir.to_str().unwrap().to_string();
        let ck = case_dir.join("ck");
        if let Some(prepare) = case.prepare {
            copy_dir(&trained_study, &ck);
            prepare(&ck);
        }
        if let Some(text) = &case.yaml {
            std::fs::write(
                case_dir.join("e.yaml"),
                text.replace("{dir}", &case_dir_text),
            )
            .unwrap();
        }
        let fill = |s: &str| {
            s.replace("{dir}", &case_dir_text)
                .replace("{ck}", ck.to_str().unwrap())
        };
        let before = snapshot(&case_dir);
        let out = nave_lab()
            .arg("-q")
            .args(case.args.iter().map(|a| fill(a)))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut problems = Vec::new();
        if out.status.code() != Some(case.code) {
            problems.push(format!(
                "exit {:?}, expected {}",
                out.status.code(),
                case.code
            ));
        }
        for want in &case.expect {
            if !err.contains(&fill(want)) {
                problems.push(format!("no \"{}\" in the message", fill(want)));
            }
        }
        if !err.starts_with("error:") {
            problems.push("the message does not start with \"error:\"".to_string());
        }
        if err.contains("panicked") {
            problems.push("panicked".to_string());
        }
        let after = snapshot(&case_dir);
        if after != before {
            let new: Vec<_> = after
                .keys()
                .filter(|k| before.get(*k) != after.get(*k))
                .collect();
            problems.push(format!("wrote {new:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{i:02} {}: {}\n    {}",
                case.name,
                problems.join("; "),
                err.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
