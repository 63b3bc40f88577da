//! `train --slurm` and `status` on a real Slurm: a one-node cluster started
//! for the test on this machine (scripts/slurm-local.sh; `make test` installs
//! Debian's slurm-wlm and munge), stopped at the end.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{nave_lab, scratch};

struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Self {
        let out = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/slurm-local.sh"
        ))
        .arg("start")
        .arg(dir)
        .output()
        .expect("running scripts/slurm-local.sh (make setup-slurm installs Slurm)");
        common::assert_ok(&out);
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.env("SLURM_CONF", self.conf());
        cmd
    }

    fn nave_lab(&self) -> Command {
        let mut cmd = nave_lab();
        cmd.env("SLURM_CONF", self.conf());
        cmd
    }

    /// `nave-lab train EXP --checkpoints C --reports R ARGS...` against this cluster.
    fn train(
        &self,
        exp: &Path,
        checkpoints: &Path,
        reports: &Path,
        args: &[&str],
    ) -> std::process::Output {
        self.nave_lab()
            .arg("train")
            .arg(exp)
            .arg("--checkpoints")
            .arg(checkpoints)
            .arg("--reports")
            .arg(reports)
            .args(args)
            .output()
            .unwrap()
    }

    /// Waits until none of `jobs` is queued any more.
    fn wait_for(&self, jobs: &[&str], limit: Duration) {
        let started = Instant::now();
        loop {
            let out = self
                .command("squeue")
                .args(["-h", "-j", &jobs.join(",")])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "jobs {jobs:?} still queued after {limit:?}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/slurm-local.sh"
        ))
        .arg("stop")
        .arg(&self.dir)
        .status();
    }
}

