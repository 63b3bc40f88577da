//! Running a study on a Slurm cluster: the batch scripts (`train --slurm`
//! writes them under `checkpoints/<name>/slurm/`), their submission with
//! `sbatch`, and what the queue says about them (`status`).
//!
//! One array task per run, each `nave-lab train X.yaml --index I` as a job
//! step: `scancel --signal=TERM` and the warning before the time limit
//! (`--signal=TERM@120`) reach it, the step saves what it has and exits 143,
//! and the task requeues itself to resume. The audit is a job that starts
//! when the array has ended (`afterany`).
pub use crate::io::shell_quote as quote;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// Resources and options of the jobs (`train --slurm ...`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SlurmOptions {
    /// Submit the study to Slurm as a job array (one task per run) and its audit as a dependent job.
    #[arg(long)]
    pub slurm: bool,
    /// Slurm partition.
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// GPUs per task.
    #[arg(long, requires = "slurm")]
    pub gpus_per_task: Option<u32>,
    /// CPU cores per task.
    #[arg(long, requires = "slurm")]
    pub cpus_per_task: Option<u32>,
    /// Memory per task (Slurm's form: 16G, 4000M).
    #[arg(long, requires = "slurm")]
    pub mem: Option<String>,
    /// Time limit per task (Slurm's form: 2:00:00, 1-00:00:00).
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    /// Account to charge.
    #[arg(long, requires = "slurm")]
    pub account: Option<String>,
    /// At most this many tasks at once.
    #[arg(long, requires = "slurm", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: Option<u32>,
    /// Any other sbatch option, passed as given (repeatable): --sbatch-arg=--qos=high.
    #[arg(long = "sbatch-arg", requires = "slurm", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Print the scripts and the sbatch commands; submit and write nothing.
    #[arg(long, requires = "slurm")]
    pub dry_run: bool,
}

impl SlurmOptions {
    /// An error unless every option can stand on an `#SBATCH` line: a
    /// newline would end the line and start a command (sbatch then stops
    /// reading `#SBATCH` lines, dropping `--array` and `--requeue`).
    pub fn check(&self) -> anyhow::Result<()> {
        let named = [
            ("--partition", &self.partition),
            ("--mem", &self.mem),
            ("--time", &self.time),
            ("--account", &self.account),
        ];
        for (flag, value) in named {
            if let Some(v) = value {
                script_safe(flag, v)?;
            }
        }
        for a in &self.sbatch_args {
            script_safe("--sbatch-arg", a)?;
        }
        Ok(())
    }
}

/// An error unless `value` holds no newline or other control character, so
/// that it stays on its line of a job script.
pub fn script_safe(what: &str, value: &str) -> anyhow::Result<()> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        bail!(
            "{what} '{}' holds {}, which would break a line of the Slurm job script; refused",
            value.escape_debug(),
            crate::config::describe_char(c)
        );
    }
    Ok(())
}

/// Everything a script builder writes that came from outside: the study's
/// name (a folder name), the options, and the paths and command words.
fn check_script_values(
    o: &SlurmOptions,
    name: &str,
    paths: &[&Path],
    words: &[String],
) -> anyhow::Result<()> {
    if let Some(why) = crate::config::name_problem(name) {
        bail!("the study's name '{}': {why}", name.escape_debug());
    }
    o.check()?;
    for p in paths {
        script_safe("the path", &p.display().to_string())?;
    }
    for w in words {
        script_safe("the command word", w)?;
    }
    Ok(())
}

/// What was submitted: `checkpoints/<name>/slurm/jobs.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub train_job: String,
    pub audit_job: String,
    /// Run ids by array index.
    pub runs: Vec<String>,
    pub logs: PathBuf,
    pub submitted_unix: u64,
}

