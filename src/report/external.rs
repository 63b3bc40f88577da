//! The index page of an audit from files (`audit --weights`): where the
//! model and data came from, the verdict, the probes' page, and the training
//! files that carry the found object.
use std::path::PathBuf;

use minijinja::{context, Environment};

use super::format::{number, utc};
use super::index::run_page_name;
use super::{Sources, CSS};
use crate::audit::external::{ExternalSource, OBJECT_RULE};
use crate::detect::verdict::{Verdict, SHORTCUT_THRESHOLD};

/// Writes index.html for an audit from files; returns its path and what the
/// report says is missing.
pub(super) fn write(
    env: &Environment,
    s: &Sources,
    source: &ExternalSource,
) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let audit = &s.audit;
    let run = audit.runs.first();
    let verdict = run.and_then(|r| r.verdict.as_ref());
    let mut missing = Vec::new();
    if verdict.is_none() {
        missing.push("audit.json holds no verdict".to_string());
    }
    let no_carriers = no_carriers(verdict);
    let settings = audit.settings.as_ref().map(|st| {
        format!(
            "{:?} with K = {} on {}, scope {:?}",
            st.method,
            st.k,
            st.taps.join("+"),
            st.scope
        )
        .to_lowercase()
    });
    let html = env.get_template("external.html")?.render(context! {
        css => CSS,
        name => &s.experiment,
        created => match audit.created_unix {
            0 => "(unknown time)".to_string(),
            t => utc(t),
        },
        device => &audit.device,
        arch => &source.arch,
        weights => source.weights.display().to_string(),
        sha256 => &source.weights_sha256,
        data => source.data.display().to_string(),
        test => source.test.as_ref().map(|t| t.display().to_string()),
        skipped => source.skipped.len(),
        preprocessing => &source.preprocessing,
        missing => &missing,
        verdict => verdict.map(|v| v.line(&run.expect("a verdict has a run").id)),
        flagged => verdict.is_some_and(|v| v.flagged),
        threshold => format!("{SHORTCUT_THRESHOLD:.3}"),
        accuracy => run.and_then(|r| r.accuracy.get("clean")).map(|a| number(Some(*a))),
        run_page => run.map(|r| run_page_name(&r.id)),
        n_probes => audit.probes.len(),
        settings => settings,
        carriers => &source.carriers,
        cut => source.carriers.as_ref().map(|c| format!("{:.3}", c.cut)),
        rule => source.carriers.as_ref().map(|c| match c.rule.as_str() {
            "" => OBJECT_RULE,
            rule => rule,
        }),
        no_carriers => no_carriers,
        image_size => audit.image_size,
        version => env!("CARGO_PKG_VERSION"),
        report_dir => s.final_dir.display().to_string(),
    })?;
    Ok((s.write_index(&html)?, missing))
}

/// Why no training file is scored, in words.
fn no_carriers(verdict: Option<&Verdict>) -> &'static str {
    match verdict {
        None => "",
        Some(v) if !v.flagged => "The model is not flagged: there is no found object to look for.",
        Some(v) if v.global_cue.is_some() => {
            "The evidence is a global cue (no region): every image of the class carries it, so no file is singled out."
        }
        Some(v) if v.source == crate::detect::Source::Sensitivity => {
            "The evidence is where the model looks, but this audit.json does not keep how to find that place again: rerun nave-lab audit --force to score the files."
        }
        Some(_) => "The verdict's region is not one reproduced object (the detector found no recurring template in it): files are not scored.",
    }
}
