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
