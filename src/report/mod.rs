//! The HTML report: `reports/<experiment>/index.html` and a page per run,
//! rebuilt from audit.json and the run folders without recomputing anything.
//!
//! audit.json is read through the types the audit writes it with
//! (`audit::AuditReport`); what an older file lacks is defaulted there and
//! listed here as missing. Self-contained: the CSS is inline, the pictures
//! are PNG/SVG files beside the HTML, there is no script, font or network
//! access. Everything that comes from a user (names, paths, YAML) goes
//! through the template engine's HTML escaping.
mod curves;
mod external;
mod format;
mod index;
mod run_page;

use std::path::{Path, PathBuf};

use minijinja::Environment;

use crate::audit::{AuditReport, RunResult};
use crate::config::RunSpec;
use crate::run_folder::{EpochMetrics, RunFolder};

const CSS: &str = include_str!("templates/style.css");
const INDEX: &str = include_str!("templates/index.html");
const RUN: &str = include_str!("templates/run.html");
const EXTERNAL: &str = include_str!("templates/external.html");

/// What `build` produced.
pub struct Built {
    pub index: PathBuf,
    /// Things audit.json or the run folders lack, as shown in the report.
    pub missing: Vec<String>,
    pub pages: usize,
}

/// What one run's folder holds for the report, read once.
struct RunFiles {
    folder: Option<RunFolder>,
    /// metrics.jsonl, one entry per epoch (empty when unreadable).
    metrics: Vec<EpochMetrics>,
    run_yaml: Option<String>,
    spec: Option<RunSpec>,
}

impl RunFiles {
    fn read(run: &RunResult) -> Self {
        let folder = run.run_dir.as_ref().map(RunFolder::new);
        let metrics = folder
            .as_ref()
            .map(|f| f.epoch_metrics(usize::MAX))
            .unwrap_or_default();
        let run_yaml = folder
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f.run_yaml()).ok());
        let spec = folder.as_ref().and_then(|f| f.spec().ok());
        Self {
            folder,
            metrics,
            run_yaml,
            spec,
        }
    }
}

/// What the pages are built from: audit.json and each run's files, and
/// where the report is written and will be read from.
struct Sources<'a> {
    audit: AuditReport,
    /// The experiment's name; the report folder's where audit.json names none.
    experiment: String,
    /// `RunFiles` of each of `audit.runs`, in the same order.
    files: Vec<RunFiles>,
    report_dir: &'a Path,
    final_dir: &'a Path,
}

impl Sources<'_> {
    /// Writes the report's `index.html` (either kind); returns its path.
    fn write_index(&self, html: &str) -> anyhow::Result<PathBuf> {
        let index = self.report_dir.join("index.html");
        crate::io::write_atomic(&index, html.as_bytes())?;
        Ok(index)
    }
}

/// Builds the report from `report_dir/audit.json` into `report_dir`;
/// `final_dir` is where it will be read from (the audit builds it in a
/// staging folder and moves it there), as its text names it.
pub fn build(report_dir: &Path, final_dir: &Path, grid_probes: usize) -> anyhow::Result<Built> {
    let audit = AuditReport::read(&report_dir.join("audit.json"))?;
    let files = audit.runs.iter().map(RunFiles::read).collect();
    let experiment = if audit.experiment.is_empty() {
        folder_name(report_dir)
    } else {
        audit.experiment.clone()
    };
    let sources = Sources {
        audit,
        experiment,
        files,
        report_dir,
        final_dir,
    };
    let mut env = Environment::new();
    env.add_template("index.html", INDEX)?;
    env.add_template("run.html", RUN)?;
    env.add_template("external.html", EXTERNAL)?;
    let (index, missing) = match &sources.audit.external {
        Some(source) => external::write(&env, &sources, source)?,
        None => index::write(&env, &sources, grid_probes)?,
    };
    let mut pages = 0;
    for (run, files) in sources.audit.runs.iter().zip(&sources.files) {
        run_page::write(&env, &sources, run, files)?;
        pages += 1;
    }
    Ok(Built {
        index,
        missing,
        pages,
    })
}

fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
