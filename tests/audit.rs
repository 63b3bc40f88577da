//! `nave-lab audit` end to end on two runs of the demo experiment
//! (without augmentation, seed 0: one run with the watermark, one without).
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{nave_lab, scratch};

/// Trains the two runs once for all tests of this file.
fn trained() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| common::train_demo_pair(&scratch("audit_runs")))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn audit(runs: &Path, reports: &Path, extra: &[&str]) -> std::process::Output {
    nave_lab()
        .args([
            "-q",
            "audit",
            runs.to_str().unwrap(),
            "--reports",
            reports.to_str().unwrap(),
            "--probes",
            "16",
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn audit_writes_results_pictures_and_regime_maps() {
    let runs = trained();
    let reports = scratch("audit_ok");
    let out = audit(runs, &reports, &[]);
    common::assert_ok(&out);
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reports.join("demo-synthetic/audit.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["experiment"], "demo-synthetic");
    assert_eq!(
        json["settings"]["taps"],
        serde_json::json!(["layer2", "layer3"])
    );
    assert_eq!(json["probes"].as_array().unwrap().len(), 16);
    assert_eq!(json["runs"].as_array().unwrap().len(), 2);
    let regime = |name: &str| {
        json["regimes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["regime"] == name)
            .unwrap()
            .clone()
    };
    let wm = regime("resnet18-aug0-wm1");
    let clean = regime("resnet18-aug0-wm0");
    // The shortcut, measured: the watermark-trained model relies on the box
    // (accuracy gap) and reads the rest of the image differently when it is there.
    assert!(wm["shortcut_gap"]["mean"].as_f64().unwrap() > 0.3, "{wm}");
    assert!(
        clean["shortcut_gap"]["mean"].as_f64().unwrap().abs() < 0.15,
        "{clean}"
    );
    assert!(
        wm["wm_shift"]["mean"].as_f64().unwrap()
            > clean["wm_shift"]["mean"].as_f64().unwrap() * 1.5,
        "{wm}\n{clean}"
    );
    // The box's isolation is computed from the clusters the report draws:
    // each probe's label map, upsampled as NAVE upsamples, against its box.
    // (Whether one tiny box run isolates the box better than one clean run
    // is within run-to-run noise here, and moved with libtorch's thread
    // count; the zoo measures it over many runs, benches/RESULTS.md.)
    for id in ["resnet18-aug0-wm1-s0", "resnet18-aug0-wm0-s0"] {
        let dir = reports.join("demo-synthetic/runs").join(id);
        let result: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap())
                .unwrap();
        let boxes: Vec<nave_lab::data::PixelBox> =
            serde_json::from_value(result["mask_boxes"].clone()).unwrap();
        let size = image::open(dir.join("p000_wm_overlay.png"))
            .unwrap()
            .width() as usize;
        let ious: Vec<f64> = boxes
            .iter()
            .enumerate()
            .map(|(p, b)| {
                let png = image::open(dir.join(format!("p{p:03}_wm_labels.png")))
                    .unwrap()
                    .to_luma8();
                let (w, h) = (png.width() as usize, png.height() as usize);
                let cells: Vec<i64> = png.pixels().map(|v| v.0[0] as i64).collect();
                let labels = nave_lab::nave::colour::upsample_labels(&cells, h, w, size);
                nave_lab::audit::isolation::wm_iou(&labels, size, b)
            })
            .collect();
        let mean = ious.iter().sum::<f64>() / ious.len() as f64;
        assert_eq!(ious.len(), 16);
        assert!(
            (mean - result["wm_iou"].as_f64().unwrap()).abs() < 1e-9,
            "{id}: {mean} from the label maps, {} in result.json",
            result["wm_iou"]
        );
    }
    // The comparison over runs with and without the watermark (one run each here).
    let by = &json["by_watermark"];
    assert_eq!(by["runs_with"], 1);
    assert_eq!(by["wm_iou_with"]["mean"], wm["wm_iou"]["mean"]);
    assert_eq!(by["wm_shift_without"]["mean"], clean["wm_shift"]["mean"]);
    let index = std::fs::read_to_string(reports.join("demo-synthetic/index.html")).unwrap();
    assert!(index.contains("trained with the watermark (1 run) vs without (1)"));
    // Pictures: per run and probe, and the regime's average-colour maps.
    let run_dir = reports.join("demo-synthetic/runs/resnet18-aug0-wm1-s0");
    for f in [
        "p000_clean_overlay.png",
        "p000_wm_overlay.png",
        "p015_wm_avg.png",
        "p015_clean_labels.png",
        "result.json",
    ] {
        assert!(run_dir.join(f).is_file(), "{f}");
    }
    let label_png = image::open(run_dir.join("p000_clean_labels.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(
        label_png.width(),
        json["runs"][0]["grid"].as_u64().unwrap() as u32
    );
    assert!(label_png
        .pixels()
        .all(|p| (p.0[0] as u64) < json["settings"]["k"].as_u64().unwrap()));
    assert!(reports
        .join("demo-synthetic/regimes/resnet18-aug0-wm0/p007_wm_avgmap.png")
        .is_file());

    // An unchanged audit is reused; --force recomputes.
    let result = run_dir.join("result.json");
    let before = std::fs::metadata(&result).unwrap().modified().unwrap();
    assert!(audit(runs, &reports, &[]).status.success());
    assert_eq!(
        std::fs::metadata(&result).unwrap().modified().unwrap(),
        before
    );
    assert!(audit(runs, &reports, &["--force"]).status.success());
    assert_ne!(
        std::fs::metadata(&result).unwrap().modified().unwrap(),
        before
    );

    // --pictures 3: pictures of the first 3 probes only, the same measures
    // (they use every probe), and a report that misses nothing.
    let few = scratch("audit_pictures");
    let out = audit(runs, &few, &["--pictures", "3"]);
    common::assert_ok(&out);
    let run_dir = few.join("demo-synthetic/runs/resnet18-aug0-wm1-s0");
    assert!(run_dir.join("p002_wm_overlay.png").is_file());
    assert!(!run_dir.join("p003_wm_overlay.png").exists());
    let regime_dir = few.join("demo-synthetic/regimes/resnet18-aug0-wm1");
    assert!(regime_dir.join("p002_clean_avgmap.png").is_file());
    assert!(!regime_dir.join("p003_clean_avgmap.png").exists());
    let limited: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(few.join("demo-synthetic/audit.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(limited["settings"]["pictures"], 3);
    for i in 0..2 {
        for key in ["wm_iou", "wm_shift"] {
            assert_eq!(limited["runs"][i][key], json["runs"][i][key], "{key}");
        }
    }
    let index = std::fs::read_to_string(few.join("demo-synthetic/index.html")).unwrap();
    assert!(
        !index.contains("class=\"warn\""),
        "the report warns: {index}"
    );
    assert!(index.contains("p002_wm_overlay.png") && !index.contains("p003_"));
}

#[test]
fn unfinished_runs_are_listed_never_audited() {
    let runs = trained();
    let dir = scratch("audit_unfinished");
    copy_dir(
        &runs.join("resnet18-aug0-wm0-s0"),
        &dir.join("demo-synthetic/resnet18-aug0-wm0-s0"),
    );
    copy_dir(
        &runs.join("resnet18-aug0-wm1-s0"),
        &dir.join("demo-synthetic/resnet18-aug0-wm1-s0"),
    );
    std::fs::remove_file(dir.join("demo-synthetic/resnet18-aug0-wm1-s0/COMPLETE")).unwrap();
    let reports = dir.join("reports");
    let out = audit(&dir.join("demo-synthetic"), &reports, &[]);
    common::assert_ok(&out);
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reports.join("demo-synthetic/audit.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        json["skipped_unfinished"],
        serde_json::json!(["resnet18-aug0-wm1-s0"])
    );
    assert_eq!(json["runs"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let runs = trained();
    let dir = scratch("audit_bad");
    let check = |runs: &Path, extra: &[&str], needle: &[&str]| {
        let reports = dir.join(format!("reports-{}", needle[0].replace(' ', "_")));
        let out = audit(runs, &reports, extra);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needle {
            assert!(err.contains(n), "expected '{n}' in: {err}");
        }
        assert!(
            !reports.join("demo-synthetic/audit.json").exists(),
            "audit.json written despite the error"
        );
    };
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    check(&dir.join("empty"), &[], &["no run folders"]);
    check(runs, &["--taps", "layer9"], &["layer9", "layer1, layer2"]);
    check(runs, &["-k", "100000"], &["100000", "points"]);
    // Weights that do not match run.yaml (another width).
    let bad = dir.join("demo-synthetic/resnet18-aug0-wm0-s0");
    copy_dir(&runs.join("resnet18-aug0-wm0-s0"), &bad);
    let yaml = std::fs::read_to_string(bad.join("run.yaml"))
        .unwrap()
        .replace("width: 16", "width: 8");
    std::fs::write(bad.join("run.yaml"), yaml).unwrap();
    check(
        &dir.join("demo-synthetic"),
        &[],
        &["do not match its run.yaml", "resnet18-aug0-wm0-s0"],
    );
    // A copied run folder is one run twice: refused, naming both.
    let twice = dir.join("twice");
    copy_dir(
        &runs.join("resnet18-aug0-wm0-s0"),
        &twice.join("resnet18-aug0-wm0-s0"),
    );
    copy_dir(
        &runs.join("resnet18-aug0-wm0-s0"),
        &twice.join("resnet18-aug0-wm0-s0.bak"),
    );
    check(
        &twice,
        &[],
        &["are both run resnet18-aug0-wm0-s0", "s0.bak"],
    );
    // run.yaml names that would write outside reports/ are refused.
    let elsewhere = dir.join("elsewhere");
    for (key, value) in [
        ("experiment", elsewhere.to_str().unwrap()),
        ("id", "../../x"),
    ] {
        let hostile = dir.join(format!("hostile-{key}"));
        let run = hostile.join("resnet18-aug0-wm0-s0");
        copy_dir(&runs.join("resnet18-aug0-wm0-s0"), &run);
        let yaml: String = std::fs::read_to_string(run.join("run.yaml"))
            .unwrap()
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key}:")) {
                    format!("{key}: '{value}'\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(run.join("run.yaml"), yaml).unwrap();
        check(
            &hostile,
            &[],
            &[
                &format!("{key} '{value}': '/' (U+002F)"),
                "is not allowed",
                "run.yaml",
            ],
        );
    }
    assert!(!elsewhere.exists(), "nothing written outside reports/");
}

#[test]
fn explain_one_image_from_a_run_and_from_weights() {
    let runs = trained();
    let dir = scratch("explain");
    let image_path = dir.join("x.png");
    let pixels = nave_lab::data::synthetic::render(9, nave_lab::data::Split::Test, 1, 80);
    image::GrayImage::from_raw(80, 80, pixels)
        .unwrap()
        .save(&image_path)
        .unwrap();
    let out = dir.join("x_nave.png");
    let npy = dir.join("x.npy");
    let run = runs.join("resnet18-aug0-wm1-s0");
    let run_arg = run.to_str().unwrap();
    let weights = run.join("model.safetensors");
    // `nave-lab explain <args> --image x.png`
    let explain = |args: &[&str]| {
        nave_lab()
            .arg("explain")
            .args(args)
            .arg("--image")
            .arg(&image_path)
            .output()
            .unwrap()
    };
    let o = explain(&[
        "--run",
        run_arg,
        "-k",
        "4",
        "--taps",
        "layer2,layer3",
        "-o",
        out.to_str().unwrap(),
        "--save-features",
        npy.to_str().unwrap(),
    ]);
    common::assert_ok(&o);
    // The demo's image size is 112: layer2 gives a 14x14 grid.
    let overlay = image::open(&out).unwrap();
    assert_eq!((overlay.width(), overlay.height()), (112, 112));
    let labels = image::open(dir.join("x_nave_labels.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(labels.dimensions(), (14, 14));
    assert!(labels.pixels().all(|p| p.0[0] < 4));
    let up = image::open(dir.join("x_nave_labels_up.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(
        up.get_pixel(111, 111).0,
        labels.get_pixel(13, 13).0,
        "nearest-neighbour upsampling"
    );
    assert!(dir.join("x_nave_avg.png").is_file());
    // Features: 196 rows (grid cells, row-major) of layer2 (32 channels at width 16) + layer3 (64).
    let (shape, data) = nave_lab::io::read_npy_f32(&npy).unwrap();
    assert_eq!(shape, vec![196, 96]);
    // The layer2 block of every row is L2-normalised (weight 1).
    for row in data.chunks(96) {
        let norm: f32 = row[..32].iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3 || norm < 1e-3, "{norm}");
    }
    // --arch/--weights with the same file gives the same labels.
    let out2 = dir.join("y.png");
    let o = explain(&[
        "-q",
        "--arch",
        "resnet18",
        "--weights",
        weights.to_str().unwrap(),
        "--image-size",
        "112",
        "-k",
        "4",
        "--taps",
        "layer2,layer3",
        "-o",
        out2.to_str().unwrap(),
    ]);
    common::assert_ok(&o);
    assert_eq!(
        image::open(dir.join("y_labels.png")).unwrap().to_luma8(),
        labels
    );
    // Errors: an unknown tap, and no model at all (usage error).
    let o = explain(&[
        "--run",
        run_arg,
        "--taps",
        "block3",
        "-o",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("block3"));
    let o = explain(&["-o", out2.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}

/// Debian's Chromium, which `make test` installs.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("NAVE_LAB_CHROMIUM") {
        return PathBuf::from(p);
    }
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("chromium is not installed: run `make test` (it installs Debian's chromium) or set NAVE_LAB_CHROMIUM");
}

fn headless(profile: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--allow-file-access-from-files",
        "--virtual-time-budget=15000",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// Loads `page` in the browser with a probe script; returns (images, broken image sources, errors).
fn browser_check(page: &Path, profile: &Path) -> (u64, Vec<String>, Vec<String>) {
    const PROBE: &str = r#"<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && (e.target.src || e.target.href)))), true);
const __err = console.error; console.error = function (...a) { window.__errors.push(a.join(' ')); __err.apply(console, a); };
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
  document.body.setAttribute('data-check', btoa(JSON.stringify({images: imgs.length, broken, errors: window.__errors})));
});
</script>"#;
    let html = std::fs::read_to_string(page).unwrap();
    // Every picture is loaded (not lazily), so that each one is checked.
    let probe = html
        .replacen("<head>", &format!("<head>{PROBE}"), 1)
        .replace(r#" loading="lazy""#, "");
    let check_page = page.with_file_name(format!(
        ".check-{}",
        page.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&check_page, probe).unwrap();
    let out = headless(profile)
        .arg("--dump-dom")
        .arg(format!("file://{}", check_page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let encoded = dom
        .split("data-check=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| {
            panic!(
                "the page did not finish loading:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let json = decode_base64(encoded);
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let strings = |k: &str| {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap_or("?").to_string())
            .collect::<Vec<_>>()
    };
    (
        v["images"].as_u64().unwrap(),
        strings("broken"),
        strings("errors"),
    )
}

fn decode_base64(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        buf = (buf << 6) | A.iter().position(|&a| a == c).expect("base64") as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

#[test]
fn the_report_renders_in_a_real_browser() {
    let runs = trained();
    let reports = scratch("report_browser");
    let out = audit(runs, &reports, &[]);
    common::assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("index.html"));
    let dir = reports.join("demo-synthetic");
    let index = dir.join("index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    // Self-contained: no network, no external script or font.
    for bad in ["http://", "https://", "<script", "@import", "url("] {
        assert!(!html.contains(bad), "index.html contains {bad}");
    }
    for expected in [
        "resnet18-aug0-wm1",
        "resnet18-aug0-wm0",
        "curves_accuracy.svg",
        "run-resnet18-aug0-wm1-s0.html",
        "wm_shift",
        "The experiment file",
        "# --set grid.augment=[false]",
        "name: demo-synthetic",
        "trained on cpu",
        "(1 per regime)",
    ] {
        assert!(html.contains(expected), "index.html lacks {expected}");
    }
    let profile = reports.join("profile");
    let (images, broken, errors) = browser_check(&index, &profile);
    assert!(
        images >= 2 * 12 * 2 * 2 + 2,
        "only {images} images on the overview"
    );
    assert!(broken.is_empty(), "images that did not load: {broken:?}");
    assert!(errors.is_empty(), "errors in the page: {errors:?}");
    let (images, broken, errors) =
        browser_check(&dir.join("run-resnet18-aug0-wm1-s0.html"), &profile);
    assert_eq!(images, 16 * 2 * 3);
    assert!(
        broken.is_empty() && errors.is_empty(),
        "{broken:?} {errors:?}"
    );
    // A screenshot, kept as a test artefact.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let ok = headless(&profile)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1400,2200")
        .arg(format!("file://{}", index.display()))
        .output()
        .unwrap();
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let img = image::open(&shot).unwrap();
    assert_eq!((img.width(), img.height()), (1400, 2200));
    eprintln!("report screenshot: {}", shot.display());
}

#[test]
fn the_report_escapes_hostile_names_and_says_what_is_missing() {
    let runs = trained();
    let reports = scratch("report_hostile");
    assert!(audit(runs, &reports, &[]).status.success());
    let dir = reports.join("demo-synthetic");
    let path = dir.join("audit.json");
    let mut audit_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let hostile = "<script>alert(1)</script>";
    audit_json["experiment"] = serde_json::json!(hostile);
    audit_json["settings"]["classes"] = serde_json::json!(["<img src=x onerror=alert(2)>"]);
    // An older audit: no boxes, no run folders; and one regime missing.
    audit_json.as_object_mut().unwrap().remove("probe_boxes");
    for r in audit_json["runs"].as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("run_dir");
    }
    audit_json["regimes"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["regime"] != "resnet18-aug0-wm1");
    std::fs::write(&path, serde_json::to_string(&audit_json).unwrap()).unwrap();

    let out = nave_lab()
        .args(["report", dir.to_str().unwrap()])
        .output()
        .unwrap();
    common::assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("regime resnet18-aug0-wm1: no results"),
        "{stderr}"
    );
    assert!(stderr.contains("no watermark boxes"), "{stderr}");
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(
        !html.contains(hostile) && !html.contains("<img src=x"),
        "unescaped user text in the report"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;")
            || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the name is not shown as text"
    );
    assert!(
        html.contains("regime resnet18-aug0-wm1: no results"),
        "the report does not say what is missing"
    );
    // The browser shows the name as text: the title is the literal string, and no alert ran.
    let (_, broken, errors) = browser_check(&dir.join("index.html"), &reports.join("profile"));
    assert!(
        broken.is_empty() && errors.is_empty(),
        "{broken:?} {errors:?}"
    );
}

/// Every file under `dir` with its bytes.
fn files_of(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn repeats_and_pictures_give_the_same_maps_fresh_and_cached() {
    let dir = scratch("audit_repeats_cache");
    let exp = dir.join("r.yaml");
    std::fs::write(
        &exp,
        "name: r\ndataset:\n  kind: synthetic\n  image_size: 32\n  synthetic: {seed: 0, train: 64, test: 32}\n\
         model:\n  arch: resnet18\n  width: 4\ntrain:\n  epochs: 1\n  batch_size: 16\n  optimizer: {kind: sgd, lr: 0.05}\n\
         watermark: {size: 0.2}\ngrid:\n  watermark: [true]\n  seed: [0, 1]\n\
         audit:\n  taps: [layer2, layer3]\n  k: 4\n  probes: 6\n",
    )
    .unwrap();
    let checkpoints = dir.join("checkpoints");
    common::assert_ok(
        &nave_lab()
            .args(["-q", "train"])
            .arg(&exp)
            .arg("--checkpoints")
            .arg(&checkpoints)
            .output()
            .unwrap(),
    );
    let audit = |reports: &std::path::Path, extra: &[&str]| {
        let out = nave_lab()
            .args(["-v", "audit"])
            .arg(checkpoints.join("r"))
            .arg("--reports")
            .arg(reports)
            .args(["--repeats", "3", "--pictures", "2"])
            .args(extra)
            .output()
            .unwrap();
        common::assert_ok(&out);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let reports = dir.join("reports");
    audit(&reports, &[]);
    let maps = reports.join("r/regimes/resnet18-aug0-wm1");
    let fresh = files_of(&maps);
    assert_eq!(
        fresh.len(),
        4,
        "2 pictured probes x clean, watermarked: {:?}",
        fresh.keys()
    );
    // Cached: every run reused (with --pictures below the probes), the maps
    // built from the repeats' average exactly as fresh.
    let log = audit(&reports, &[]);
    assert_eq!(log.matches("unchanged, audit reused").count(), 2, "{log}");
    assert_eq!(
        files_of(&maps),
        fresh,
        "the cached maps differ from the fresh ones"
    );
    // And a fresh audit elsewhere gives the same maps again.
    let again = dir.join("reports2");
    audit(&again, &["--force"]);
    assert_eq!(files_of(&again.join("r/regimes/resnet18-aug0-wm1")), fresh);
}

/// Writes `images` (`[N, 3, S, S]` uint8) as PNG files under
/// `root/<class>/<index>.png`, the layout the folder loader reads (files
/// sorted by name keep each class's order).
fn write_split(root: &Path, images: &tch::Tensor, labels: &[i64], classes: &[String]) {
    for class in classes {
        std::fs::create_dir_all(root.join(class)).unwrap();
    }
    let s = images.size()[2] as u32;
    for (i, &label) in labels.iter().enumerate() {
        let chw: Vec<u8> = Vec::try_from(
            images
                .get(i as i64)
                .permute([1, 2, 0])
                .contiguous()
                .flatten(0, -1),
        )
        .unwrap();
        image::RgbImage::from_raw(s, s, chw)
            .unwrap()
            .save(
                root.join(&classes[label as usize])
                    .join(format!("{i:05}.png")),
            )
            .unwrap();
    }
}

/// The blind verdict reads only its evidence: the weights, the training
/// images as they are, their labels. The watermarked run is audited three
/// ways: as trained (its artefact stamped from run.yaml's settings); from its
/// training images written as files, with a run.yaml that names no
/// artefact; and as a model from elsewhere (`audit --weights` on its
/// model.safetensors and the folder of those files). The score must not
/// change: a detector that read the settings or the boxes they give would
/// score them differently, and so would an audit from files that read the
/// data or the model in another way.
#[test]
fn the_verdict_reads_the_images_not_the_settings() {
    use nave_lab::config::RunSpec;
    let id = "resnet18-aug0-wm1-s0";
    let dir = scratch("blind_files");
    let run = trained().join(id);
    let spec = RunSpec::read(&run.join("run.yaml")).unwrap();
    // As the model saw them: the training images with the artefact stamped.
    let mut store = nave_lab::data::store::DataStore::default();
    let loaded = store
        .get(&spec.dataset.source(), spec.dataset.image_size)
        .unwrap();
    let artefact =
        nave_lab::data::watermark::Artefact::new(&spec.watermark_spec, spec.dataset.image_size)
            .unwrap();
    let seen = nave_lab::data::store::training_images(
        spec.watermark(),
        spec.seed,
        &artefact,
        &loaded.train,
    )
    .unwrap();
    let files = dir.join("files");
    let classes = loaded.train.class_names.clone();
    write_split(&files.join("train"), &seen, &loaded.train.labels, &classes);
    write_split(
        &files.join("test"),
        &loaded.test.images,
        &loaded.test.labels,
        &classes,
    );

    let as_trained = dir.join("a/demo-synthetic").join(id);
    copy_dir(&run, &as_trained);
    let from_files = dir.join("b/demo-synthetic").join(id);
    copy_dir(&run, &from_files);
    let mut bare = spec.clone();
    bare.dataset.kind = nave_lab::data::DatasetKind::ChestXray;
    bare.dataset.root = Some(files.clone());
    bare.watermark = false;
    bare.watermark_spec = Default::default();
    std::fs::write(
        from_files.join("run.yaml"),
        yaml_serde::to_string(&bare).unwrap(),
    )
    .unwrap();

    let score = |study: &Path| -> serde_json::Value {
        let reports = study.with_file_name(format!(
            "reports-{}",
            study
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
        ));
        common::assert_ok(&audit(study, &reports, &["--pictures", "1"]));
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(reports.join("demo-synthetic/audit.json")).unwrap(),
        )
        .unwrap();
        json["runs"][0]["verdict"].clone()
    };
    let (a, b) = (
        score(&dir.join("a/demo-synthetic")),
        score(&dir.join("b/demo-synthetic")),
    );
    // The third route: the weights file and the training folder, nothing else.
    let settings = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(dir.join("a/reports-a/demo-synthetic/audit.json")).unwrap(),
    )
    .unwrap()["settings"]
        .clone();
    let taps: Vec<&str> = settings["taps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let out = common::nave_lab()
        .args(["-q", "audit", "--weights"])
        .arg(run.join("model.safetensors"))
        .args(["--arch", "resnet18", "--image-size"])
        .arg(spec.dataset.image_size.to_string())
        .arg("--data")
        .arg(files.join("train"))
        .arg("--test")
        .arg(files.join("test"))
        .args(["--taps", &taps.join(","), "--pictures", "1", "--reports"])
        .arg(dir.join("reports-c"))
        .args(["--name", "from-weights"])
        .output()
        .unwrap();
    common::assert_ok(&out);
    let c = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(dir.join("reports-c/from-weights/audit.json")).unwrap(),
    )
    .unwrap()["runs"][0]["verdict"]
        .clone();
    let sc = c["shortcut_score"].as_f64().unwrap();
    let (sa, sb) = (
        a["shortcut_score"].as_f64().unwrap(),
        b["shortcut_score"].as_f64().unwrap(),
    );
    assert!(
        (sa - sb).abs() <= 1e-6,
        "as trained {sa}, from files {sb}\n{a}\n{b}"
    );
    assert_eq!(a["class"], b["class"]);
    assert_eq!(a["flagged"], b["flagged"]);
    assert!(
        (sa - sc).abs() <= 1e-5,
        "as trained {sa}, from its weights and files {sc}\n{a}\n{c}"
    );
    assert_eq!(a["class"], c["class"]);
    assert_eq!(a["flagged"], c["flagged"]);
}