/// A value for an `#SBATCH` line, as sbatch reads it: sbatch knows no
/// single quotes; it takes double quotes around spaces, a backslash before
/// the next character, and an unescaped `#` as the start of a comment.
pub fn sbatch_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        if matches!(c, '"' | '\\' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn command_line(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// The `#SBATCH` lines the options ask for.
fn resource_lines(o: &SlurmOptions) -> String {
    let mut out = String::new();
    let mut line = |flag: &str, value: Option<String>| {
        if let Some(v) = value {
            out += &format!("#SBATCH --{flag}={v}\n");
        }
    };
    line("partition", o.partition.as_deref().map(sbatch_word));
    line("gpus-per-task", o.gpus_per_task.map(|g| g.to_string()));
    line("cpus-per-task", o.cpus_per_task.map(|c| c.to_string()));
    line("mem", o.mem.as_deref().map(sbatch_word));
    line("time", o.time.as_deref().map(sbatch_word));
    line("account", o.account.as_deref().map(sbatch_word));
    for a in &o.sbatch_args {
        out += &format!("#SBATCH {}\n", sbatch_word(a));
    }
    out
}

/// The job array's script: one task per run, each training run `--index`.
pub fn train_script(
    o: &SlurmOptions,
    name: &str,
    runs: usize,
    logs: &Path,
    workdir: &Path,
    train: &[String],
) -> anyhow::Result<String> {
    check_script_values(o, name, &[logs, workdir], train)?;
    let limit = o.max_parallel.map(|m| format!("%{m}")).unwrap_or_default();
    Ok(format!(
        "#!/bin/bash
# Written by `nave-lab train --slurm`: one array task per run of {name}.
#SBATCH --job-name={job}
#SBATCH --array=0-{last}{limit}
#SBATCH --output={logs}/train-%A_%a.log
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=TERM@120
{resources}
cd {workdir}
# nave-lab runs as a job step, so that SIGTERM (scancel --signal=TERM, or the
# warning before the time limit) reaches it: it keeps the last finished epoch
# and exits 143, and the task is requeued to resume from there.
srun {train} --index \"$SLURM_ARRAY_TASK_ID\"
rc=$?
if [ \"$rc\" -eq 143 ] || [ \"$rc\" -eq 130 ]; then
  echo \"nave-lab: task $SLURM_ARRAY_TASK_ID stopped by a signal; requeueing job $SLURM_JOB_ID to resume\"
  scontrol requeue \"$SLURM_JOB_ID\"
fi
exit $rc
",
        job = sbatch_word(&format!("nave-train-{name}")),
        last = runs.saturating_sub(1),
        logs = sbatch_word(&logs.display().to_string()),
        resources = resource_lines(o),
        workdir = quote(&workdir.display().to_string()),
        train = command_line(train),
    ))
}

/// The audit's script, run once the array has ended.
pub fn audit_script(
    o: &SlurmOptions,
    name: &str,
    logs: &Path,
    workdir: &Path,
    audit: &[String],
) -> anyhow::Result<String> {
    check_script_values(o, name, &[logs, workdir], audit)?;
    let resources = SlurmOptions {
        max_parallel: None,
        ..o.clone()
    };
    Ok(format!(
        "#!/bin/bash
# Written by nave-lab (--slurm): the audit of {name}, once its runs have ended.
#SBATCH --job-name={job}
#SBATCH --output={logs}/audit-%j.log
{resources}
cd {workdir}
srun {audit}
",
        job = sbatch_word(&format!("nave-audit-{name}")),
        logs = sbatch_word(&logs.display().to_string()),
        resources = resource_lines(&resources),
        workdir = quote(&workdir.display().to_string()),
        audit = command_line(audit),
    ))
}

/// `audit --slurm`'s array: one task per finished run, each `audit --run ID`.
pub fn audit_runs_script(
    o: &SlurmOptions,
    name: &str,
    ids: &[String],
    logs: &Path,
    workdir: &Path,
    audit: &[String],
) -> anyhow::Result<String> {
    check_script_values(o, name, &[logs, workdir], audit)?;
    for id in ids {
        if let Some(why) = crate::config::name_problem(id) {
            bail!("run id '{}': {why}", id.escape_debug());
        }
    }
    let limit = o.max_parallel.map(|m| format!("%{m}")).unwrap_or_default();
    Ok(format!(
        "#!/bin/bash
# Written by `nave-lab audit --slurm`: one array task per finished run of {name}.
#SBATCH --job-name={job}
#SBATCH --array=0-{last}{limit}
#SBATCH --output={logs}/audit-%A_%a.log
{resources}
cd {workdir}
runs=({ids})
srun {audit} --run \"${{runs[$SLURM_ARRAY_TASK_ID]}}\"
",
        job = sbatch_word(&format!("nave-audit-runs-{name}")),
        last = ids.len().saturating_sub(1),
        logs = sbatch_word(&logs.display().to_string()),
        resources = resource_lines(o),
        workdir = quote(&workdir.display().to_string()),
        ids = command_line(ids),
        audit = command_line(audit),
    ))
}

/// Two batch scripts, the second to start once the first has ended (the
/// training array and its audit; the audit array and its merge).
pub struct JobPair {
    pub first: PathBuf,
    pub first_text: String,
    pub then: PathBuf,
    pub then_text: String,
    /// Where the jobs write their logs (created before submitting).
    pub logs: PathBuf,
}

impl JobPair {
    /// With `dry_run`, prints both scripts and the sbatch lines that would
    /// submit them, and returns None. Otherwise checks that sbatch is there,
    /// runs `before` (what must hold before anything is written), writes
    /// both scripts and submits them: their job ids.
    pub fn submit(
        &self,
        dry_run: bool,
        before: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<Option<(String, String)>> {
        if dry_run {
            println!("# {}\n{}", self.first.display(), self.first_text);
            println!("# {}\n{}", self.then.display(), self.then_text);
            println!(
                "sbatch --parsable {}",
                quote(&self.first.display().to_string())
            );
            println!(
                "sbatch --parsable --dependency=afterany:<the first job's id> {}",
                quote(&self.then.display().to_string())
            );
            return Ok(None);
        }
        find_tool("sbatch")?;
        before()?;
        std::fs::create_dir_all(&self.logs)
            .with_context(|| format!("creating {}", self.logs.display()))?;
        crate::io::write_atomic(&self.first, self.first_text.as_bytes())?;
        crate::io::write_atomic(&self.then, self.then_text.as_bytes())?;
        let first_job = submit(&self.first, None)?;
        let then_job = submit(&self.then, Some(&first_job))?;
        Ok(Some((first_job, then_job)))
    }
}

/// An absolute form of `path` for scripts that run elsewhere (relative to
/// the current folder; unchanged if that cannot be known).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A Slurm command's path, or an error that says what is missing.
pub fn find_tool(tool: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{tool} was not found on PATH: --slurm and status's queue view need Slurm's commands \
                 (run on a login node of the cluster; --dry-run prints the scripts without them)"
            )
        })
}

/// Submits `script`, after `after` ends when given; returns the job id.
pub fn submit(script: &Path, after: Option<&str>) -> anyhow::Result<String> {
    let mut cmd = Command::new(find_tool("sbatch")?);
    cmd.arg("--parsable");
    if let Some(job) = after {
        cmd.arg(format!("--dependency=afterany:{job}"));
    }
    let out = cmd
        .arg(script)
        .output()
        .with_context(|| format!("running sbatch {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "sbatch {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // --parsable prints "id" or "id;cluster".
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch {} printed no job id: {text}", script.display());
    }
    Ok(id)
}

/// Queue state (PENDING, RUNNING, ...) of each array task still queued and,
/// under `None`, of the job itself when it is not an array.
pub fn queue_states(job: &str) -> anyhow::Result<BTreeMap<Option<usize>, String>> {
    let out = Command::new(find_tool("squeue")?)
        .args(["-h", "-r", "-j", job, "-o", "%K|%T"])
        .output()
        .context("running squeue")?;
    // A job that left the queue is an error to squeue: nothing queued.
    if !out.status.success() {
        return Ok(BTreeMap::new());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(index, state)| (index.trim().parse().ok(), state.trim().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(quote("checkpoints/x-1"), "checkpoints/x-1");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn the_array_script_has_one_task_per_run_and_requeues_on_sigterm() {
        let o = SlurmOptions {
            slurm: true,
            partition: Some("gpu".into()),
            gpus_per_task: Some(1),
            max_parallel: Some(4),
            sbatch_args: vec!["--qos=high".into()],
            ..Default::default()
        };
        let s = train_script(
            &o,
            "wm",
            12,
            Path::new("/c/wm/slurm/logs"),
            Path::new("/work dir"),
            &["/bin/nave-lab".into(), "train".into(), "x.yaml".into()],
        )
        .unwrap();
        for line in [
            "#SBATCH --array=0-11%4",
            "#SBATCH --output=/c/wm/slurm/logs/train-%A_%a.log",
            "#SBATCH --requeue",
            "#SBATCH --signal=TERM@120",
            "#SBATCH --partition=gpu",
            "#SBATCH --gpus-per-task=1",
            "#SBATCH --qos=high",
            "cd '/work dir'",
            "srun /bin/nave-lab train x.yaml --index \"$SLURM_ARRAY_TASK_ID\"",
            "scontrol requeue \"$SLURM_JOB_ID\"",
        ] {
            assert!(s.contains(line), "no {line} in\n{s}");
        }
        let a = audit_script(
            &o,
            "wm",
            Path::new("/l"),
            Path::new("/w"),
            &["audit".into()],
        )
        .unwrap();
        assert!(
            !a.contains("--array") && a.contains("#SBATCH --partition=gpu"),
            "{a}"
        );
    }

    #[test]
    fn sbatch_lines_quote_as_sbatch_reads_them() {
        assert_eq!(sbatch_word("gpu"), "gpu");
        assert_eq!(sbatch_word("/a b/logs"), "\"/a b/logs\"");
        assert_eq!(sbatch_word("x#y"), "\"x\\#y\"");
        assert_eq!(sbatch_word("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(sbatch_word("--qos=high"), "--qos=high");
    }

    #[test]
    fn a_newline_in_a_name_or_an_option_never_reaches_a_script() {
        let words = ["/bin/nave-lab".to_string(), "train".into()];
        let (logs, work) = (Path::new("/l"), Path::new("/w"));
        let ok = SlurmOptions::default();
        for (name, o) in [
            ("x\ntouch PWNED #", ok.clone()),
            ("x;touch PWNED", ok.clone()),
            (
                "wm",
                SlurmOptions {
                    partition: Some("gpu\ntouch PWNED".into()),
                    ..ok.clone()
                },
            ),
            (
                "wm",
                SlurmOptions {
                    sbatch_args: vec!["--qos=high\nrm -rf ~".into()],
                    ..ok.clone()
                },
            ),
            (
                "wm",
                SlurmOptions {
                    time: Some("1:00:00\r".into()),
                    ..ok.clone()
                },
            ),
        ] {
            let err = format!(
                "{:#}",
                train_script(&o, name, 2, logs, work, &words).unwrap_err()
            );
            assert!(
                err.contains("refused") || err.contains("not allowed"),
                "{name:?}: {err}"
            );
            assert!(audit_script(&o, name, logs, work, &words).is_err());
        }
        let bad_path = Path::new("/l\n/x");
        assert!(train_script(&ok, "wm", 2, bad_path, work, &words).is_err());
        let bad_word = ["a\nb".to_string()];
        assert!(audit_script(&ok, "wm", logs, work, &bad_word).is_err());
        let ids = ["r-s0".to_string(), "r\n-s1".to_string()];
        assert!(audit_runs_script(&ok, "wm", &ids, logs, work, &words).is_err());
        // Every line of a script built from good values is a comment, a
        // directive or one of the commands written here.
        let s = train_script(&ok, "wm", 2, logs, work, &words).unwrap();
        assert!(s.contains("#SBATCH --job-name=nave-train-wm\n"), "{s}");
    }
}
