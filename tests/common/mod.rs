//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::path::PathBuf;
use std::process::Command;

/// The `nave-lab` binary built for these tests, with a clean environment for
/// the variables that change its behaviour.
pub fn nave_lab() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nave-lab"));
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd
}

/// A fresh scratch folder under the target directory (kept after the test for inspection).
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Python of the reference stack (PyTorch, torchvision, timm, TensorBoard,
/// scikit-learn) that `make test` installs with scripts/setup-reference.sh.
pub fn reference_python() -> PathBuf {
    if let Some(p) = std::env::var_os("NAVE_LAB_REFERENCE_PYTHON") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-ref/bin/python");
    assert!(p.is_file(), "{} is missing: run `make test` (or scripts/setup-reference.sh) to install the reference stack", p.display());
    p
}

/// Runs a script of tests/python with the reference Python; panics with its output on failure.
pub fn run_reference(script: &str, args: &[&str]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = Command::new(reference_python())
        .arg(&path)
        .args(args)
        .output()
        .expect("starting the reference Python");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Trains two runs of experiments/demo-synthetic.yaml (the demo's study on
/// the built-in synthetic set: no augmentation, seed 0, with and without the
/// watermark) under `dir`; returns `dir/demo-synthetic`.
pub fn train_demo_pair(dir: &std::path::Path) -> PathBuf {
    let demo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/demo-synthetic.yaml"
    );
    let ok = nave_lab()
        .args([
            "-q",
            "train",
            demo,
            "--set",
            "grid.augment=[false]",
            "--set",
            "grid.seed=[0]",
            "--checkpoints",
            dir.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(ok.success(), "training the demo pair failed");
    dir.join("demo-synthetic")
}

/// Asserts that a finished command succeeded, showing its stderr otherwise.
pub fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The stderr of a command that must have failed cleanly: exit status 1 (an
/// error, not a panic's 101 or a signal), no panic message.
pub fn refused(o: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "not a clean error:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}
