//! The dataset readers on small fixtures written in the real formats.
mod common;

use std::path::Path;

use common::{nave_lab, scratch};
use nave_lab::data::{folder, stl10, BadFiles, DataError, Split};

/// Value of STL-10 fixture pixel (image n, channel c, row y, column x): every
/// coordinate changes it differently, so a transposed, flipped or
/// channel-swapped read cannot pass.
fn stl_pixel(n: usize, c: usize, y: usize, x: usize) -> u8 {
    ((n * 7 + c * 50 + y * 3 + x * 11 / 5) % 256) as u8
}

fn write_stl10(root: &Path, n: usize, labels: &[u8]) {
    let dir = root.join("stl10_binary");
    std::fs::create_dir_all(&dir).unwrap();
    let mut x = Vec::with_capacity(n * 3 * 96 * 96);
    for img in 0..n {
        for c in 0..3 {
            // Column-major plane: x (column) varies slowest.
            for col in 0..96 {
                for row in 0..96 {
                    x.push(stl_pixel(img, c, row, col));
                }
            }
        }
    }
    std::fs::write(dir.join("train_X.bin"), &x).unwrap();
    std::fs::write(dir.join("train_y.bin"), labels).unwrap();
    std::fs::write(
        dir.join("class_names.txt"),
        "airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck\n",
    )
    .unwrap();
}

#[test]
fn stl10_reads_pixels_in_the_right_orientation_and_labels_zero_based() {
    let root = scratch("stl10_ok");
    write_stl10(&root, 3, &[1, 10, 4]);
    let data = stl10::load(&root, Split::Train, 96).unwrap();
    assert_eq!(data.images.size(), vec![3, 3, 96, 96]);
    assert_eq!(data.labels, vec![0, 9, 3]);
    assert_eq!(data.class_names[9], "truck");
    for (n, c, y, x) in [(0, 0, 0, 1), (1, 2, 5, 90), (2, 1, 95, 0), (2, 0, 17, 63)] {
        let got = data
            .images
            .int64_value(&[n as i64, c as i64, y as i64, x as i64]);
        assert_eq!(
            got,
            stl_pixel(n, c, y, x) as i64,
            "pixel n={n} c={c} y={y} x={x}"
        );
    }
    assert_eq!(stl10::available_splits(&root).unwrap(), vec![Split::Train]);
    // Resizing keeps the layout (a 48x48 read is the 96x96 one downsampled).
    assert_eq!(
        stl10::load(&root, Split::Train, 48).unwrap().images.size(),
        vec![3, 3, 48, 48]
    );
}

#[test]
fn stl10_truncated_or_mismatched_files_are_named_with_sizes() {
    let root = scratch("stl10_bad");
    write_stl10(&root, 2, &[1, 2]);
    let x = root.join("stl10_binary/train_X.bin");
    let bytes = std::fs::read(&x).unwrap();
    std::fs::write(&x, &bytes[..bytes.len() - 100]).unwrap();
    let err = stl10::load(&root, Split::Train, 96)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train_X.bin")
            && err.contains(&(bytes.len() - 100).to_string())
            && err.contains("27648"),
        "{err}"
    );

    write_stl10(&root, 2, &[1, 2, 3]);
    let err = stl10::load(&root, Split::Train, 96)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train_y.bin") && err.contains("3 bytes") && err.contains("needs 2"),
        "{err}"
    );

    write_stl10(&root, 2, &[1, 11]);
    let err = stl10::load(&root, Split::Train, 96)
        .unwrap_err()
        .to_string();
    assert!(err.contains("label 11"), "{err}");

    let err = stl10::load(&root, Split::Test, 96).unwrap_err();
    assert!(matches!(err, DataError::MissingSplit { .. }), "{err}");
    let err = stl10::load(&root.join("nowhere"), Split::Train, 96)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nowhere") && err.contains("stl10_binary"),
        "{err}"
    );
}

