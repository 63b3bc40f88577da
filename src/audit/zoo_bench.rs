//! `nave-lab bench detect`: the blind detector and the occlusion baseline run
//! on every finished run of a zoo and scored against the measured truth. The
//! threshold is chosen on the tuning runs (some seeds, every family but the
//! held-out ones) and reported on the rest.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::{json, Value};
use tch::Device;

use super::{
    choose_probes, final_accuracy, load_model, settings_for, taps_for, AuditOverrides, ProbeSet,
    Truth,
};
use crate::data::store::{training_images, DataStore};
use crate::data::watermark::Artefact;
use crate::data::PixelBox;
use crate::detect::evaluate::{threshold_for_fpr, Figures, Scored};
use crate::detect::splits::ChosenSplit;
use crate::detect::{self, Detection, DetectorSpec, Evidence};
use crate::run_folder::{find_runs, RunFolder};

/// What the bench needs to know besides the zoo.
pub struct BenchDetect<'a> {
    pub dir: &'a Path,
    pub probes: usize,
    /// The split asked for (resolved against the study's experiment).
    pub split: &'a crate::detect::splits::SplitRequest,
    /// Only these families (all when empty).
    pub families: &'a [String],
    /// Only these seeds (all when empty).
    pub seeds: &'a [u64],
    pub max_fpr: f64,
    pub baseline: bool,
    /// Runs measured at once (each with its share of the cores).
    pub jobs: usize,
}

/// Share of probes whose suspect box has IoU >= 0.5 with the artefact's
/// region rasterised to the clustering grid.
fn hit_rate(d: &Detection, masks: &[PixelBox], grid: (usize, usize), size: usize) -> f64 {
    let hits = d
        .suspect_boxes
        .iter()
        .zip(masks)
        .filter(|(suspect, mask)| {
            let region = detect::rasterised(mask, grid.0, grid.1, size);
            matches!((suspect, region), (Some(s), Some(r)) if detect::box_iou(s, &r) >= 0.5)
        })
        .count();
    hits as f64 / masks.len().max(1) as f64
}

/// Share of probes whose suspect box holds the centre of the artefact's box.
fn pointing(d: &Detection, masks: &[PixelBox]) -> f64 {
    let hits = d
        .suspect_boxes
        .iter()
        .zip(masks)
        .filter(|(suspect, mask)| {
            let (cx, cy) = (mask.x + mask.w / 2, mask.y + mask.h / 2);
            suspect.is_some_and(|s| s.contains(cx, cy))
        })
        .count();
    hits as f64 / masks.len().max(1) as f64
}

/// One detector's figures on the tuning, held-out-seed and held-out-family
/// runs, per family and per architecture.
fn report(rows: &[Scored], split: &ChosenSplit, max_fpr: f64) -> Value {
    let (tune_seeds, held_out) = (&split.tuning_seeds, &split.held_out_families);
    let tuning: Vec<&Scored> = rows
        .iter()
        .filter(|r| tune_seeds.contains(&r.seed) && !held_out.contains(&r.family))
        .collect();
    // A study that holds every family out (one registered to test a rule
    // set elsewhere) has nothing to choose a threshold on: it is scored at
    // the audit's own.
    let (threshold, threshold_from) = if tuning.is_empty() {
        (
            crate::detect::verdict::SHORTCUT_THRESHOLD,
            "the audit's fixed threshold (no tuning runs)",
        )
    } else {
        (threshold_for_fpr(&tuning, max_fpr), "the tuning runs")
    };
    let held_seeds: Vec<&Scored> = rows
        .iter()
        .filter(|r| !tune_seeds.contains(&r.seed) && !held_out.contains(&r.family))
        .collect();
    let held_families: Vec<&Scored> = rows
        .iter()
        .filter(|r| held_out.contains(&r.family))
        .collect();
    let all: Vec<&Scored> = rows.iter().collect();
    let group = |key: fn(&Scored) -> &str| {
        let mut out: BTreeMap<String, Figures> = BTreeMap::new();
        let names: std::collections::BTreeSet<&str> = rows.iter().map(key).collect();
        for name in names {
            let members: Vec<&Scored> = rows.iter().filter(|r| key(r) == name).collect();
            out.insert(name.to_string(), Figures::of(&members, threshold));
        }
        out
    };
    json!({
        "exploratory": split.exploratory,
        "threshold": threshold,
        "threshold_from": threshold_from,
        "tuning": Figures::of(&tuning, threshold),
        "held_out_seeds": Figures::of(&held_seeds, threshold),
        "held_out_families": Figures::of(&held_families, threshold),
        "all": Figures::of(&all, threshold),
        "per_family": group(|r| r.family.as_str()),
        "per_arch": group(|r| r.arch.as_str()),
    })
}

