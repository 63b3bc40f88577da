//! Scoring shortcut detectors against the zoo's measured truth, as a
//! classifier is scored: AUROC, AUPR, the false-positive rate at 95% true
//! positives and at a threshold, localisation, and Spearman's rank
//! correlation between score and measured reliance (the shortcut gap).
use serde::{Deserialize, Serialize};

/// Gap at or above which a run relies on its artefact.
pub const RELIES_GAP: f64 = 0.2;
/// Gap at or below which it does not.
pub const DOES_NOT_GAP: f64 = 0.05;

/// Whether a run relies on its artefact, measured with the known artefact:
/// the shortcut gap (clean - flipped test accuracy, flipped stamping the
/// run's own artefact on the other classes). What detectors are scored against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Truth {
    /// gap >= 0.2
    Relies,
    /// gap <= 0.05
    DoesNot,
    /// in between: left out when detectors are scored
    Ambiguous,
    /// no gap recorded (an older run without the test variants)
    #[default]
    Unknown,
}

impl Truth {
    pub fn of_gap(gap: f64) -> Self {
        if gap.is_nan() {
            Truth::Unknown
        } else if gap >= RELIES_GAP {
            Truth::Relies
        } else if gap <= DOES_NOT_GAP {
            Truth::DoesNot
        } else {
            Truth::Ambiguous
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Truth::Relies => "relies",
            Truth::DoesNot => "does-not",
            Truth::Ambiguous => "ambiguous",
            Truth::Unknown => "unknown",
        }
    }
}

/// One run as a detector saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scored {
    pub id: String,
    pub family: String,
    pub arch: String,
    pub seed: u64,
    pub truth: Truth,
    pub gap: f64,
    pub score: f64,
    /// Share of probes whose suspect box has IoU >= 0.5 with the artefact's
    /// grid-rasterised region.
    pub hit_rate: f64,
    /// Share of probes whose suspect box holds the centre of the artefact's
    /// box (the pointing game).
    #[serde(default)]
    pub pointing: f64,
    /// The run's artefact covers the whole image (a tint, a frame ...):
    /// no region to localise; and the detector's evidence was a global cue.
    #[serde(default)]
    pub global_artefact: bool,
    #[serde(default)]
    pub global_verdict: bool,
}

/// A detector's figures on one set of runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub runs: usize,
    pub relies: usize,
    pub does_not: usize,
    /// None when the set lacks runs of either truth.
    pub auroc: Option<f64>,
    pub aupr: Option<f64>,
    pub fpr_at_95_tpr: Option<f64>,
    /// At the given threshold: share of runs that don't rely flagged, and of
    /// runs that rely flagged.
    pub fpr: Option<f64>,
    pub tpr: Option<f64>,
    /// Share of the relying runs with a local artefact whose suspect region
    /// hits the artefact on at least half the probes: by IoU >= 0.5 with its
    /// grid region (`localised`), and by holding its centre (`pointing`).
    pub localised: Option<f64>,
    #[serde(default)]
    pub pointing: Option<f64>,
    /// Share of the relying runs with a global artefact that are flagged
    /// with a global cue as their evidence.
    #[serde(default)]
    pub global_as_global: Option<f64>,
    /// Spearman between score and gap over every run of the set (ambiguous included).
    pub spearman: Option<f64>,
}

/// Positives (relies) and negatives (does not); ambiguous and unknown runs are left out.
fn split(runs: &[&Scored]) -> (Vec<f64>, Vec<f64>) {
    let pick = |t: Truth| {
        runs.iter()
            .filter(|r| r.truth == t)
            .map(|r| r.score)
            .collect()
    };
    (pick(Truth::Relies), pick(Truth::DoesNot))
}

/// Area under the ROC curve: the chance that a random positive scores above
/// a random negative (ties count half).
pub fn auroc(pos: &[f64], neg: &[f64]) -> Option<f64> {
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for p in pos {
        for n in neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(wins / (pos.len() * neg.len()) as f64)
}

/// Average precision (the area under the precision-recall curve, as
/// scikit-learn's average_precision_score computes it).
pub fn aupr(pos: &[f64], neg: &[f64]) -> Option<f64> {
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        // Runs with the same score are one step of the curve.
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            if all[j].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            j += 1;
        }
        let recall = tp / pos.len() as f64;
        ap += (recall - last_recall) * tp / (tp + fp);
        last_recall = recall;
        i = j;
    }
    Some(ap)
}

/// The false-positive rate at the highest threshold that flags at least 95%
/// of the positives.
pub fn fpr_at_tpr(pos: &[f64], neg: &[f64], tpr: f64) -> Option<f64> {
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut sorted = pos.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let needed = ((tpr * pos.len() as f64).ceil() as usize).clamp(1, pos.len());
    let threshold = sorted[needed - 1];
    Some(neg.iter().filter(|&&n| n >= threshold).count() as f64 / neg.len() as f64)
}

/// Ranks with ties averaged (1-based).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = rank;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (Pearson's on the ranks).
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() < 3 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// A threshold whose false-positive rate on `runs` is at most `max_fpr`,
/// with the widest margin the runs allow: halfway between the highest
/// negative it must not flag and the next score above that, of either kind
/// (just above the negative when there is none).
pub fn threshold_for_fpr(runs: &[&Scored], max_fpr: f64) -> f64 {
    let (pos, mut neg) = split(runs);
    if neg.is_empty() {
        return 0.0;
    }
    neg.sort_by(|a, b| b.total_cmp(a));
    let allowed = (max_fpr * neg.len() as f64).floor() as usize;
    // Flagging the `allowed` highest negatives is acceptable; the next must not be.
    let above = neg.get(allowed).copied().unwrap_or(f64::NEG_INFINITY);
    halfway_to_next(above, pos.iter().chain(&neg).copied()).unwrap_or(above + 1e-6)
}

