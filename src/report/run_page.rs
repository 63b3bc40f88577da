//! One page per run: its measures, the blind verdict, the metrics per
//! epoch, and every probe's pictures with the known box and the suspect
//! region outlined.
use minijinja::{context, Environment};
use serde::Serialize;

use super::format::{box_style, link_to, number};
use super::index::{run_boxes, run_page_name};
use super::{RunFiles, Sources, CSS};
use crate::audit::RunResult;
use crate::run_folder::EpochMetrics;

/// One row of the metrics table.
#[derive(Serialize)]
struct EpochRow {
    epoch: usize,
    train_loss: String,
    train_acc: String,
    clean: String,
    as_train: String,
    flipped: String,
    lr: String,
    ips: String,
}

impl EpochRow {
    fn of(m: &EpochMetrics) -> Self {
        let acc = |v: &str| number(m.test_accuracy.get(v).copied());
        Self {
            epoch: m.epoch,
            train_loss: number(Some(m.train_loss)),
            train_acc: number(Some(m.train_accuracy)),
            clean: acc("clean"),
            as_train: acc("as-train"),
            flipped: acc("flipped"),
            lr: format!("{:.2e}", m.lr),
            ips: format!("{:.0}", m.images_per_second),
        }
    }
}

/// One picture set of a probe (clean or watermarked).
#[derive(Serialize)]
struct View {
    overlay: String,
    avg: String,
    /// The label map in the palette; the grey index map (`labels_grey`)
    /// where an older audit wrote no coloured one.
    labels: String,
    labels_grey: bool,
    /// The known box and the detector's suspect region, on watermarked probes.
    r#box: Option<String>,
    suspect: Option<String>,
}

#[derive(Serialize)]
struct ProbeViews {
    index: usize,
    test_index: usize,
    views: Vec<View>,
}

/// The probes whose pictures exist, each clean and watermarked.
fn probe_views(s: &Sources, run: &RunResult) -> Vec<ProbeViews> {
    let size = s.audit.image_size as f64;
    let id = &run.id;
    let boxes = run_boxes(run, &s.audit);
    let suspect = |p: usize| {
        run.verdict
            .as_ref()
            .and_then(|v| v.suspect_boxes.get(p).copied().flatten())
            .and_then(|b| box_style(&b, size))
    };
    s.audit
        .probes
        .iter()
        .enumerate()
        .filter(|(p, _)| {
            s.report_dir
                .join(format!("runs/{id}/p{p:03}_clean_overlay.png"))
                .is_file()
        })
        .map(|(p, &test_index)| {
            // An audit from files pictures the probes as they are: no
            // watermarked view, and the suspect region goes on the clean one.
            let tags: Vec<&str> = ["clean", "wm"]
                .into_iter()
                .filter(|tag| {
                    s.report_dir
                        .join(format!("runs/{id}/p{p:03}_{tag}_overlay.png"))
                        .is_file()
                })
                .collect();
            let last = *tags.last().expect("the clean overlay exists");
            ProbeViews {
                index: p,
                test_index,
                views: tags
                    .iter()
                    .map(|&tag| {
                        let coloured = format!("runs/{id}/p{p:03}_{tag}_labels_colour.png");
                        let labels_grey = !s.report_dir.join(&coloured).is_file();
                        View {
                            overlay: format!("runs/{id}/p{p:03}_{tag}_overlay.png"),
                            avg: format!("runs/{id}/p{p:03}_{tag}_avg.png"),
                            labels: if labels_grey {
                                format!("runs/{id}/p{p:03}_{tag}_labels.png")
                            } else {
                                coloured
                            },
                            labels_grey,
                            r#box: (tag == "wm")
                                .then(|| boxes.get(p).and_then(|b| box_style(b, size)))
                                .flatten(),
                            suspect: (tag == last).then(|| suspect(p)).flatten(),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Writes `run-<id>.html`.
pub(super) fn write(
    env: &Environment,
    s: &Sources,
    run: &RunResult,
    files: &RunFiles,
) -> anyhow::Result<()> {
    let probes = probe_views(s, run);
    let mut missing = Vec::new();
    if files.folder.is_none() && s.audit.external.is_none() {
        missing.push("audit.json does not say where this run's folder is (an older audit?): no metrics, run.yaml or TensorBoard link".to_string());
    }
    if probes.len() < s.audit.probes.len() {
        missing.push(format!(
            "{} of {} probe pictures are missing",
            s.audit.probes.len() - probes.len(),
            s.audit.probes.len()
        ));
    }
    let dir = files.folder.as_ref().map(|f| &f.dir);
    let verdict = run.verdict.as_ref();
    let html = env.get_template("run.html")?.render(context! {
        css => CSS,
        experiment => &s.experiment,
        id => &run.id,
        regime => &run.regime,
        seed => run.seed,
        gap => number(Some(run.shortcut_gap)),
        wm_iou => number(Some(run.wm_iou)),
        wm_iou_fair => number(Some(run.wm_iou_fair)),
        truth => run.truth.as_str(),
        wm_shift => number(Some(run.wm_shift)),
        verdict => verdict.map(|v| v.line(&run.id)),
        flagged => verdict.map(|v| v.flagged),
        tensorboard => dir.map(|d| link_to(s.report_dir, d)),
        tensorboard_shown => dir.map(|d| d.display().to_string()),
        epochs => files.metrics.iter().map(EpochRow::of).collect::<Vec<_>>(),
        probes => &probes,
        legend => super::index::legend(&s.audit),
        external => s.audit.external.is_some(),
        missing => &missing,
        run_yaml => &files.run_yaml,
        revised_from => run.revised_from.as_ref().map(|f| (f.clone(), run_page_name(f))),
        revise_method => &run.revise_method,
    })?;
    crate::io::write_atomic(&s.report_dir.join(run_page_name(&run.id)), html.as_bytes())?;
    Ok(())
}