/// How well one flagged run's carriers (`detect::carriers`) find the
/// training images its artefact was stamped on.
struct CarrierRow {
    id: String,
    family: String,
    /// AUROC of the object's match (`carriers::Measure`), stamped images against the others.
    auroc: Option<f64>,
    /// Of the images at or above the detector's cut, the share stamped; of
    /// the stamped ones, the share at or above it.
    precision: f64,
    recall: f64,
    /// What the files were scored by: the measure the object kept
    /// (`carriers::Measure`: "correlation", "pixels"), or "looked" (the
    /// sharpest stroke where the model looks, `carriers::score_looked`).
    measure: serde_json::Value,
    seconds: f64,
}

/// The carrier figures of a run the detector flags on a recurring object
/// or on where the model looks, where its artefact is stamped on some
/// training images (the truth the zoo knows); None otherwise.
fn carrier_figures(
    run: &crate::config::RunSpec,
    d: &Detection,
    artefact: &Artefact,
    train: &crate::data::SplitData,
    train_images: &tch::Tensor,
    model: &crate::models::Model,
    device: tch::Device,
) -> anyhow::Result<Option<CarrierRow>> {
    let Some(watermark) = run.watermark() else {
        return Ok(None);
    };
    if d.score < crate::detect::verdict::SHORTCUT_THRESHOLD || artefact.is_global() {
        return Ok(None);
    }
    let target = watermark
        .target_index(&train.class_names)
        .map_err(anyhow::Error::msg)?;
    let plan = artefact.plan(
        run.seed,
        crate::data::Split::Train,
        &train.labels,
        target,
        crate::data::watermark::Variant::AsTrain,
    );
    let t = Instant::now();
    let (scored, measure) = match (&d.object, &d.looked) {
        (Some(object), _) => (
            crate::detect::carriers::score(object, train_images)?,
            json!(object.measure),
        ),
        (None, Some(looked)) => (
            crate::detect::carriers::score_looked(
                looked,
                model,
                train_images,
                &train.labels,
                device,
            )?
            .0,
            json!("looked"),
        ),
        (None, None) => return Ok(None),
    };
    let seconds = t.elapsed().as_secs_f64();
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    let (mut listed, mut right) = (0usize, 0usize);
    for (c, placed) in scored.iter().zip(&plan) {
        if placed.is_some() {
            pos.push(c.likeness);
        } else {
            neg.push(c.likeness);
        }
        listed += c.carries as usize;
        right += (c.carries && placed.is_some()) as usize;
    }
    Ok(Some(CarrierRow {
        id: run.id.clone(),
        family: run.variant.clone().unwrap_or_else(|| run.regime()),
        auroc: crate::detect::evaluate::auroc(&pos, &neg),
        precision: right as f64 / listed.max(1) as f64,
        recall: right as f64 / pos.len().max(1) as f64,
        measure,
        seconds,
    }))
}

/// The carrier figures per family (mean and lowest over its flagged runs)
/// and per run.
fn carriers_report(rows: &[CarrierRow]) -> Value {
    let mut families: BTreeMap<&str, Vec<&CarrierRow>> = BTreeMap::new();
    for r in rows {
        families.entry(r.family.as_str()).or_default().push(r);
    }
    let stat = |v: Vec<f64>| {
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        json!({"mean": mean, "min": v.iter().copied().fold(f64::INFINITY, f64::min)})
    };
    json!({
        "runs": rows.len(),
        "seconds_per_run": rows.iter().map(|r| r.seconds).sum::<f64>() / rows.len().max(1) as f64,
        "per_family": families.iter().map(|(f, rs)| (f.to_string(), json!({
            "runs": rs.len(),
            "auroc": stat(rs.iter().filter_map(|r| r.auroc).collect()),
            "precision": stat(rs.iter().map(|r| r.precision).collect()),
            "recall": stat(rs.iter().map(|r| r.recall).collect()),
        }))).collect::<BTreeMap<_, _>>(),
        "per_run": rows.iter().map(|r| json!({"id": r.id, "family": r.family, "auroc": r.auroc,
            "precision": r.precision, "recall": r.recall, "measure": r.measure, "seconds": r.seconds})).collect::<Vec<_>>(),
    })
}