fn study(dir: &Path, name: &str, train: usize, epochs: usize, seeds: &str) -> PathBuf {
    let text = format!(
        "name: {name}\n\
         dataset:\n  kind: synthetic\n  image_size: 32\n  synthetic: {{seed: 0, train: {train}, test: 32}}\n\
         model:\n  arch: resnet18\n  width: 4\n\
         train:\n  epochs: {epochs}\n  batch_size: 16\n  optimizer: {{kind: sgd, lr: 0.05, momentum: 0.9}}\n\
         watermark: {{size: 0.2, target_class: NORMAL}}\n\
         grid:\n  augment: [false]\n  watermark: [false, true]\n  seed: {seeds}\n\
         audit:\n  taps: [layer2, layer3]\n  k: 4\n  probes: 8\n"
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn jobs(study: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(study.join("slurm/jobs.json")).unwrap()).unwrap()
}

fn weights(study: &Path, id: &str) -> Vec<u8> {
    let run = study.join(id);
    assert!(run.join("COMPLETE").is_file(), "{id} is not complete");
    std::fs::read(run.join("model.safetensors")).unwrap()
}

/// `nave-lab -q train EXP --checkpoints C` without Slurm; it must succeed.
fn train_locally(exp: &Path, checkpoints: &Path) {
    let ok = nave_lab()
        .args(["-q", "train"])
        .arg(exp)
        .arg("--checkpoints")
        .arg(checkpoints)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn a_study_runs_on_slurm_and_a_preempted_task_resumes() {
    let dir = scratch("slurm");
    let cluster = Cluster::start(&dir.join("cluster"));

    // A 4-run study: one array task per run, then the audit.
    let exp = study(&dir, "wm", 96, 3, "[0, 1]");
    // A space and a '#' in the path: sbatch reads `#SBATCH --output=` with
    // its own rules (double quotes, backslashes, '#' a comment), and the
    // logs must still land where this test reads them.
    let checkpoints = dir.join("check points #1");
    let reports = dir.join("reports");
    let out = cluster.train(
        &exp,
        &checkpoints,
        &reports,
        &["--slurm", "--cpus-per-task", "1", "--time", "30:00"],
    );
    common::assert_ok(&out);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("submitted job array") && printed.contains("4 task(s)"),
        "{printed}"
    );
    let study_dir = checkpoints.join("wm");
    let script = std::fs::read_to_string(study_dir.join("slurm/train.sbatch")).unwrap();
    assert!(
        script.contains("#SBATCH --array=0-3") && script.contains("#SBATCH --cpus-per-task=1"),
        "{script}"
    );
    let j = jobs(&study_dir);
    let (train_job, audit_job) = (
        j["train_job"].as_str().unwrap(),
        j["audit_job"].as_str().unwrap(),
    );
    cluster.wait_for(&[train_job, audit_job], Duration::from_secs(600));

    // Every run complete, with the weights a local `train` gives.
    let local = dir.join("local");
    train_locally(&exp, &local);
    let ids: Vec<String> = j["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 4);
    for id in &ids {
        assert!(
            weights(&study_dir, id) == weights(&local.join("wm"), id),
            "{id}: Slurm and local training differ"
        );
    }
    // The audit ran as the dependent job, over all four runs.
    let audit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("wm/audit.json")).unwrap())
            .unwrap();
    assert_eq!(audit["runs"].as_array().unwrap().len(), 4);
    assert!(reports.join("wm/index.html").is_file());
    assert!(study_dir
        .join(format!("slurm/logs/audit-{audit_job}.log"))
        .is_file());
    // status says so.
    let out = cluster
        .nave_lab()
        .arg("status")
        .arg(&study_dir)
        .arg("--json")
        .output()
        .unwrap();
    common::assert_ok(&out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<&str> = status["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["done"; 4], "{status}");
    assert_eq!(status["runs"][0]["epochs_done"], 3);
    assert_eq!(status["slurm"]["train_job"], train_job);

    // The audit fanned out: one task per run, then the merge.
    let out = cluster
        .nave_lab()
        .arg("audit")
        .arg(&study_dir)
        .arg("--reports")
        .arg(&reports)
        .args(["-k", "3", "--slurm"])
        .output()
        .unwrap();
    common::assert_ok(&out);
    let printed = String::from_utf8_lossy(&out.stdout);
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(study_dir.join("slurm/audit-jobs.json")).unwrap(),
    )
    .unwrap();
    let (runs_job, merge_job) = (
        record["runs_job"].as_str().unwrap().to_string(),
        record["merge_job"].as_str().unwrap().to_string(),
    );
    assert!(printed.contains("4 task(s)"), "{printed}");
    cluster.wait_for(&[&runs_job, &merge_job], Duration::from_secs(600));
    let audit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("wm/audit.json")).unwrap())
            .unwrap();
    assert_eq!(
        audit["settings"]["k"], 3,
        "the merged audit has the new settings"
    );
    assert_eq!(audit["runs"].as_array().unwrap().len(), 4);
    assert!(
        !reports.join(".wm.parts").exists(),
        "the parts are taken in"
    );

    // Preemption: SIGTERM to a running task; it saves, exits 143, requeues
    // itself and resumes from its last epoch.
    let exp = study(&dir, "pre", 480, 4, "[0]");
    let out = cluster.train(
        &exp,
        &checkpoints,
        &reports,
        &["--set", "grid.watermark=[true]", "--slurm"],
    );
    common::assert_ok(&out);
    let study_dir = checkpoints.join("pre");
    let j = jobs(&study_dir);
    let (train_job, audit_job) = (
        j["train_job"].as_str().unwrap(),
        j["audit_job"].as_str().unwrap(),
    );
    let id = j["runs"][0].as_str().unwrap().to_string();
    let started = Instant::now();
    while !study_dir.join(&id).join("state.json").is_file() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no epoch saved"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ok = cluster
        .command("scancel")
        .arg("--signal=TERM")
        .arg(format!("{train_job}_0"))
        .status()
        .unwrap();
    assert!(ok.success());
    cluster.wait_for(&[train_job, audit_job], Duration::from_secs(600));
    let log =
        std::fs::read_to_string(study_dir.join(format!("slurm/logs/train-{train_job}_0.log")))
            .unwrap();
    assert!(
        log.contains("stopped by SIGTERM")
            && log.contains("requeueing")
            && log.contains("resuming after epoch"),
        "{log}"
    );
    let ok = nave_lab()
        .args(["-q", "train"])
        .arg(&exp)
        .args(["--set", "grid.watermark=[true]", "--checkpoints"])
        .arg(&local)
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(
        weights(&study_dir, &id) == weights(&local.join("pre"), &id),
        "the preempted run ends with other weights than an uninterrupted one"
    );
    assert!(reports.join("pre/audit.json").is_file());
}