/// The widest-margin cut over `above` (a score that must stay below it):
/// halfway between it and the lowest of `scores` above it; None when `above`
/// is not finite or nothing scores above it.
pub fn halfway_to_next(above: f64, scores: impl Iterator<Item = f64>) -> Option<f64> {
    let lowest = scores.filter(|&s| s > above).reduce(f64::min)?;
    above.is_finite().then(|| (above + lowest) / 2.0)
}

impl Figures {
    pub fn of(runs: &[&Scored], threshold: f64) -> Self {
        let (pos, neg) = split(runs);
        let rate = |v: &[f64]| {
            (!v.is_empty())
                .then(|| v.iter().filter(|&&s| s >= threshold).count() as f64 / v.len() as f64)
        };
        let relying = |global: bool| -> Vec<&&Scored> {
            runs.iter()
                .filter(|r| r.truth == Truth::Relies && r.global_artefact == global)
                .collect()
        };
        let share = |of: &[&&Scored], hit: &dyn Fn(&Scored) -> bool| {
            (!of.is_empty()).then(|| of.iter().filter(|r| hit(r)).count() as f64 / of.len() as f64)
        };
        let (local, global) = (relying(false), relying(true));
        let with_gap: Vec<&&Scored> = runs.iter().filter(|r| r.gap.is_finite()).collect();
        Figures {
            runs: runs.len(),
            relies: pos.len(),
            does_not: neg.len(),
            auroc: auroc(&pos, &neg),
            aupr: aupr(&pos, &neg),
            fpr_at_95_tpr: fpr_at_tpr(&pos, &neg, 0.95),
            fpr: rate(&neg),
            tpr: rate(&pos),
            localised: share(&local, &|r| r.hit_rate >= 0.5),
            pointing: share(&local, &|r| r.pointing >= 0.5),
            global_as_global: share(&global, &|r| r.score >= threshold && r.global_verdict),
            spearman: spearman(
                &with_gap.iter().map(|r| r.score).collect::<Vec<_>>(),
                &with_gap.iter().map(|r| r.gap).collect::<Vec<_>>(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier_figures_match_known_values() {
        // Perfect separation, then one swap.
        assert_eq!(auroc(&[0.9, 0.8], &[0.1, 0.2]), Some(1.0));
        assert_eq!(auroc(&[0.9, 0.15], &[0.1, 0.2]), Some(0.75));
        assert_eq!(auroc(&[0.5], &[0.5]), Some(0.5));
        assert_eq!(auroc(&[], &[0.5]), None);
        // scikit-learn: average_precision_score([1,1,0,0], [0.9,0.15,0.1,0.2]) = 0.8333...
        let ap = aupr(&[0.9, 0.15], &[0.1, 0.2]).unwrap();
        assert!((ap - 5.0 / 6.0).abs() < 1e-12, "{ap}");
        // 20 positives: 95% needs 19 of them; the 19th highest is 0.2.
        let pos: Vec<f64> = (1..=20).map(|i| i as f64 / 10.0).collect();
        assert_eq!(fpr_at_tpr(&pos, &[0.1, 0.25, 3.0, 0.0], 0.95), Some(0.5));
        // scipy.stats.spearmanr([1,2,3,4], [10,30,20,40]) = 0.8
        assert!(
            (spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 30.0, 20.0, 40.0]).unwrap() - 0.8).abs()
                < 1e-12
        );
        // Ties take the mean rank: spearmanr([1,1,2], [1,2,3]) = 0.8660...
        assert!(
            (spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]).unwrap() - 0.75f64.sqrt()).abs() < 1e-12
        );
    }

    #[test]
    fn a_threshold_for_at_most_five_percent_false_positives() {
        let run = |truth, score| Scored {
            id: String::new(),
            family: String::new(),
            arch: String::new(),
            seed: 0,
            truth,
            gap: 0.0,
            score,
            hit_rate: 1.0,
            pointing: 1.0,
            global_artefact: false,
            global_verdict: false,
        };
        let runs: Vec<Scored> = (0..20)
            .map(|i| run(Truth::DoesNot, i as f64 / 100.0))
            .chain([run(Truth::Relies, 0.5)])
            .collect();
        let refs: Vec<&Scored> = runs.iter().collect();
        // One of 20 negatives may be flagged: the threshold sits halfway
        // between the second highest (0.18) and the highest (0.19).
        let t = threshold_for_fpr(&refs, 0.05);
        assert!((t - 0.185).abs() < 1e-12, "{t}");
        let f = Figures::of(&refs, t);
        assert_eq!(
            (f.fpr, f.tpr, f.localised),
            (Some(0.05), Some(1.0), Some(1.0))
        );
        // No false positive allowed: halfway to the positive.
        let t = threshold_for_fpr(&refs, 0.0);
        assert!((t - 0.345).abs() < 1e-12, "{t}");
        // Nothing above the negative it must not flag: just above it.
        let t = threshold_for_fpr(&refs[..20], 0.0);
        assert!(t > 0.19 && t < 0.191, "{t}");
    }
}