pub fn bench_detect(b: &BenchDetect, device: Device) -> anyhow::Result<Value> {
    let started = Instant::now();
    let folders: Vec<_> = find_runs(b.dir)?
        .into_iter()
        .filter(|f| f.is_complete())
        .filter(|f| {
            f.spec().is_ok_and(|r| {
                (b.families.is_empty()
                    || r.variant.as_ref().is_some_and(|v| b.families.contains(v)))
                    && (b.seeds.is_empty() || b.seeds.contains(&r.seed))
            })
        })
        .collect();
    anyhow::ensure!(!folders.is_empty(), "{}: no finished run", b.dir.display());
    let experiment = folders[0].spec()?.experiment;
    let split = b.split.resolve(&experiment)?;
    if split.exploratory {
        crate::warn!(
            "exploratory: {} is not the pre-registered split; no figure below is a held-out figure",
            split.source
        );
    }
    let spec = DetectorSpec::default();
    let bar = crate::ui::progress_bar(folders.len() as u64, "detecting");
    let outcomes = in_parallel(&folders, b.jobs, |folder, store| {
        let outcome = bench_run(folder, store, b, &spec, device);
        bar.inc(1);
        outcome
    })?;
    bar.finish_and_clear();
    let (mut nave_rows, mut base_rows) = (Vec::new(), Vec::new());
    let (mut nave_seconds, mut base_seconds) = (0.0, 0.0);
    let mut candidates = Vec::new();
    let mut carrier_rows = Vec::new();
    let mut steps = detect::StepSeconds::default();
    for o in outcomes {
        nave_seconds += o.nave_seconds;
        base_seconds += o.base_seconds;
        steps.add(&o.steps);
        nave_rows.push(o.nave);
        base_rows.extend(o.base);
        carrier_rows.extend(o.carriers);
        candidates.push(o.candidates);
    }
    Ok(json!({
        "runs": folders.len(),
        "exploratory": split.exploratory,
        "split": split,
        "tune_seeds": split.tuning_seeds,
        "held_out_families": split.held_out_families,
        "max_fpr_on_tuning": b.max_fpr,
        "detector": report(&nave_rows, &split, b.max_fpr),
        "detector_seconds_per_run": nave_seconds / folders.len() as f64,
        "detector_step_seconds_per_run": steps.scaled(1.0 / folders.len() as f64),
        "baseline": if b.baseline { report(&base_rows, &split, b.max_fpr) } else { Value::Null },
        "baseline_seconds_per_run": if b.baseline { json!(base_seconds / folders.len() as f64) } else { Value::Null },
        "seconds": started.elapsed().as_secs_f64(),
        "carriers": carriers_report(&carrier_rows),
        "candidates": candidates,
        "scores": nave_rows.iter().zip(base_rows.iter().map(Some).chain(std::iter::repeat(None))).map(|(n, o)| json!({
            "id": n.id, "family": n.family, "arch": n.arch, "seed": n.seed, "truth": n.truth, "gap": n.gap,
            "score": n.score, "hit_rate": n.hit_rate, "pointing": n.pointing,
            "global_artefact": n.global_artefact, "global_verdict": n.global_verdict,
            "baseline_score": o.map(|o| o.score), "baseline_hit_rate": o.map(|o| o.hit_rate), "baseline_pointing": o.map(|o| o.pointing),
        })).collect::<Vec<_>>(),
    }))
}

/// What the bench measured on one run.
struct RunOutcome {
    nave: Scored,
    base: Option<Scored>,
    carriers: Option<CarrierRow>,
    candidates: Value,
    nave_seconds: f64,
    base_seconds: f64,
    steps: detect::StepSeconds,
}

/// Both detectors (the baseline when asked) and the carriers on one run.
fn bench_run(
    folder: &RunFolder,
    store: &mut DataStore,
    b: &BenchDetect,
    spec: &DetectorSpec,
    device: Device,
) -> anyhow::Result<RunOutcome> {
    let run = folder.spec()?;
    let loaded = store.get(&run.dataset.source(), run.dataset.image_size)?;
    let (train, test) = (&loaded.train, &loaded.test);
    let size = test.image_size();
    let settings = settings_for(
        &run.audit,
        &run,
        &AuditOverrides::default(),
        &test.class_names,
    )?;
    let taps = taps_for(&run, &AuditOverrides::default());
    let model = load_model(&run, folder, test, &taps, device)?;
    let artefact = Artefact::new(&run.watermark_spec, size)?;
    let probe_set = ProbeSet::new(choose_probes(test, &settings.classes, b.probes)?, &artefact);
    let (_, marked) = probe_set.images(test, &artefact);
    let train_images = training_images(run.watermark(), run.seed, &artefact, train)?;
    let grid = {
        let one = crate::data::loader::normalize_u8(&marked.narrow(0, 0, 1).to_device(device));
        let f = crate::nave::extract::features(&model, &one, &taps, None, 1)?;
        (f.size()[2] as usize, f.size()[3] as usize)
    };
    let (_, gap) = final_accuracy(folder);
    let row = |d: &Detection| Scored {
        id: run.id.clone(),
        family: run.variant.clone().unwrap_or_else(|| run.regime()),
        arch: run.model.arch.to_string(),
        seed: run.seed,
        truth: Truth::of_gap(gap),
        gap,
        score: d.score,
        hit_rate: hit_rate(d, &probe_set.masks, grid, size as usize),
        pointing: pointing(d, &probe_set.masks),
        global_artefact: run.watermark && artefact.is_global(),
        global_verdict: d.global_cue.is_some(),
    };
    let evidence = Evidence {
        model: &model,
        train: &train_images,
        labels: &train.labels,
        class_names: &train.class_names,
        probes: &marked,
        device,
    };
    let t = Instant::now();
    let d = detect::nave_detect(&evidence, &taps, spec)?;
    let nave_seconds = t.elapsed().as_secs_f64();
    let carriers = carrier_figures(&run, &d, &artefact, train, &train_images, &model, device)?;
    let candidates = json!({"id": run.id, "truth": Truth::of_gap(gap), "candidates": d.candidates, "global_candidates": d.global_candidates});
    let (base, base_seconds) = if b.baseline {
        let t = Instant::now();
        let base = detect::occlusion_detect(&evidence, spec)?;
        (Some(row(&base)), t.elapsed().as_secs_f64())
    } else {
        (None, 0.0)
    };
    Ok(RunOutcome {
        nave: row(&d),
        base,
        carriers,
        candidates,
        nave_seconds,
        base_seconds,
        steps: d.seconds,
    })
}

