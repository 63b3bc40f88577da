//! Artefact families and the general grid end to end: a tiny zoo of four
//! families trains, `data show --experiment` draws each family, and the audit
//! records every run's truth, its own artefact's boxes and the grid-fair
//! isolation measure.
mod common;

use std::path::{Path, PathBuf};

use common::{assert_ok, nave_lab, scratch};

fn marker() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/patches/marker-L.png"
    )
    .to_string()
}

/// Four families on 48 px synthetic images: no artefact, a random black box,
/// a fixed laterality token, and the box on both classes.
fn tiny_zoo(dir: &Path) -> PathBuf {
    let text = format!(
        "name: tz
dataset: {{kind: synthetic, image_size: 48, synthetic: {{seed: 0, train: 240, test: 48}}}}
model: {{arch: resnet18, width: 8}}
train: {{epochs: 6, batch_size: 16, optimizer: {{kind: sgd, lr: 0.05}}}}
watermark: {{size: 0.25, target_class: NORMAL}}
audit: {{taps: [layer2, layer3], k: 4, probes: 8}}
grid:
  variants:
    clean: {{watermark: false}}
    box: {{watermark: true}}
    token:
      watermark: true
      watermark.shape: patch
      watermark.patch: {}
      watermark.position: fixed
      watermark.at: [1.0, 0.0]
    uncorrelated: {{watermark: true, watermark.p_other: 1.0}}
",
        marker()
    );
    let p = dir.join("tz.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_zoo_of_families_trains_shows_and_audits_with_truth() {
    let dir = scratch("zoo_tiny");
    let exp = tiny_zoo(&dir);
    let checkpoints = dir.join("checkpoints");
    let reports = dir.join("reports");

    // --list: every run with the values that made it.
    let out = nave_lab()
        .args(["train", exp.to_str().unwrap(), "--list"])
        .output()
        .unwrap();
    assert_ok(&out);
    let listing = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = listing
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "resnet18-clean-aug0-wm0-s0",
            "resnet18-box-aug0-wm1-s0",
            "resnet18-token-aug0-wm1-s0",
            "resnet18-uncorrelated-aug0-wm1-s0"
        ]
    );
    assert!(
        listing.lines().nth(2).unwrap().contains("variant=token"),
        "{listing}"
    );

    // data show --experiment: a clean row and one row per artefact family.
    let png = dir.join("families.png");
    let out = nave_lab()
        .args([
            "-q",
            "data",
            "show",
            "--experiment",
            exp.to_str().unwrap(),
            "--count",
            "3",
            "-o",
            png.to_str().unwrap(),
        ])
        .env("NAVE_LAB_CACHE", dir.join("cache"))
        .output()
        .unwrap();
    assert_ok(&out);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("token (1 run)") && shown.contains("uncorrelated"),
        "{shown}"
    );
    let img = image::open(&png).unwrap();
    // 4 rows (clean, box, token, uncorrelated) x 3 columns of 48 px tiles zoomed 4x.
    assert_eq!((img.width(), img.height()), (3 * 194 + 2, 4 * 194 + 2));

    let out = nave_lab()
        .args([
            "-q",
            "train",
            exp.to_str().unwrap(),
            "--checkpoints",
            checkpoints.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_ok(&out);
    let run_yaml =
        std::fs::read_to_string(checkpoints.join("tz/resnet18-token-aug0-wm1-s0/run.yaml"))
            .unwrap();
    assert!(
        run_yaml.contains("variant: token") && run_yaml.contains("shape: patch"),
        "{run_yaml}"
    );

    // `nave-lab -q audit checkpoints/tz --reports reports`
    let audit_tz = || {
        nave_lab()
            .args([
                "-q",
                "audit",
                checkpoints.join("tz").to_str().unwrap(),
                "--reports",
                reports.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let out = audit_tz();
    assert_ok(&out);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("truth from the shortcut gap"), "{printed}");
    let audit = json(&reports.join("tz/audit.json"));
    let runs = audit["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let run = |variant: &str| runs.iter().find(|r| r["variant"] == variant).unwrap();
    for r in runs {
        // The truth label follows the gap and its thresholds.
        let gap = r["shortcut_gap"].as_f64().unwrap();
        let expected = if gap >= 0.2 {
            "relies"
        } else if gap <= 0.05 {
            "does-not"
        } else {
            "ambiguous"
        };
        assert_eq!(r["truth"], expected, "{r}");
        // Grid-fair isolation: in [0, 1] and never below the raw IoU.
        let (iou, fair) = (
            r["wm_iou"].as_f64().unwrap(),
            r["wm_iou_fair"].as_f64().unwrap(),
        );
        assert!(fair <= 1.0 + 1e-9 && fair >= iou - 1e-9, "{r}");
        for k in ["wm_recall", "wm_precision"] {
            let v = r[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{k} {v}");
        }
        assert_eq!(r["probes"].as_array().unwrap().len(), 8);
        assert_eq!(r["mask_boxes"].as_array().unwrap().len(), 8);
    }
    // The box family moves with the probe; the token sits in the top-right
    // corner of every probe, and its measured box is its alpha mask's, inside
    // the stamped extent.
    let boxes = |r: &serde_json::Value, key: &str| r[key].as_array().unwrap().clone();
    let random = boxes(run("box"), "probe_boxes");
    assert!(random.iter().any(|b| *b != random[0]));
    assert_eq!(random, boxes(run("box"), "mask_boxes"));
    let token_extent = boxes(run("token"), "probe_boxes");
    let token_mask = boxes(run("token"), "mask_boxes");
    assert!(token_extent.iter().all(|b| *b == token_extent[0]));
    let (e, m) = (&token_extent[0], &token_mask[0]);
    let n = |v: &serde_json::Value, k: &str| v[k].as_i64().unwrap();
    // marker-L.png is 27 x 33: at 48 px and size 0.25 the longer side is 12 px.
    assert_eq!((n(e, "w"), n(e, "h")), (10, 12));
    assert_eq!(n(e, "x") + n(e, "w"), 48);
    assert_eq!(n(e, "y"), 0);
    assert!(n(m, "x") >= n(e, "x") && n(m, "x") + n(m, "w") <= n(e, "x") + n(e, "w"));
    assert!(
        n(m, "w") < n(e, "w") || n(m, "h") < n(e, "h"),
        "the mask box is tighter: {m} in {e}"
    );
    // The box correlated with the label is relied on more than the same box on both classes.
    assert!(
        run("box")["shortcut_gap"].as_f64().unwrap()
            > run("uncorrelated")["shortcut_gap"].as_f64().unwrap() + 0.1,
        "{}\n{}",
        run("box"),
        run("uncorrelated")
    );
    // Per family: counts that add up.
    let families = audit["families"].as_array().unwrap();
    assert_eq!(families.len(), 4);
    for f in families {
        let sum: u64 = ["relies", "does_not", "ambiguous"]
            .iter()
            .map(|k| f[k].as_u64().unwrap())
            .sum();
        assert_eq!(sum, f["runs"].as_u64().unwrap());
    }
    // The report shows the new columns and outlines each run's own box.
    let index = std::fs::read_to_string(reports.join("tz/index.html")).unwrap();
    assert!(index.contains("<th>fair</th>") && index.contains("<th>truth</th>"));
    assert!(
        index.contains("dataset synthetic at 48 px<"),
        "the header names the dataset"
    );
    let token_page =
        std::fs::read_to_string(reports.join("tz/run-resnet18-token-aug0-wm1-s0.html")).unwrap();
    let left = 100.0 * n(m, "x") as f64 / 48.0;
    assert!(
        token_page.contains(&format!("left:{left:.2}%")),
        "the token's mask box is outlined"
    );

    // The blind detector ranks the zoo: every run that relies on its artefact
    // scores above every clean and uncorrelated-artefact run, and these two
    // are not flagged. (The threshold is the 96 px zoo's; at 48 px a shortcut
    // run may score just under it, so only the ranking is asserted for them.)
    let score = |r: &serde_json::Value| r["verdict"]["shortcut_score"].as_f64().unwrap();
    let relies: Vec<&serde_json::Value> = runs.iter().filter(|r| r["truth"] == "relies").collect();
    assert!(
        !relies.is_empty(),
        "the tiny zoo has shortcut runs: {runs:?}"
    );
    for shortcut in &relies {
        for honest in [run("clean"), run("uncorrelated")] {
            assert!(
                score(shortcut) > score(honest),
                "{} ({}) vs {} ({})",
                shortcut["id"],
                score(shortcut),
                honest["id"],
                score(honest)
            );
        }
    }
    for honest in [run("clean"), run("uncorrelated")] {
        assert_eq!(honest["verdict"]["flagged"], false, "{}", honest["verdict"]);
    }
    assert!(
        printed.contains("Is it a Clever Hans?") && printed.contains("FLAGGED"),
        "{printed}"
    );
    // The report states the verdict, the threshold and outlines the suspect region.
    assert!(index.contains("Is this model a Clever Hans?") && index.contains("threshold"));
    assert!(
        index.contains("not flagged") && index.contains(">flagged<"),
        "verdict column"
    );
    let flagged_page = std::fs::read_to_string(
        reports.join(format!("tz/run-{}.html", relies[0]["id"].as_str().unwrap())),
    )
    .unwrap();
    assert!(flagged_page.contains("Blind verdict:") && flagged_page.contains("wmbox suspect"));

    // The verdict ignores the recorded boxes: with every recorded box removed
    // (the per-run results that hold them) and the audit redone, the same.
    for r in runs {
        let cached = reports
            .join("tz/runs")
            .join(r["id"].as_str().unwrap())
            .join("result.json");
        std::fs::remove_file(&cached).unwrap();
    }
    std::fs::remove_file(reports.join("tz/audit.json")).unwrap();
    let out = audit_tz();
    assert_ok(&out);
    let again = json(&reports.join("tz/audit.json"));
    for (a, b) in runs.iter().zip(again["runs"].as_array().unwrap()) {
        assert_eq!(a["verdict"], b["verdict"]);
    }
    // ... and the detector's inputs are the model and its training images
    // only: called with nothing else, it gives the audit's score.
    blind_score_matches(&checkpoints.join("tz/resnet18-box-aug0-wm1-s0"), run("box"));
}

/// The detector called from the library with the model, its training images
/// and labels, and probe images without any artefact: the audit's score.
fn blind_score_matches(folder: &Path, audited: &serde_json::Value) {
    use nave_lab::config::RunSpec;
    use nave_lab::data::watermark::Artefact;
    use nave_lab::detect::verdict;
    let spec = RunSpec::read(&folder.join("run.yaml")).unwrap();
    let mut store = nave_lab::data::store::DataStore::default();
    let data = store
        .get(&spec.dataset.source(), spec.dataset.image_size)
        .unwrap();
    let size = data.test.image_size();
    let device = tch::Device::Cpu;
    let mut model = nave_lab::models::Model::new(
        &spec.model,
        data.train.class_names.len() as i64,
        size,
        device,
    )
    .unwrap();
    model.load(&folder.join("model.safetensors"), true).unwrap();
    // The images as the model trained on them: the data an auditor holds.
    let artefact = Artefact::new(&spec.watermark_spec, size).unwrap();
    let train_images =
        nave_lab::data::store::training_images(spec.watermark(), spec.seed, &artefact, &data.train)
            .unwrap();
    let v = verdict::judge(
        &model,
        &train_images,
        &data.train.labels,
        &data.train.class_names,
        &data.test.images.narrow(0, 0, 4),
        &spec.audit.taps.clone().unwrap(),
        device,
    )
    .unwrap();
    let audited_score = audited["verdict"]["shortcut_score"].as_f64().unwrap();
    assert!(
        (v.shortcut_score - audited_score).abs() < 1e-9,
        "{} vs {audited_score}",
        v.shortcut_score
    );
    assert_eq!(
        serde_json::to_value(&v.class).unwrap(),
        audited["verdict"]["class"]
    );
}

/// Global artefacts stamped on one class, a frame and a colour tint, and a
/// hard negative: a small, faint laterality marker (letter and rotation
/// drawn per image) correlated with the label in the data but ignored.
fn global_zoo(dir: &Path) -> PathBuf {
    let text = "name: gz
dataset: {kind: synthetic, image_size: 48, synthetic: {seed: 0, train: 160, test: 48}}
model: {arch: resnet18, width: 8}
train: {epochs: 4, batch_size: 16, optimizer: {kind: sgd, lr: 0.05}}
watermark: {target_class: NORMAL, colour: [255, 255, 255]}
audit: {taps: [layer2, layer3], k: 4, probes: 8}
grid:
  variants:
    border:
      watermark: true
      watermark.shape: border
      watermark.size: 0.06
    tint:
      watermark: true
      watermark.shape: tint
      watermark.colour: [255, 200, 120]
      watermark.strength: 0.15
    marker-faint:
      watermark: true
      watermark.shape: text
      watermark.texts: [R, L]
      watermark.region: [0.0, 0.0, 1.0, 0.35]
      watermark.size: 0.1
      watermark.opacity: 0.15
      watermark.vary: {rotation: [-15, 15]}
";
    let p = dir.join("gz.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Trains the study `exp` (named `name`) under `dir` and audits it: its audit.json.
fn train_and_audit(dir: &Path, exp: &Path, name: &str) -> serde_json::Value {
    let (checkpoints, reports) = (dir.join("checkpoints"), dir.join("reports"));
    for args in [
        [
            "-q",
            "train",
            exp.to_str().unwrap(),
            "--checkpoints",
            checkpoints.to_str().unwrap(),
        ],
        [
            "-q",
            "audit",
            checkpoints.join(name).to_str().unwrap(),
            "--reports",
            reports.to_str().unwrap(),
        ],
    ] {
        assert_ok(&nave_lab().args(args).output().unwrap());
    }
    json(&reports.join(name).join("audit.json"))
}

#[test]
fn a_frame_and_a_tint_read_as_global_cues_and_a_hard_negative_is_not_flagged() {
    let dir = scratch("zoo_global");
    let exp = global_zoo(&dir);
    let audit = train_and_audit(&dir, &exp, "gz");
    let runs = audit["runs"].as_array().unwrap();
    let run = |variant: &str| runs.iter().find(|r| r["variant"] == variant).unwrap();
    // The truth, measured: the frame and the tint are relied on, the faint
    // marker is not.
    for (variant, truth) in [
        ("border", "relies"),
        ("tint", "relies"),
        ("marker-faint", "does-not"),
    ] {
        assert_eq!(run(variant)["truth"], truth, "{}", run(variant));
    }
    // Each global artefact is flagged as the global cue it is, pushing
    // towards NORMAL, with no region on any probe.
    for (variant, cue) in [("border", "border"), ("tint", "tint")] {
        let v = &run(variant)["verdict"];
        assert_eq!(v["flagged"], true, "{v}");
        assert_eq!(v["global_cue"], cue, "{v}");
        assert_eq!(v["class"], "NORMAL", "{v}");
        assert!(
            v["suspect_boxes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b.is_null()),
            "{v}"
        );
    }
    // The hard negative scores below both and is not flagged.
    let score = |variant: &str| run(variant)["verdict"]["shortcut_score"].as_f64().unwrap();
    assert_eq!(run("marker-faint")["verdict"]["flagged"], false);
    assert!(score("marker-faint") < score("border").min(score("tint")));
    let index = std::fs::read_to_string(dir.join("reports/gz/index.html")).unwrap();
    assert!(
        index.contains("global: border") && index.contains("global: tint"),
        "the report names each cue"
    );
}

/// A laterality marker as real ones come: R or L, its size, angle, opacity
/// and brightness drawn per image, anywhere along the top of NORMAL images,
/// large enough to be learned; and its hard negative, the same letters
/// faint and small, correlated with the label but ignored.
fn varied_marker_zoo(dir: &Path) -> PathBuf {
    let text = "name: vz
dataset: {kind: synthetic, image_size: 64, synthetic: {seed: 0, train: 320, test: 96}}
model: {arch: resnet18, width: 8}
train: {epochs: 8, batch_size: 16, optimizer: {kind: sgd, lr: 0.05}}
watermark: {target_class: NORMAL, colour: [245, 245, 245]}
audit: {probes: 10}
grid:
  seed: [0]
  variants:
    marker-varied:
      watermark: true
      watermark.shape: text
      watermark.texts: [R, L]
      watermark.size: 0.3
      watermark.region: [0.0, 0.0, 1.0, 0.4]
      watermark.vary: {scale: [0.8, 1.2], rotation: [-15, 15], opacity: [0.7, 1.0], brightness: [-40, 0]}
    marker-faint:
      watermark: true
      watermark.shape: text
      watermark.texts: [R, L]
      watermark.size: 0.12
      watermark.opacity: 0.15
      watermark.region: [0.0, 0.0, 1.0, 0.4]
      watermark.vary: {rotation: [-15, 15]}
";
    let p = dir.join("vz.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_learned_varied_marker_is_flagged_and_its_hard_negative_is_not() {
    let dir = scratch("zoo_varied");
    let exp = varied_marker_zoo(&dir);
    let audit = train_and_audit(&dir, &exp, "vz");
    let runs = audit["runs"].as_array().unwrap();
    let run = |variant: &str| runs.iter().find(|r| r["variant"] == variant).unwrap();
    // The truth, measured: the varied marker is relied on, the faint one not.
    assert_eq!(
        run("marker-varied")["truth"],
        "relies",
        "{}",
        run("marker-varied")
    );
    assert_eq!(
        run("marker-faint")["truth"],
        "does-not",
        "{}",
        run("marker-faint")
    );
    // No copy of the marker is the same pixels as another, yet the verdict
    // finds it as a local object pushing towards NORMAL; the hard negative
    // scores below it and is not flagged.
    let v = &run("marker-varied")["verdict"];
    assert_eq!(v["flagged"], true, "{v}");
    assert_eq!(v["class"], "NORMAL", "{v}");
    assert!(v["global_cue"].is_null(), "{v}");
    let score = |variant: &str| run(variant)["verdict"]["shortcut_score"].as_f64().unwrap();
    assert_eq!(run("marker-faint")["verdict"]["flagged"], false);
    assert!(score("marker-faint") < score("marker-varied"));
}
