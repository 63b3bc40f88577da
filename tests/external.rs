//! `audit --weights`: a model trained anywhere, audited from its files. A
//! torchvision ResNet18 is trained in PyTorch (the reference environment) on
//! a folder whose NORMAL images carry a marker baked into the files, and a
//! twin on the same folder without it; nave-lab is handed each `.pth` and
//! its training folder, nothing else.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{nave_lab, run_reference, scratch};

const SIZE: &str = "64";

/// The study, trained once for the file's tests: `base/` (the synthetic set),
/// `marked-train/` and `marked-test/` (NORMAL images stamped), the boxes
/// of the stamps, and `marked.pth` / `clean.pth`.
fn study() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("external_study");
        let base = dir.join("base");
        let out = nave_lab()
            .args(["-q", "data", "synth", "--train", "400", "--test", "100"])
            .args(["--size", SIZE, "--out"])
            .arg(&base)
            .output()
            .unwrap();
        common::assert_ok(&out);
        let script = "train_elsewhere.py";
        let p = |path: &Path| path.to_str().unwrap().to_string();
        for (split, seed) in [("train", "0"), ("test", "1")] {
            run_reference(
                script,
                &[
                    "stamp",
                    "--src",
                    &p(&base.join(split)),
                    "--dst",
                    &p(&dir.join(format!("marked-{split}"))),
                    "--class",
                    "NORMAL",
                    "--seed",
                    seed,
                    "--boxes",
                    &p(&dir.join(format!("{split}-boxes.json"))),
                ],
            );
        }
        for (data, model) in [
            (dir.join("marked-train"), "marked.pth"),
            (base.join("train"), "clean.pth"),
        ] {
            run_reference(
                script,
                &[
                    "train",
                    "--data",
                    &p(&data),
                    "--out",
                    &p(&dir.join(model)),
                    "--size",
                    SIZE,
                ],
            );
        }
        dir
    })
}

