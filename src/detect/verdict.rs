//! The audit's answer to "is this model a Clever Hans, and where?": the blind
//! detector (`detect`) run on one model and its own training images, its
//! score compared with a fixed threshold.
//!
//! The detector sees the weights, the training images as the model trained
//! on them (artefacts included: an auditor has the data) with their labels,
//! and the probes to draw the suspect region on. It never sees the run's
//! watermark settings or any recorded box; `Evidence` has no field for them.
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::global::Looks;
use super::{self as detect, DetectorSpec, Evidence, Source};
use crate::data::PixelBox;
use crate::models::Model;

/// Scores at or above this flag a run as relying on a shortcut. Chosen by
/// `nave-lab bench detect` on the zoo's tuning runs (seeds 0-1, held-out
/// families excluded): with no false positive there, halfway between the
/// highest run that does not rely on its artefact (0.017) and the next
/// score (0.039), 0.02807, rounded down to a figure one can read; no zoo
/// run scores in between. benches/RESULTS.md gives the figures it reaches.
pub const SHORTCUT_THRESHOLD: f64 = 0.028;

/// Names the detector's method in the audit cache key: results of an older
/// detector are recomputed.
pub const DETECTOR_VERSION: &str =
    "object-transplant-1+global-cues-3+transform-named+carriers-by-pixels+object-reach+object-separation-2+sensitivity-3+looked-kept+stroke-1+sharp-foot-0.72";

/// One run's verdict, as audit.json stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Transplant lift over its control, times stereotypy (0 to about 1).
    pub shortcut_score: f64,
    /// The threshold the flag was decided with.
    pub threshold: f64,
    /// `shortcut_score >= threshold`.
    pub flagged: bool,
    /// The class the suspect region pushes the model towards.
    pub class: Option<String>,
    /// The suspect NAVE cluster of the detector's own set-scope clustering.
    pub cluster: Option<usize>,
    /// Whether the suspect is a cluster's object or where the model looks
    /// (an object whose copies vary; see `detect::sensitivity`).
    #[serde(default, skip_serializing_if = "Source::is_cluster")]
    pub source: Source,
    /// Mean gain of P(class) when the region is pasted onto images of the
    /// other classes, and when the ring around it is pasted instead.
    pub lift: f64,
    pub control: f64,
    /// How much the region is one reproduced object (0: tissue, 1: stamped);
    /// where the model looks, how much sharper it is than the other classes'
    /// images there.
    pub stereotypy: f64,
    /// The suspect region's box on each probe (None where it is absent).
    pub suspect_boxes: Vec<Option<PixelBox>>,
    /// Where the evidence is a global cue rather than a local object: what
    /// it changes (then there is no region: `suspect_boxes` are all None).
    #[serde(default)]
    pub global_cue: Option<Looks>,
    /// Which of the detector's transforms carries that cue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_transform: Option<super::global::Cue>,
    /// The recurring object behind a local verdict, as the detector matches
    /// it: what scores the training files that carry it (`carriers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<super::carriers::ObjectMatch>,
    /// Where the evidence is where the model looks: what finds that region
    /// again on the training images (`revise`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub looked: Option<super::sensitivity::LookedAt>,
}

impl Verdict {
    /// A one-line verdict for the terminal.
    pub fn line(&self, id: &str) -> String {
        let word = if self.flagged {
            "FLAGGED"
        } else {
            "not flagged"
        };
        let cmp = if self.flagged { ">=" } else { "<" };
        let mut line = format!(
            "{id:<36} {word:<12} score {:.3} {cmp} {:.3}",
            self.shortcut_score, self.threshold
        );
        if self.flagged {
            line += &format!(
                "  towards {} ({:+.2}): {}",
                self.class.as_deref().unwrap_or("?"),
                self.lift - self.control,
                self.evidence()
            );
        }
        line
    }

