//! `nave-lab revise` end to end on a tiny shortcut study: a box stamped on
//! one class's images at random places, learned. The revision loses its gap
//! and its flag; a run that is not flagged, or is itself a revision, is
//! refused; a killed revision resumes; and the revision never reads the
//! run's artefact: the same run, its stamped images handed over as files
//! with a run.yaml that names no artefact, is revised to the same weights.
//! A verdict whose evidence is where the model looks (no object to match)
//! is revised by finding that region with the model on every training
//! image, and loses its gap and flag too.
mod common;

use std::path::{Path, PathBuf};

use common::{assert_ok, nave_lab, refused, scratch};
use nave_lab::config::RunSpec;

const BOX: &str = "resnet18-box-aug0-wm1-s0";
const CLEAN: &str = "resnet18-clean-aug0-wm0-s0";

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn run_of<'a>(audit: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    audit["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not in audit.json"))
}

fn run(args: &[&str]) -> std::process::Output {
    nave_lab().args(args).output().unwrap()
}

/// The study: 64 px synthetic images as files, a clean run and a run with a
/// box on 80% of one class's images (it learns the task in part too, and
/// leans on the box).
fn study(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    assert_ok(&run(&[
        "data",
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--train",
        "240",
        "--test",
        "64",
        "--size",
        "64",
    ]));
    let text = format!(
        "name: rv
dataset: {{kind: chest-xray, root: {}, image_size: 64}}
model: {{arch: resnet18, width: 8}}
train: {{epochs: 6, batch_size: 16, optimizer: {{kind: sgd, lr: 0.05}}}}
watermark: {{size: 0.25, target_class: NORMAL, p: 0.8}}
audit: {{taps: [layer2, layer3], k: 4, probes: 8}}
revise: {{epochs: 6, lr_scale: 0.5}}
grid:
  variants:
    clean: {{watermark: false}}
    box: {{watermark: true}}
",
        data.display()
    );
    let exp = dir.join("rv.yaml");
    std::fs::write(&exp, text).unwrap();
    exp
}

/// The weights of a run folder, by name.
fn weights(folder: &Path) -> Vec<(String, tch::Tensor)> {
    let mut w = tch::Tensor::read_safetensors(folder.join("model.safetensors")).unwrap();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

fn assert_same_weights(a: &Path, b: &Path) {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len());
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        let diff = (ta - tb).abs().max().double_value(&[]);
        assert!(
            diff <= 1e-6,
            "{na}: {} and {} differ by {diff}",
            a.display(),
            b.display()
        );
    }
}

/// Route B: the box run's training images as it trained on them, written
/// as files (same names, so the same order), its test split clean, and a
/// copy of the run whose run.yaml names this folder and no artefact.
fn without_artefact_spec(dir: &Path, original: &Path) -> PathBuf {
    let spec = RunSpec::read(&original.join("run.yaml")).unwrap();
    let mut store = nave_lab::data::store::DataStore::default();
    let data = store.get(&spec.dataset.source(), 64).unwrap();
    let artefact = nave_lab::data::watermark::Artefact::new(&spec.watermark_spec, 64).unwrap();
    let stamped =
        nave_lab::data::store::training_images(spec.watermark(), spec.seed, &artefact, &data.train)
            .unwrap();
    let source = spec.dataset.root.clone().unwrap();
    let files = dir.join("stamped");
    // The loader reads class folders, then files, sorted by name: the i-th
    // file so listed is the i-th training image.
    let mut i = 0;
    for class in ["NORMAL", "PNEUMONIA"] {
        let from = source.join("train").join(class);
        let to = files.join("train").join(class);
        std::fs::create_dir_all(&to).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&from)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let img = stamped.get(i).permute([1, 2, 0]).contiguous();
            let pixels = Vec::<u8>::try_from(img.flatten(0, -1)).unwrap();
            image::RgbImage::from_raw(64, 64, pixels)
                .unwrap()
                .save(to.join(&name))
                .unwrap();
            i += 1;
        }
        let test_to = files.join("test").join(class);
        std::fs::create_dir_all(&test_to).unwrap();
        for e in std::fs::read_dir(source.join("test").join(class)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), test_to.join(e.file_name())).unwrap();
        }
    }
    assert_eq!(i, stamped.size()[0]);

    let folder = dir.join("checkpoints-b/rv").join(BOX);
    std::fs::create_dir_all(&folder).unwrap();
    for f in ["model.safetensors", "metrics.jsonl", "COMPLETE"] {
        std::fs::copy(original.join(f), folder.join(f)).unwrap();
    }
    let mut blind = spec.clone();
    blind.dataset.root = Some(files);
    blind.watermark = false;
    blind.watermark_spec = Default::default();
    std::fs::write(
        folder.join("run.yaml"),
        yaml_serde::to_string(&blind).unwrap(),
    )
    .unwrap();
    let text = std::fs::read_to_string(folder.join("run.yaml")).unwrap();
    assert!(!text.contains("size: 0.25"), "{text}");
    dir.join("checkpoints-b/rv")
}