#[test]
fn audit_run_parts_are_merged_without_recomputing() {
    let dir = scratch("audit_parts");
    let exp = study(&dir, "parts", 64, 1, "[0]");
    let checkpoints = dir.join("checkpoints");
    let reports = dir.join("reports");
    train_locally(&exp, &checkpoints);
    let study_dir = checkpoints.join("parts");
    let ids = ["resnet18-aug0-wm0-s0", "resnet18-aug0-wm1-s0"];
    let mut seconds = Vec::new();
    for id in ids {
        let out = nave_lab()
            .args(["-q", "audit"])
            .arg(&study_dir)
            .arg("--reports")
            .arg(&reports)
            .args(["--run", id])
            .output()
            .unwrap();
        common::assert_ok(&out);
        let part = reports.join(".parts.parts").join(id);
        let result: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(part.join("result.json")).unwrap())
                .unwrap();
        assert_eq!(result["id"], id);
        assert!(part.join("p000_clean_overlay.png").is_file());
        seconds.push(result["seconds"].clone());
    }
    assert!(!reports.join("parts").exists(), "a part is not the report");
    let out = nave_lab()
        .args(["-q", "audit"])
        .arg(&study_dir)
        .arg("--reports")
        .arg(&reports)
        .output()
        .unwrap();
    common::assert_ok(&out);
    let audit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("parts/audit.json")).unwrap())
            .unwrap();
    let merged: Vec<serde_json::Value> = audit["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seconds"].clone())
        .collect();
    assert_eq!(merged, seconds, "the merge took the parts as they were");
    assert!(reports
        .join("parts/runs/resnet18-aug0-wm1-s0/p000_wm_overlay.png")
        .is_file());
    assert!(!reports.join(".parts.parts").exists());
    // An unknown or unfinished run is named.
    let out = nave_lab()
        .args(["-q", "audit"])
        .arg(&study_dir)
        .args(["--run", "nope"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no finished run 'nope'") && err.contains(ids[0]),
        "{err}"
    );
}

#[test]
fn status_tells_done_stopped_failed_and_not_started_runs_apart() {
    let dir = scratch("status");
    let exp = study(&dir, "st", 64, 2, "[0, 1]");
    let checkpoints = dir.join("checkpoints");
    let train = |args: &[&str]| {
        let mut cmd = nave_lab();
        cmd.args(["-q", "train"])
            .arg(&exp)
            .arg("--checkpoints")
            .arg(&checkpoints)
            .args(args);
        cmd
    };
    // Run 0: killed after its first epoch. Run 1: diverges. Run 2: done.
    let out = train(&["--index", "0"])
        .env("NAVE_LAB_FAILPOINT", "epoch-manifest@1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = train(&["--index", "1", "--set", "train.optimizer.lr=1e38"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    common::assert_ok(&train(&["--index", "2"]).output().unwrap());

    let out = nave_lab()
        .arg("status")
        .arg(checkpoints.join("st"))
        .arg("--json")
        .output()
        .unwrap();
    common::assert_ok(&out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = status["runs"].as_array().unwrap();
    let states: Vec<&str> = runs.iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(
        states,
        ["stopped", "failed", "done", "not started"],
        "{status}"
    );
    assert_eq!(runs[0]["epochs_done"], 1);
    assert_eq!(runs[2]["epochs_done"], 2);
    assert!(runs[2]["test_accuracy_clean"].as_f64().is_some());
    let reason = runs[1]["reason"].as_str().unwrap();
    assert!(reason.contains("train.optimizer.lr"), "{reason}");

    // The table says the same, with a count per state.
    let out = nave_lab()
        .arg("status")
        .arg(checkpoints.join("st"))
        .output()
        .unwrap();
    common::assert_ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .contains("4 run(s): 1 done, 0 running, 0 pending, 1 failed, 1 stopped, 1 not started"),
        "{table}"
    );
}

#[test]
fn slurm_commands_say_when_sbatch_is_missing() {
    let dir = scratch("no_sbatch");
    let exp = study(&dir, "ns", 32, 1, "[0]");
    let out = nave_lab()
        .env("PATH", "/nonexistent")
        .arg("train")
        .arg(&exp)
        .arg("--checkpoints")
        .arg(dir.join("checkpoints"))
        .arg("--slurm")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sbatch was not found") && err.contains("--dry-run"),
        "{err}"
    );
    assert!(!dir.join("checkpoints").exists(), "nothing written");
    // --dry-run needs no Slurm and writes nothing.
    let out = nave_lab()
        .env("PATH", "/nonexistent")
        .arg("train")
        .arg(&exp)
        .arg("--checkpoints")
        .arg(dir.join("checkpoints"))
        .args(["--slurm", "--dry-run", "--time", "1:00:00"])
        .output()
        .unwrap();
    common::assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("#SBATCH --array=0-1") && text.contains("#SBATCH --time=1:00:00"),
        "{text}"
    );
    assert!(!dir.join("checkpoints").exists(), "nothing written");
}