/// A Kermany-layout tree: grayscale and RGB JPEGs of different sizes, a PNG,
/// and one corrupt file.
fn write_chest_tree(root: &Path) {
    for (split, class, name, w, h, rgb) in [
        ("train", "NORMAL", "a.jpeg", 40, 30, false),
        ("train", "NORMAL", "b.jpeg", 25, 50, true),
        ("train", "PNEUMONIA", "c.png", 32, 32, false),
        ("train", "PNEUMONIA", "d.jpg", 60, 20, true),
        ("test", "NORMAL", "e.jpeg", 32, 32, false),
        ("test", "PNEUMONIA", "f.jpeg", 32, 32, true),
    ] {
        let dir = root.join(split).join(class);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        if rgb {
            // Red left half, blue right half.
            image::RgbImage::from_fn(w, h, |x, _| {
                if x < w / 2 {
                    image::Rgb([220, 10, 10])
                } else {
                    image::Rgb([10, 10, 220])
                }
            })
            .save(&path)
            .unwrap();
        } else {
            image::GrayImage::from_pixel(w, h, image::Luma([200]))
                .save(&path)
                .unwrap();
        }
    }
    std::fs::write(
        root.join("train/PNEUMONIA/broken.jpeg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();
}

#[test]
fn chest_xray_reads_gray_and_rgb_of_any_size() {
    let root = scratch("chest_ok");
    write_chest_tree(&root);
    let data = folder::load(&root, Split::Train, 16, BadFiles::Skip).unwrap();
    assert_eq!(data.class_names, vec!["NORMAL", "PNEUMONIA"]);
    assert_eq!(data.images.size(), vec![4, 3, 16, 16]);
    assert_eq!(data.labels, vec![0, 0, 1, 1]);
    assert_eq!(data.skipped.len(), 1);
    assert!(data.skipped[0].ends_with("broken.jpeg"));
    // a.jpeg: gray 200 replicated to 3 channels (JPEG is lossy: a tolerance).
    for c in 0..3 {
        assert!((data.images.int64_value(&[0, c, 8, 8]) - 200).abs() <= 3);
    }
    // b.jpeg: red on the left, blue on the right, after resizing.
    assert!(
        data.images.int64_value(&[1, 0, 8, 1]) > 180 && data.images.int64_value(&[1, 2, 8, 1]) < 60
    );
    assert!(
        data.images.int64_value(&[1, 2, 8, 14]) > 180
            && data.images.int64_value(&[1, 0, 8, 14]) < 60
    );
    assert_eq!(
        folder::available_splits(&root).unwrap(),
        vec![Split::Train, Split::Test]
    );
}

#[test]
fn chest_xray_errors_name_the_path() {
    let root = scratch("chest_bad");
    write_chest_tree(&root);
    let err = folder::load(&root, Split::Train, 16, BadFiles::Fail)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("broken.jpeg") && err.contains("bad_files: skip"),
        "{err}"
    );

    let err = folder::load(&root, Split::Val, 16, BadFiles::Skip)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("val split is absent") && err.contains("train, test"),
        "{err}"
    );

    let err = folder::load(&root.join("missing"), Split::Train, 16, BadFiles::Skip)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing") && err.contains("does not exist"),
        "{err}"
    );

    // Images directly in the split folder: no class folders.
    let flat = scratch("chest_flat");
    std::fs::create_dir_all(flat.join("train")).unwrap();
    image::GrayImage::new(8, 8)
        .save(flat.join("train/x.png"))
        .unwrap();
    let err = folder::load(&flat, Split::Train, 16, BadFiles::Skip)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("one folder per class") && err.contains("no class folders"),
        "{err}"
    );
}