#[test]
fn a_revised_shortcut_run_loses_its_gap_and_flag_without_reading_the_artefact() {
    let dir = scratch("revise_study");
    let exp = study(&dir);
    let (ck, reports) = (dir.join("checkpoints"), dir.join("reports"));
    let (ck_s, reports_s) = (ck.to_str().unwrap(), reports.to_str().unwrap());
    assert_ok(&run(&[
        "-q",
        "train",
        exp.to_str().unwrap(),
        "--checkpoints",
        ck_s,
    ]));
    assert_ok(&run(&[
        "audit",
        &format!("{ck_s}/rv"),
        "--reports",
        reports_s,
    ]));
    let report = reports.join("rv");
    let before = json(&report.join("audit.json"));
    let original = run_of(&before, BOX);
    assert_eq!(original["verdict"]["flagged"], true, "{original:#}");
    let gap_before = original["shortcut_gap"].as_f64().unwrap();
    assert!(
        gap_before >= 0.3,
        "the box run does not rely on the box: {gap_before}"
    );

    // Not flagged: refused, and nothing written.
    let o = run(&["revise", report.to_str().unwrap(), "--run", CLEAN]);
    let err = refused(&o);
    assert!(
        err.contains("is not flagged") && err.contains("--force"),
        "{err}"
    );
    assert!(!ck
        .join("rv")
        .join(format!("{CLEAN}-revised-augment"))
        .exists());

    // The revision (epochs and rate from the experiment's revise: block).
    let o = run(&["revise", report.to_str().unwrap()]);
    assert_ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("before -> after"), "{out}");
    let revised_id = format!("{BOX}-revised-augment");
    let revised_dir = ck.join("rv").join(&revised_id);
    let spec = RunSpec::read(&revised_dir.join("run.yaml")).unwrap();
    let r = spec.revise.as_ref().unwrap();
    assert_eq!((r.from.as_str(), spec.train.epochs), (BOX, 6));
    assert!(revised_dir.join("revise.json").is_file());
    let after = json(&report.join("audit.json"));
    let revised = run_of(&after, &revised_id);
    let gap_after = revised["shortcut_gap"].as_f64().unwrap();
    assert!(
        gap_after <= 0.5 * gap_before,
        "gap {gap_before} -> {gap_after}"
    );
    assert_eq!(
        revised["verdict"]["flagged"], false,
        "{:#}",
        revised["verdict"]
    );
    assert_eq!(revised["revised_from"], BOX);
    assert!(
        after["regimes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["regime"] == "resnet18-box-aug0-wm1-revised-augment"),
        "the regime table lacks the revised regime"
    );
    // The report shows the revision beside its original.
    let index = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(
        index.contains("Revised runs") && index.contains(&revised_id),
        "no revision section"
    );

    // A revision is not revised again.
    let err = refused(&run(&[
        "revise",
        report.to_str().unwrap(),
        "--run",
        &revised_id,
    ]));
    assert!(err.contains("itself a revision"), "{err}");

    // Killed after its second epoch, the mask revision resumes; the
    // control (the same fine-tune, nothing neutralised) keeps the shortcut.
    let both = ["revise", report.to_str().unwrap(), "--method", "mask,none"];
    let o = nave_lab()
        .args(both)
        .env("NAVE_LAB_FAILPOINT", "epoch-manifest@2")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let masked = ck.join("rv").join(format!("{BOX}-revised-mask"));
    assert!(!masked.join("COMPLETE").exists());
    let o = run(&both);
    assert_ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("resuming after epoch 2"), "{err}");
    let after = json(&report.join("audit.json"));
    let control = run_of(&after, &format!("{BOX}-revised-none"));
    assert!(
        control["shortcut_gap"].as_f64().unwrap() >= 0.5 * gap_before,
        "the control lost the gap: {}",
        control["shortcut_gap"]
    );
    assert_eq!(control["verdict"]["flagged"], true);

    // A hostile audit.json: a run id that climbs out of the checkpoints.
    let mut hostile = json(&report.join("audit.json"));
    for r in hostile["runs"].as_array_mut().unwrap() {
        if r["id"] == BOX {
            r["id"] = "../../escape".into();
        }
    }
    let forged = dir.join("forged");
    std::fs::create_dir_all(&forged).unwrap();
    std::fs::write(forged.join("audit.json"), hostile.to_string()).unwrap();
    let err = refused(&run(&[
        "revise",
        forged.to_str().unwrap(),
        "--run",
        "../../escape",
    ]));
    assert!(err.contains("run id"), "{err}");
    assert!(!dir.join("escape-revised-augment").exists());

    // Route B: no artefact spec anywhere, the same images as files.
    let ck_b = without_artefact_spec(&dir, &ck.join("rv").join(BOX));
    let reports_b = dir.join("reports-b");
    assert_ok(&run(&[
        "audit",
        ck_b.to_str().unwrap(),
        "--reports",
        reports_b.to_str().unwrap(),
    ]));
    // The verdict's evidence is the same (its suspect boxes are drawn on
    // probes, which differ: route B's carry no artefact).
    let blind = json(&reports_b.join("rv/audit.json"));
    for key in ["shortcut_score", "class", "object", "global_transform"] {
        assert_eq!(
            run_of(&blind, BOX)["verdict"][key],
            original["verdict"][key],
            "{key}"
        );
    }
    for method in ["augment", "mask"] {
        assert_ok(&run(&[
            "revise",
            reports_b.join("rv").to_str().unwrap(),
            "--method",
            method,
            // Route A's settings come from its experiment file; route B's
            // folder has none, so they are named here.
            "--epochs",
            "6",
            "--lr-scale",
            "0.5",
        ]));
        let id = format!("{BOX}-revised-{method}");
        assert_same_weights(&ck.join("rv").join(&id), &ck_b.join(&id));
    }

    // Route C: the same run, its verdict's evidence where the model looks
    // (as for a marker whose copies vary): no object to match, so revise
    // finds that region with the model on each training image.
    let ck_c = dir.join("checkpoints-c/rv");
    std::fs::create_dir_all(ck_c.join(BOX)).unwrap();
    for f in ["model.safetensors", "metrics.jsonl", "COMPLETE", "run.yaml"] {
        std::fs::copy(ck_b.join(BOX).join(f), ck_c.join(BOX).join(f)).unwrap();
    }
    let reports_c = dir.join("reports-c");
    assert_ok(&run(&[
        "audit",
        ck_c.to_str().unwrap(),
        "--reports",
        reports_c.to_str().unwrap(),
    ]));
    let audit_c = reports_c.join("rv/audit.json");
    let mut looked = json(&audit_c);
    for r in looked["runs"].as_array_mut().unwrap() {
        if r["id"] == BOX {
            let v = r["verdict"].as_object_mut().unwrap();
            v.remove("object");
            v.insert("cluster".into(), serde_json::Value::Null);
            v.insert("source".into(), "sensitivity".into());
            v.insert("class".into(), "NORMAL".into());
            v.insert(
                "looked".into(),
                serde_json::json!({"class": 0, "grid": [8, 8], "max_cells": 7}),
            );
        }
    }
    std::fs::write(&audit_c, looked.to_string()).unwrap();
    let o = run(&[
        "revise",
        reports_c.join("rv").to_str().unwrap(),
        "--method",
        "augment",
        "--epochs",
        "6",
        "--lr-scale",
        "0.5",
    ]);
    assert_ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("finding where the model looks on 240"),
        "{err}"
    );
    let after = json(&audit_c);
    let revised = run_of(&after, &format!("{BOX}-revised-augment"));
    let gap_after = revised["shortcut_gap"].as_f64().unwrap();
    assert!(
        gap_after <= 0.5 * gap_before,
        "where the model looks, augmented: gap {gap_before} -> {gap_after}"
    );
    assert_eq!(
        revised["verdict"]["flagged"], false,
        "{:#}",
        revised["verdict"]
    );
}