/// `audit --weights <model> --data <train> --test <test>` into `reports`.
fn audit_files(
    model: &Path,
    train: &Path,
    test: Option<&Path>,
    reports: &Path,
    name: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut cmd = nave_lab();
    cmd.args(["-q", "audit", "--weights"])
        .arg(model)
        .args(["--arch", "resnet18", "--image-size", SIZE, "--data"])
        .arg(train)
        .args(["--reports"])
        .arg(reports)
        .args(["--name", name])
        .args(extra);
    if let Some(t) = test {
        cmd.arg("--test").arg(t);
    }
    cmd.output().unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A box's centre falls inside `[x, y, w, h]` (the pointing game).
fn points_into(b: &serde_json::Value, truth: &[i64]) -> bool {
    let (x, y, w, h) = (
        b["x"].as_i64().unwrap() as f64,
        b["y"].as_i64().unwrap() as f64,
        b["w"].as_i64().unwrap() as f64,
        b["h"].as_i64().unwrap() as f64,
    );
    let (cx, cy) = (x + w / 2.0, y + h / 2.0);
    let t: Vec<f64> = truth.iter().map(|&v| v as f64).collect();
    (t[0]..=t[0] + t[2]).contains(&cx) && (t[1]..=t[1] + t[3]).contains(&cy)
}

#[test]
fn a_pytorch_model_with_a_baked_in_marker_is_flagged_localised_and_its_marked_files_listed() {
    let dir = study();
    let reports = scratch("external_reports");
    let (train, test) = (dir.join("marked-train"), dir.join("marked-test"));
    let out = audit_files(
        &dir.join("marked.pth"),
        &train,
        Some(&test),
        &reports,
        "marked",
        &[],
    );
    common::assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FLAGGED"), "{stdout}");
    assert!(stdout.contains("carriers.csv"), "{stdout}");

    let audit = json(&reports.join("marked/audit.json"));
    let run = &audit["runs"][0];
    let verdict = &run["verdict"];
    assert_eq!(verdict["flagged"], true, "{verdict}");
    assert_eq!(verdict["class"], "NORMAL");
    assert!(run["wm_iou"].is_null(), "no known-box measure from files");
    assert!(audit["external"]["preprocessing"]
        .as_str()
        .unwrap()
        .contains("64 x 64"));

    // The marked files, listed: precision and recall against the stamps.
    let boxes = json(&dir.join("train-boxes.json"));
    let truth: std::collections::BTreeMap<String, Vec<i64>> = boxes
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let b = v
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            (train.join(k).to_string_lossy().into_owned(), b)
        })
        .collect();
    let csv = std::fs::read_to_string(reports.join("marked/carriers.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("rank,path,class,likeness,carries,x,y,w,h")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 400, "every training file is scored");
    let listed: Vec<&Vec<&str>> = rows.iter().filter(|r| r[4] == "true").collect();
    let right = listed.iter().filter(|r| truth.contains_key(r[1])).count();
    let (precision, recall) = (
        right as f64 / listed.len().max(1) as f64,
        right as f64 / truth.len() as f64,
    );
    assert!(
        precision >= 0.9 && recall >= 0.9,
        "precision {precision}, recall {recall}"
    );
    // Each listed file's region is on its stamp.
    let on_stamp = listed
        .iter()
        .filter(|r| {
            truth.get(r[1]).is_some_and(|t| {
                let b = serde_json::json!({"x": r[5].parse::<i64>().unwrap(), "y": r[6].parse::<i64>().unwrap(),
                    "w": r[7].parse::<i64>().unwrap(), "h": r[8].parse::<i64>().unwrap()});
                points_into(&b, t)
            })
        })
        .count();
    assert!(
        on_stamp as f64 >= 0.9 * right as f64,
        "{on_stamp} of {right} regions on the stamp"
    );

    // The suspect region on the stamped probes (NORMAL test images) is the marker.
    let test_boxes = json(&dir.join("test-boxes.json"));
    let mut normal: Vec<String> = std::fs::read_dir(test.join("NORMAL"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    normal.sort();
    let (mut hits, mut stamped) = (0, 0);
    for (p, index) in audit["probes"].as_array().unwrap().iter().enumerate() {
        let index = index.as_u64().unwrap() as usize;
        if index >= normal.len() {
            continue; // a PNEUMONIA probe: nothing stamped
        }
        stamped += 1;
        let t: Vec<i64> = test_boxes[format!("NORMAL/{}", normal[index])]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let suspect = &verdict["suspect_boxes"][p];
        hits += (!suspect.is_null() && points_into(suspect, &t)) as usize;
    }
    assert!(
        stamped >= 5 && hits as f64 >= 0.9 * stamped as f64,
        "{hits} of {stamped}"
    );

    // The report: the verdict, the probes' page with pictures, the carriers.
    let index = std::fs::read_to_string(reports.join("marked/index.html")).unwrap();
    assert!(index.contains("Which training files carry it") && index.contains("carriers.csv"));
    assert!(index.contains("No known-box measures"));
    assert!(reports
        .join("marked/runs/model/p000_clean_overlay.png")
        .is_file());
    assert!(reports.join("marked/carriers/000001.png").is_file());
    let page = std::fs::read_to_string(reports.join("marked/run-model.html")).unwrap();
    assert!(
        page.contains("wmbox suspect"),
        "the suspect region is drawn"
    );
}

#[test]
fn the_clean_twin_is_not_flagged() {
    let dir = study();
    let reports = scratch("external_clean");
    let base = dir.join("base");
    let out = audit_files(
        &dir.join("clean.pth"),
        &base.join("train"),
        Some(&base.join("test")),
        &reports,
        "clean",
        &[],
    );
    common::assert_ok(&out);
    let audit = json(&reports.join("clean/audit.json"));
    assert_eq!(
        audit["runs"][0]["verdict"]["flagged"], false,
        "{}",
        audit["runs"][0]["verdict"]
    );
    assert!(audit["external"]["carriers"].is_null());
    let accuracy = audit["runs"][0]["accuracy"]["clean"].as_f64().unwrap();
    assert!(accuracy > 0.8, "the twin learned the task: {accuracy}");
}

/// Bad input is refused with the file named, and nothing is written.
#[test]
fn bad_models_and_data_are_refused_naming_the_file_and_nothing_is_written() {
    let dir = study();
    let work = scratch("external_bad");
    let reports = work.join("reports");
    let model = dir.join("marked.pth");
    let refused = |out: std::process::Output, needles: &[&str]| {
        assert!(!out.status.success(), "accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "'{n}' not in: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !reports.exists() || std::fs::read_dir(&reports).unwrap().next().is_none(),
            "something was written under {}",
            reports.display()
        );
    };
    // Three classes for a two-output head.
    let three = work.join("three");
    for class in ["NORMAL", "PNEUMONIA", "OTHER"] {
        std::fs::create_dir_all(three.join(class)).unwrap();
        for f in std::fs::read_dir(dir.join("base/train/NORMAL"))
            .unwrap()
            .take(3)
        {
            let f = f.unwrap().path();
            std::fs::copy(&f, three.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    refused(
        audit_files(&model, &three, None, &reports, "x", &[]),
        &["marked.pth", "2 output(s)", "3 classes"],
    );
    // An empty class folder.
    let empty = work.join("empty");
    std::fs::create_dir_all(empty.join("NORMAL")).unwrap();
    std::fs::create_dir_all(empty.join("PNEUMONIA")).unwrap();
    let f = std::fs::read_dir(dir.join("base/train/NORMAL"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&f, empty.join("NORMAL/a.png")).unwrap();
    refused(
        audit_files(&model, &empty, None, &reports, "x", &[]),
        &["empty", "class PNEUMONIA has no images"],
    );
    // A checkpoint of another architecture.
    let mut cmd = nave_lab();
    let out = cmd
        .args(["-q", "audit", "--weights"])
        .arg(&model)
        .args(["--arch", "resnet50", "--image-size", SIZE, "--data"])
        .arg(dir.join("base/train"))
        .arg("--reports")
        .arg(&reports)
        .output()
        .unwrap();
    refused(out, &["marked.pth", "resnet50"]);
    // A file that is no checkpoint at all.
    let junk = work.join("junk.pth");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    refused(
        audit_files(&junk, &dir.join("base/train"), None, &reports, "x", &[]),
        &["junk.pth"],
    );
    // A report name that would leave reports/.
    refused(
        audit_files(
            &model,
            &dir.join("base/train"),
            None,
            &reports,
            "../out",
            &[],
        ),
        &["--name"],
    );
}

/// Undecodable files are skipped and named, as the dataset loader does; the
/// audit goes on and records them.
#[test]
fn undecodable_training_files_are_skipped_and_named() {
    let dir = study();
    let work = scratch("external_skip");
    let data = work.join("data");
    for class in ["NORMAL", "PNEUMONIA"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for f in std::fs::read_dir(dir.join("base/train").join(class))
            .unwrap()
            .take(40)
        {
            let f = f.unwrap().path();
            std::fs::copy(&f, data.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(data.join("NORMAL/broken.png"), b"\x89PNG but not really").unwrap();
    let reports = work.join("reports");
    let out = audit_files(
        &dir.join("clean.pth"),
        &data,
        None,
        &reports,
        "skip",
        &["--probes", "4"],
    );
    common::assert_ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.png") && err.contains("skipped"),
        "{err}"
    );
    let audit = json(&reports.join("skip/audit.json"));
    let skipped = audit["external"]["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].as_str().unwrap().ends_with("broken.png"));
}