/// `work` on every item, `jobs` at a time, each worker with its own data
/// store and an equal share of libtorch's threads; the outcomes in the
/// items' order, or the first error in that order (no new item is started
/// after an error).
fn in_parallel<I: Sync, T: Send>(
    items: &[I],
    jobs: usize,
    work: impl Fn(&I, &mut DataStore) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    let jobs = jobs.clamp(1, items.len().max(1));
    if jobs == 1 {
        let mut store = DataStore::default();
        return items.iter().map(|f| work(f, &mut store)).collect();
    }
    let threads = (tch::get_num_threads() / jobs as i32).max(1);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut done: Vec<(usize, anyhow::Result<T>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    // libtorch's intra-op threads are set per calling thread.
                    tch::set_num_threads(threads);
                    let mut store = DataStore::default();
                    let mut done = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        let outcome = work(item, &mut store);
                        failed.fetch_or(outcome.is_err(), Ordering::Relaxed);
                        done.push((i, outcome));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a bench worker panicked"))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, outcome)| outcome).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_outcomes_keep_the_order_and_the_first_error_wins() {
        let items: Vec<u64> = (0..23).collect();
        for jobs in [1, 2, 3] {
            let doubled = in_parallel(&items, jobs, |&i, _| {
                // Uneven work, so that the workers finish out of order.
                std::thread::sleep(std::time::Duration::from_millis((i * 7) % 5));
                Ok(i * 2)
            })
            .unwrap();
            assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
            let failed = in_parallel(&items, jobs, |&i, _| {
                anyhow::ensure!(i != 5 && i != 9, "item {i}");
                Ok(i)
            });
            assert_eq!(failed.unwrap_err().to_string(), "item 5", "jobs {jobs}");
        }
    }

    #[test]
    fn a_study_with_every_family_held_out_is_scored_at_the_audits_threshold() {
        use crate::detect::evaluate::Truth;
        let row = |family: &str, seed: u64, truth: Truth, score: f64| Scored {
            id: format!("{family}-s{seed}"),
            family: family.into(),
            arch: "resnet18".into(),
            seed,
            truth,
            gap: 0.0,
            score,
            hit_rate: 0.0,
            pointing: 0.0,
            global_artefact: false,
            global_verdict: false,
        };
        let rows = vec![
            row("marker", 0, Truth::Relies, 0.05),
            row("marker", 1, Truth::Relies, 0.02),
            row("clean", 0, Truth::DoesNot, 0.001),
            row("clean", 1, Truth::DoesNot, 0.03),
        ];
        let split = |held: &[&str]| ChosenSplit {
            tuning_seeds: vec![0],
            held_out_families: held.iter().map(|f| f.to_string()).collect(),
            exploratory: false,
            source: String::new(),
        };
        let all_held = report(&rows, &split(&["marker", "clean"]), 0.05);
        let fixed = crate::detect::verdict::SHORTCUT_THRESHOLD;
        assert_eq!(all_held["threshold"], fixed);
        assert_eq!(all_held["held_out_families"]["tpr"], 0.5);
        assert_eq!(all_held["held_out_families"]["fpr"], 0.5);
        // With tuning runs, the threshold is chosen on them: above the
        // tuning negative (0.001), halfway to the next score (0.05).
        let tuned = report(&rows, &split(&[]), 0.0);
        assert!((tuned["threshold"].as_f64().unwrap() - 0.0255).abs() < 1e-12);
    }
}