#[test]
fn synth_folder_goes_through_the_folder_loader_pixel_for_pixel() {
    let root = scratch("synth");
    let out = root.join("set");
    let status = nave_lab()
        .args([
            "data",
            "synth",
            "--out",
            out.to_str().unwrap(),
            "--train",
            "6",
            "--test",
            "4",
            "--size",
            "24",
            "--seed",
            "3",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let data = folder::load(&out, Split::Test, 24, BadFiles::Fail).unwrap();
    assert_eq!(data.count_per_class(), vec![2, 2]);
    // PNG is lossless: the loaded image equals the generator's output.
    let expected = nave_lab::data::synthetic::render(3, Split::Test, 1, 24);
    let got: Vec<u8> = Vec::try_from(data.images.get(2).get(0).flatten(0, -1)).unwrap();
    assert_eq!(got, expected, "test/PNEUMONIA/00001.png");
    // A second synth into the same folder refuses instead of mixing sets.
    let out2 = nave_lab()
        .args(["data", "synth", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out2.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out2.stderr).contains("already exists"));
}

/// `nave-lab data stats --dataset chest-xray --root ROOT --json`, parsed.
fn stats_json(root: &Path) -> serde_json::Value {
    let out = nave_lab()
        .args(["data", "stats", "--dataset", "chest-xray", "--root"])
        .arg(root)
        .arg("--json")
        .output()
        .unwrap();
    common::assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn data_stats_and_show_work_end_to_end() {
    let root = scratch("stats");
    write_chest_tree(&root);
    let v = stats_json(&root);
    assert_eq!(v[0]["count_per_class"], serde_json::json!([2, 2]));
    assert_eq!(v[0]["undecodable"].as_array().unwrap().len(), 1);
    assert_eq!(v[1]["present"], false);
    let png = root.join("grid.png");
    let out = nave_lab()
        .args([
            "-q",
            "data",
            "show",
            "--dataset",
            "chest-xray",
            "--root",
            root.to_str().unwrap(),
            "--image-size",
            "16",
            "--count",
            "3",
            "--out",
            png.to_str().unwrap(),
        ])
        .env("NAVE_LAB_CACHE", root.join("cache"))
        .output()
        .unwrap();
    common::assert_ok(&out);
    let img = image::open(&png).unwrap();
    // 3 rows x 3 columns of 16 px tiles zoomed 4x, with 2 px gaps.
    assert_eq!((img.width(), img.height()), (3 * 66 + 2, 3 * 66 + 2));
}

/// The real chest X-rays shipped in data/cxr-sample (Kermany et al. 2018).
fn cxr_sample() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cxr-sample")
}

#[test]
fn the_shipped_chest_xray_sample_reads_as_real_grayscale_x_rays() {
    let root = cxr_sample();
    assert!(
        root.join("README.md").is_file(),
        "the sample's README (source and licence) must ship with it"
    );
    // data stats: the counts and the one size and mode of the sample.
    let v = stats_json(&root);
    assert_eq!(
        v[0]["class_names"],
        serde_json::json!(["NORMAL", "PNEUMONIA"])
    );
    assert_eq!(v[0]["count_per_class"], serde_json::json!([400, 400]));
    assert_eq!(v[1]["present"], false, "no val split");
    assert_eq!(v[2]["count_per_class"], serde_json::json!([150, 150]));
    assert_eq!(
        v[0]["sizes_and_modes"],
        serde_json::json!([["160x160 L8", 800]])
    );
    assert!(v[0]["undecodable"].as_array().unwrap().is_empty());

    // The loader at the native size: grayscale replicated to 3 identical
    // channels, the first file's pixels exactly as the JPEG decoder gives them.
    let test = folder::load(&root, Split::Test, 160, BadFiles::Fail).unwrap();
    assert_eq!(test.images.size(), vec![300, 3, 160, 160]);
    assert_eq!(test.count_per_class(), vec![150, 150]);
    assert!(
        test.labels[..150].iter().all(|&l| l == 0) && test.labels[150..].iter().all(|&l| l == 1)
    );
    let r = test.images.narrow(1, 0, 1);
    assert!(r.equal(&test.images.narrow(1, 1, 1)) && r.equal(&test.images.narrow(1, 2, 1)));
    let mut first: Vec<_> = std::fs::read_dir(root.join("test/NORMAL"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    first.sort();
    let decoded = image::open(&first[0]).unwrap().to_luma8();
    for (x, y) in [(0u32, 0u32), (80, 80), (159, 40), (20, 150)] {
        assert_eq!(
            test.images.int64_value(&[0, 0, y as i64, x as i64]),
            decoded.get_pixel(x, y).0[0] as i64,
            "pixel ({x}, {y}) of {}",
            first[0].display()
        );
    }
    // Real radiographs, not flat pictures: a wide range of grey levels in
    // every image, and a mean grey far from black or white.
    let train = folder::load(&root, Split::Train, 64, BadFiles::Fail).unwrap();
    assert_eq!(train.images.size(), vec![800, 3, 64, 64]);
    let f = train.images.narrow(1, 0, 1).to_kind(tch::Kind::Float);
    let per_image_sd: Vec<f64> = Vec::try_from(
        f.flatten(1, -1)
            .std_dim(1, true, false)
            .to_kind(tch::Kind::Double),
    )
    .unwrap();
    assert!(
        per_image_sd.iter().all(|&sd| sd > 12.0),
        "min sd {:?}",
        per_image_sd.iter().cloned().fold(f64::MAX, f64::min)
    );
    let mean = f.mean(tch::Kind::Float).double_value(&[]);
    assert!((60.0..200.0).contains(&mean), "mean grey {mean}");
}

/// `data show --experiment` draws the varied, text and global artefact
/// families: one row per family after the clean row, each different from
/// the clean row and from the others.
#[test]
fn data_show_draws_varied_text_and_global_artefacts() {
    let dir = scratch("show_families");
    let exp = dir.join("f.yaml");
    std::fs::write(
        &exp,
        "name: f
dataset: {kind: synthetic, image_size: 48, synthetic: {seed: 0, train: 16, test: 8}}
train: {epochs: 1, batch_size: 8, optimizer: {kind: sgd, lr: 0.1}}
watermark: {target_class: NORMAL}
grid:
  variants:
    marker:
      watermark: true
      watermark.shape: text
      watermark.texts: [R, L]
      watermark.colour: [255, 255, 255]
      watermark.size: 0.25
      watermark.region: [0.0, 0.0, 1.0, 0.4]
      watermark.vary: {scale: [0.8, 1.2], rotation: [-20, 20], blur: [0, 0.5], jpeg: [60, 90]}
    tint: {watermark: true, watermark.shape: tint, watermark.colour: [255, 0, 0], watermark.strength: 0.3}
    noise: {watermark: true, watermark.shape: noise, watermark.strength: 30}
    border: {watermark: true, watermark.shape: border, watermark.size: 0.1}
    blur: {watermark: true, watermark.shape: blur, watermark.strength: 1.5}
",
    )
    .unwrap();
    let png = dir.join("families.png");
    let out = nave_lab()
        .args(["data", "show", "--experiment"])
        .arg(&exp)
        .args(["--count", "4", "-o"])
        .arg(&png)
        .env("NAVE_LAB_CACHE", dir.join("cache"))
        .output()
        .unwrap();
    common::assert_ok(&out);
    let legend = String::from_utf8_lossy(&out.stdout);
    for family in ["marker", "tint", "noise", "border", "blur"] {
        assert!(legend.contains(family), "{legend}");
    }
    let img = image::open(&png).unwrap().to_rgb8();
    // Six rows of tiles with 2 px gaps: cut each row and compare.
    let rows = 6;
    let tile = (img.height() - 2) / rows;
    let row = |r: u32| -> Vec<u8> {
        image::imageops::crop_imm(&img, 0, 2 + r * tile, img.width(), tile - 2)
            .to_image()
            .into_raw()
    };
    let all: Vec<Vec<u8>> = (0..rows).map(row).collect();
    for a in 0..all.len() {
        for b in a + 1..all.len() {
            assert_ne!(all[a], all[b], "rows {a} and {b} are the same picture");
        }
    }
}