    /// What the suspect is, in words: a local object and where, or a
    /// global cue and what it changes.
    pub fn evidence(&self) -> String {
        if let Some(cue) = self.global_cue {
            return format!("a global cue, {} (no region)", cue.as_str());
        }
        let found = self.suspect_boxes.iter().flatten().count();
        let what = match self.source {
            Source::Cluster => "a reproduced object",
            Source::Sensitivity => "a sharp object where the model looks",
        };
        format!(
            "{what} on {found}/{} probes{}",
            self.suspect_boxes.len(),
            self.typical_box()
                .map(|b| format!(", e.g. at x {} y {} ({} x {} px)", b.x, b.y, b.w, b.h))
                .unwrap_or_default()
        )
    }

    /// The evidence in a few words, for a table cell.
    pub fn evidence_short(&self) -> String {
        match self.global_cue {
            Some(cue) => format!("global: {}", cue.as_str()),
            None => format!(
                "object on {}/{}",
                self.suspect_boxes.iter().flatten().count(),
                self.suspect_boxes.len()
            ),
        }
    }

    /// The first probe's suspect box, to name where in words.
    fn typical_box(&self) -> Option<PixelBox> {
        self.suspect_boxes.iter().flatten().next().copied()
    }
}

/// Runs the blind detector on one model.
pub fn judge(
    model: &Model,
    train_images: &Tensor,
    labels: &[i64],
    class_names: &[String],
    probes: &Tensor,
    taps: &[String],
    device: Device,
) -> anyhow::Result<Verdict> {
    let evidence = Evidence {
        model,
        train: train_images,
        labels,
        class_names,
        probes,
        device,
    };
    let d = detect::nave_detect(&evidence, taps, &DetectorSpec::default())?;
    Ok(Verdict {
        shortcut_score: d.score,
        threshold: SHORTCUT_THRESHOLD,
        flagged: d.score >= SHORTCUT_THRESHOLD,
        class: d.class,
        cluster: d.cluster,
        source: d.source,
        lift: d.lift,
        control: d.control,
        stereotypy: d.stereotypy,
        suspect_boxes: d.suspect_boxes,
        global_cue: d.global_cue,
        global_transform: d.global_transform,
        object: d.object,
        looked: d.looked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(score: f64) -> Verdict {
        Verdict {
            shortcut_score: score,
            threshold: SHORTCUT_THRESHOLD,
            flagged: score >= SHORTCUT_THRESHOLD,
            class: Some("NORMAL".into()),
            cluster: Some(3),
            source: Source::Cluster,
            lift: 0.9,
            control: 0.1,
            stereotypy: 1.0,
            suspect_boxes: vec![None, Some(PixelBox::square(40, 8, 16))],
            global_cue: None,
            global_transform: None,
            object: None,
            looked: None,
        }
    }

    #[test]
    fn the_line_states_the_verdict_the_threshold_and_where() {
        let flagged = verdict(0.8).line("resnet18-aug0-wm1-s0");
        assert!(flagged.contains("FLAGGED"), "{flagged}");
        assert!(flagged.contains("score 0.800 >= 0.028"), "{flagged}");
        assert!(flagged.contains("towards NORMAL"), "{flagged}");
        assert!(
            flagged.contains("on 1/2 probes, e.g. at x 40 y 8 (16 x 16 px)"),
            "{flagged}"
        );
        let clean = verdict(0.01).line("resnet18-aug0-wm0-s0");
        assert!(
            clean.contains("not flagged") && clean.contains("score 0.010 < 0.028"),
            "{clean}"
        );
        assert!(!clean.contains("towards"), "{clean}");
    }

    #[test]
    fn a_global_cue_is_named_with_no_region_and_how_much() {
        let mut v = verdict(0.9);
        v.global_cue = Some(Looks::Border);
        v.suspect_boxes = vec![None, None];
        let line = v.line("resnet18-border-aug0-wm1-s0");
        assert!(
            line.contains("towards NORMAL (+0.80): a global cue, border (no region)"),
            "{line}"
        );
        assert_eq!(v.evidence_short(), "global: border");
        assert_eq!(verdict(0.9).evidence_short(), "object on 1/2");
    }
}
