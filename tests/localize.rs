//! `nave-lab localize` on small VOC- and COCO-format fixtures written here.
mod common;

use std::path::Path;

use common::{nave_lab, scratch};
use nave_lab::localize::dataset::{load, parse_voc_xml, LocalizeDataset};

fn voc_xml(objects: &[(&str, [u32; 4], bool, bool)]) -> String {
    let mut s = String::from("<annotation><folder>VOC2007</folder><size><width>96</width><height>80</height><depth>3</depth></size>");
    for (name, b, difficult, truncated) in objects {
        s += &format!(
            "<object><name>{name}</name><truncated>{}</truncated><difficult>{}</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>",
            *truncated as u8, *difficult as u8, b[0], b[1], b[2], b[3]
        );
    }
    s + "</annotation>"
}

/// Three images with bright rectangles on a dark background; one has only a difficult object.
fn write_voc(root: &Path) {
    let base = root.join("VOCdevkit/VOC2007");
    for d in ["JPEGImages", "Annotations", "ImageSets/Main"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    // (image id, [(class, box, difficult, truncated)])
    type Objects = (&'static str, Vec<(&'static str, [u32; 4], bool, bool)>);
    let objects: [Objects; 3] = [
        ("000001", vec![("cat", [11, 21, 50, 60], false, false)]),
        (
            "000002",
            vec![
                ("dog", [41, 11, 90, 70], false, true),
                ("cat", [1, 1, 20, 20], false, false),
            ],
        ),
        ("000003", vec![("bird", [21, 21, 70, 60], true, false)]),
    ];
    for (id, objs) in &objects {
        let (x0, y0, x1, y1) = (
            objs[0].1[0] - 1,
            objs[0].1[1] - 1,
            objs[0].1[2],
            objs[0].1[3],
        );
        image::RgbImage::from_fn(96, 80, |x, y| {
            if x >= x0 && x < x1 && y >= y0 && y < y1 {
                image::Rgb([230, 200, 40])
            } else {
                image::Rgb([20, 30, 60])
            }
        })
        .save(base.join(format!("JPEGImages/{id}.jpg")))
        .unwrap();
        std::fs::write(base.join(format!("Annotations/{id}.xml")), voc_xml(objs)).unwrap();
    }
    std::fs::write(
        base.join("ImageSets/Main/trainval.txt"),
        "000001\n000002\n000003\n",
    )
    .unwrap();
}

#[test]
fn voc_parsing_keeps_every_object_and_converts_to_continuous_boxes() {
    let root = scratch("voc_parse");
    write_voc(&root);
    let all = load(LocalizeDataset::Voc07, &root, false).unwrap();
    assert_eq!(all.items.len(), 3);
    assert_eq!(all.items[0].boxes, vec![[10.0, 20.0, 50.0, 60.0]]);
    assert_eq!(all.items[1].boxes.len(), 2);
    assert!(all.items[0]
        .image
        .ends_with("VOCdevkit/VOC2007/JPEGImages/000001.jpg"));
    let easy = load(LocalizeDataset::Voc07, &root, true).unwrap();
    assert_eq!(
        easy.items.len(),
        2,
        "the image with only a difficult object is skipped"
    );
    assert_eq!(easy.without_objects, vec!["000003".to_string()]);
    assert_eq!(
        easy.items[1].boxes,
        vec![[0.0, 0.0, 20.0, 20.0]],
        "the truncated object is dropped"
    );
}

#[test]
fn voc_errors_name_the_file() {
    let root = scratch("voc_bad");
    write_voc(&root);
    let bad = root.join("VOCdevkit/VOC2007/Annotations/000002.xml");
    std::fs::write(
        &bad,
        "<annotation><object><bndbox><xmin>3</xmin></annotation>",
    )
    .unwrap();
    let err = format!(
        "{:#}",
        load(LocalizeDataset::Voc07, &root, false).unwrap_err()
    );
    assert!(
        err.contains("000002.xml") && err.contains("malformed XML"),
        "{err}"
    );
    std::fs::write(
        &bad,
        voc_xml(&[("cat", [1, 1, 5, 5], false, false)]).replace("<ymax>5</ymax>", ""),
    )
    .unwrap();
    let err = format!("{:#}", parse_voc_xml(&bad, false).unwrap_err());
    assert!(err.contains("000002.xml") && err.contains("ymax"), "{err}");
    let err = format!(
        "{:#}",
        load(LocalizeDataset::Voc12, &root, false).unwrap_err()
    );
    assert!(
        err.contains("VOCdevkit/VOC2012") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn coco20k_reads_losts_list_and_counts_crowd_only_images_as_misses() {
    let root = scratch("coco");
    std::fs::create_dir_all(root.join("annotations")).unwrap();
    std::fs::create_dir_all(root.join("images/train2014")).unwrap();
    let names = [
        "COCO_train2014_000000000009.jpg",
        "COCO_train2014_000000000025.jpg",
        "COCO_train2014_000000000030.jpg",
    ];
    for n in &names {
        image::RgbImage::new(64, 48)
            .save(root.join("images/train2014").join(n))
            .unwrap();
    }
    let json = serde_json::json!({
        "images": [{"id": 9, "file_name": names[0]}, {"id": 25, "file_name": names[1]}, {"id": 30, "file_name": names[2]}],
        "annotations": [
            // Halves round to even, as Python's round: 10.5 -> 10, 5.5 -> 6, 30.5 -> 30, 15.5 -> 16.
            {"image_id": 9, "bbox": [10.5, 5.5, 20.0, 10.0], "iscrowd": 0},
            {"image_id": 9, "bbox": [0, 0, 64, 48], "iscrowd": 1},
            {"image_id": 25, "bbox": [1, 2, 3, 4], "iscrowd": 1},
            {"image_id": 30, "bbox": [3, 4, 5, 6], "iscrowd": 0}
        ],
        "categories": []
    });
    std::fs::write(
        root.join("annotations/instances_train2014.json"),
        json.to_string(),
    )
    .unwrap();
    // Image 30 is not in the 20k list; the list names files as LOST's does.
    std::fs::write(
        root.join("coco_20k_filenames.txt"),
        format!("train2014/{}\ntrain2014/{}\n", names[0], names[1]),
    )
    .unwrap();
    let loaded = load(LocalizeDataset::Coco20k, &root, false).unwrap();
    assert_eq!(loaded.items.len(), 2);
    assert_eq!(loaded.items[0].boxes, vec![[10.0, 6.0, 30.0, 16.0]]);
    assert_eq!(
        loaded.items[0].image,
        root.join("images/train2014").join(names[0])
    );
    assert!(
        loaded.items[1].boxes.is_empty(),
        "an image with only crowd boxes stays, with nothing to find (a miss, as in LOST)"
    );
    assert!(loaded.without_objects.is_empty());
    std::fs::write(
        root.join("annotations/instances_train2014.json"),
        "{\"images\": [",
    )
    .unwrap();
    let err = format!(
        "{:#}",
        load(LocalizeDataset::Coco20k, &root, false).unwrap_err()
    );
    assert!(
        err.contains("instances_train2014.json") && err.contains("not a COCO instances file"),
        "{err}"
    );
}

#[test]
fn localize_end_to_end_writes_a_table_lines_and_examples() {
    let root = scratch("localize_e2e");
    write_voc(&root);
    // A narrow ResNet18 with seeded random weights, saved with torchvision names.
    let weights = root.join("r18.safetensors");
    tch::manual_seed(0);
    let spec = nave_lab::models::ModelSpec {
        arch: nave_lab::models::Arch::Resnet18,
        width: Some(8),
        init: None,
        init_sha256: None,
        registers: 0,
        layer_scale: false,
    };
    nave_lab::models::Model::new(&spec, 2, 64, tch::Device::Cpu)
        .unwrap()
        .save(&weights, 0)
        .unwrap();
    let out = root.join("out");
    let o = nave_lab()
        .args([
            "localize",
            "--dataset",
            "voc07",
            "--root",
            root.to_str().unwrap(),
            "--arch",
            "resnet18",
            "--weights",
            weights.to_str().unwrap(),
        ])
        .args([
            "--taps",
            "layer1,layer2",
            "-k",
            "2,3",
            "--slic",
            "--protocol",
            "paper",
            "--min-size",
            "50",
            "--out",
            out.to_str().unwrap(),
            "--no-hard",
        ])
        .output()
        .unwrap();
    common::assert_ok(&o);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("voc07 — 2 images")
            && table.contains("nave-kmeans")
            && table.contains("slic")
            && table.contains("inner"),
        "{table}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("per_image.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 2 images x (NAVE + SLIC) x 2 K x 2 strategies.
    assert_eq!(lines.len(), 2 * 2 * 2 * 2);
    for l in &lines {
        let iou = l["iou"].as_f64().unwrap();
        assert!((0.0..=1.0 + 1e-9).contains(&iou));
        assert_eq!(l["found"].as_bool().unwrap(), iou >= 0.5);
    }
    // The summary's percentages are the lines' counts.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["skipped"], serde_json::json!(["000003"]));
    for s in summary["scores"].as_array().unwrap() {
        let found = lines
            .iter()
            .filter(|l| {
                l["source"] == s["source"]
                    && l["k"] == s["k"]
                    && l["strategy"] == s["strategy"]
                    && l["found"] == true
            })
            .count();
        assert_eq!(s["found"].as_u64().unwrap() as usize, found);
        assert_eq!(s["percent"].as_f64().unwrap(), 100.0 * found as f64 / 2.0);
    }
    assert!(out.join("examples/000001.png").is_file());
    // --limit evaluates a subset.
    let o = nave_lab()
        .args([
            "-q",
            "localize",
            "--dataset",
            "voc07",
            "--root",
            root.to_str().unwrap(),
            "--arch",
            "resnet18",
            "--weights",
            weights.to_str().unwrap(),
            "--limit",
            "1",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    common::assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 images"));
}

/// Solid rectangles (1-3 per image, some touching the border) on striped,
/// noisy backgrounds; sizes not multiples of 16. Returns each image's
/// rectangles as `[x0, y0, x1, y1)` pixel ranges.
fn shapes_image(rng: &mut rand_chacha::ChaCha8Rng) -> (image::RgbImage, Vec<[u32; 4]>) {
    use rand::Rng;
    let (w, h) = (rng.gen_range(224..320u32), rng.gen_range(208..288u32));
    let base: [f32; 3] = [0, 1, 2].map(|_| rng.gen_range(40.0..200.0));
    let (fx, fy, phase) = (
        rng.gen_range(0.02..0.15f32),
        rng.gen_range(0.02..0.15f32),
        rng.gen_range(0.0..6.3f32),
    );
    let mut img = image::RgbImage::from_fn(w, h, |x, y| {
        let stripe = 25.0 * (x as f32 * fx + y as f32 * fy + phase).sin();
        image::Rgb(base.map(|b| (b + stripe).clamp(0.0, 255.0) as u8))
    });
    for p in img.pixels_mut() {
        for c in p.0.iter_mut() {
            *c = (*c as i32 + rng.gen_range(-8..=8)).clamp(0, 255) as u8;
        }
    }
    let mut rects = Vec::new();
    for _ in 0..rng.gen_range(1..=3) {
        let (rw, rh) = (rng.gen_range(48..w / 2), rng.gen_range(48..h / 2));
        let mut x0 = rng.gen_range(0..w - rw);
        let mut y0 = rng.gen_range(0..h - rh);
        match rng.gen_range(0..6) {
            0 => x0 = 0,
            1 => x0 = w - rw,
            2 => y0 = 0,
            3 => y0 = h - rh,
            _ => {}
        }
        let colour = image::Rgb([0, 1, 2].map(|_| rng.gen_range(0..=255u8)));
        for y in y0..y0 + rh {
            for x in x0..x0 + rw {
                img.put_pixel(x, y, colour);
            }
        }
        rects.push([x0, y0, x0 + rw, y0 + rh]);
    }
    (img, rects)
}

/// A VOC07-format set of `n` shapes images. The images are PNG data under
/// VOC's `.jpg` names, so that both readers decode the same pixels.
fn write_shapes_voc(root: &Path, n: usize, seed: u64) {
    use rand::SeedableRng;
    let base = root.join("VOCdevkit/VOC2007");
    for d in ["JPEGImages", "Annotations", "ImageSets/Main"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut ids = String::new();
    for i in 0..n {
        let id = format!("{:06}", i + 1);
        let (img, rects) = shapes_image(&mut rng);
        img.save_with_format(
            base.join(format!("JPEGImages/{id}.jpg")),
            image::ImageFormat::Png,
        )
        .unwrap();
        // VOC's 1-based inclusive corners.
        let objects: Vec<(&str, [u32; 4], bool, bool)> = rects
            .iter()
            .map(|r| ("shape", [r[0] + 1, r[1] + 1, r[2], r[3]], false, false))
            .collect();
        std::fs::write(
            base.join(format!("Annotations/{id}.xml")),
            voc_xml(&objects),
        )
        .unwrap();
        ids += &format!("{id}\n");
    }
    std::fs::write(base.join("ImageSets/Main/trainval.txt"), ids).unwrap();
}

/// A COCO20k-format set of `n` shapes images with LOST's prefixed list;
/// boxes carry half pixels (rounded to even); the last image has only a
/// crowd box, and one annotated image is not in the list.
fn write_shapes_coco(root: &Path, n: usize, seed: u64) {
    use rand::SeedableRng;
    std::fs::create_dir_all(root.join("annotations")).unwrap();
    std::fs::create_dir_all(root.join("images/train2014")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut images, mut annotations, mut list) = (Vec::new(), Vec::new(), String::new());
    for i in 0..=n {
        let id = 100 + i as u64;
        let name = format!("COCO_train2014_{id:012}.jpg");
        let (img, rects) = shapes_image(&mut rng);
        img.save_with_format(
            root.join("images/train2014").join(&name),
            image::ImageFormat::Png,
        )
        .unwrap();
        let crowd_only = i == n - 1;
        for r in &rects {
            let bbox = [
                r[0] as f64 + 0.5,
                r[1] as f64,
                (r[2] - r[0]) as f64,
                (r[3] - r[1]) as f64 - 0.5,
            ];
            annotations.push(
                serde_json::json!({"image_id": id, "bbox": bbox, "iscrowd": crowd_only as u8}),
            );
        }
        images.push(serde_json::json!({"id": id, "file_name": name}));
        if i < n {
            list += &format!("train2014/{name}\n");
        }
    }
    let json = serde_json::json!({"images": images, "annotations": annotations, "categories": []});
    std::fs::write(
        root.join("annotations/instances_train2014.json"),
        json.to_string(),
    )
    .unwrap();
    std::fs::write(root.join("coco_20k_filenames.txt"), list).unwrap();
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `--protocol author` against a Python statement of the first author's
/// evaluation code (tests/python/author_localize.py) on the same fixtures and
/// the same seeded random ResNet50 (layer2, K = 5):
/// 1. on the same label maps, the same component, box, ground-truth box and
///    hit for every image (60 VOC images, 8 COCO images with LOST's list and
///    a crowd-only image);
/// 2. the dilated ResNet50 gives torchvision's layer2 and layer4;
/// 3. end to end, the mean CorLoc over four k-means seeds is within 3 points.
#[test]
fn author_protocol_agrees_with_a_python_statement_of_the_authors_code() {
    use nave_lab::localize::{author, Selection};
    let root = scratch("author_protocol");
    let (voc, coco) = (root.join("voc"), root.join("coco"));
    write_shapes_voc(&voc, 60, 7);
    write_shapes_coco(&coco, 8, 11);
    let weights = root.join("resnet50.safetensors");
    let arg = |p: &Path| p.to_str().unwrap().to_string();
    common::run_reference("author_localize.py", &["--make-weights", &arg(&weights)]);
    let seeds = ["0", "1", "2", "3"];
    let python = |dataset: &str, data: &Path, seeds: &[&str], extra: &[String]| {
        let out = root.join(format!("python-{dataset}.json"));
        let maps = root.join(format!("maps-{dataset}.json"));
        let mut args: Vec<String> = [
            "--dataset",
            dataset,
            "--root",
            &arg(data),
            "--weights",
            &arg(&weights),
            "--layers",
            "2",
            "-k",
            "5",
            "--out",
            &arg(&out),
            "--maps",
            &arg(&maps),
            "--seeds",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(seeds.iter().map(|s| s.to_string()));
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run_reference("author_localize.py", &args);
        (read_json(&out), read_json(&maps))
    };
    let features = root.join("features.safetensors");
    let (voc_results, voc_maps) = python(
        "voc07",
        &voc,
        &seeds,
        &["--features".into(), arg(&features)],
    );
    let (coco_results, coco_maps) = python("coco20k", &coco, &seeds[..1], &[]);

    // 1. Selection and scoring, image by image, on the authors' label maps.
    let mut compared = 0;
    for (dataset, data, results, maps) in [
        (LocalizeDataset::Voc07, &voc, &voc_results, &voc_maps),
        (LocalizeDataset::Coco20k, &coco, &coco_results, &coco_maps),
    ] {
        let items = load(dataset, data, false).unwrap().items;
        let maps = maps.as_array().unwrap();
        let expected = results["0"]["images"].as_array().unwrap();
        assert_eq!(items.len(), maps.len(), "{dataset:?}: the same images");
        for ((item, map), want) in items.iter().zip(maps).zip(expected) {
            let gt: Vec<author::IntBox> = serde_json::from_value(map["gt"].clone()).unwrap();
            assert_eq!(
                author::integer_boxes(&item.boxes),
                gt,
                "{}: the same ground truth",
                item.id
            );
            let labels: Vec<i64> = serde_json::from_value(map["labels"].clone()).unwrap();
            let (h, w) = (
                map["h"].as_u64().unwrap() as usize,
                map["w"].as_u64().unwrap() as usize,
            );
            let got = Selection::author(&labels, h, w, &item.boxes);
            let got_box = got.r#box.map(|b| b.map(|v| v as i64));
            let want_box: Option<[i64; 4]> = serde_json::from_value(want["box"].clone()).unwrap();
            assert_eq!(
                got_box, want_box,
                "{}: the selected component's box",
                item.id
            );
            assert_eq!(
                got.gt,
                want["gt"].as_u64().map(|g| g as usize),
                "{}",
                item.id
            );
            assert_eq!(
                got.found,
                want["found"].as_bool().unwrap(),
                "{}: the hit",
                item.id
            );
            if let Some(iou) = want["inner_iou"].as_f64() {
                assert_eq!(got.inner_iou.unwrap() as f32, iou as f32, "{}", item.id);
                assert_eq!(
                    got.iou as f32,
                    want["iou"].as_f64().unwrap() as f32,
                    "{}",
                    item.id
                );
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 68);
    let crowd_only = &coco_results["0"]["images"][7];
    assert!(crowd_only["box"].is_null() && crowd_only["found"] == false);

    // 2. The dilated ResNet50 is torchvision's.
    let mut model = nave_lab::models::from_weights(
        nave_lab::models::Arch::Resnet50,
        &weights,
        224,
        tch::Device::Cpu,
    )
    .unwrap();
    assert!(model.dilate_last_stage());
    let img =
        nave_lab::data::image_file::open_rgb(&voc.join("VOCdevkit/VOC2007/JPEGImages/000001.jpg"))
            .unwrap();
    let x = nave_lab::localize::prepare(&img, 16);
    let ours = tch::no_grad(|| {
        model
            .forward_taps(&x, &["layer2".into(), "layer4".into()])
            .unwrap()
    });
    let theirs = tch::Tensor::read_safetensors(&features).unwrap();
    for (name, t) in theirs {
        let mine = &ours[if name == "layer2" { 0 } else { 1 }];
        assert_eq!(mine.size(), t.size(), "{name}");
        let err = (mine - &t).abs().max().double_value(&[]);
        let scale = t.abs().max().double_value(&[]);
        assert!(
            err <= 1e-4 * scale.max(1.0),
            "{name}: max difference {err} (scale {scale})"
        );
    }

    // 3. CorLoc over four seeds, end to end.
    let mut ours = Vec::new();
    for seed in seeds {
        let out = root.join(format!("rust-{seed}"));
        let o = nave_lab()
            .args(["-q", "localize", "--dataset", "voc07", "--root", &arg(&voc)])
            .args([
                "--arch",
                "resnet50",
                "--weights",
                &arg(&weights),
                "--taps",
                "layer2",
            ])
            .args([
                "-k",
                "5",
                "--seed",
                seed,
                "--examples",
                "0",
                "--out",
                &arg(&out),
            ])
            .output()
            .unwrap();
        common::assert_ok(&o);
        let summary = read_json(&out.join("summary.json"));
        assert_eq!(summary["protocol"], "author");
        assert_eq!(
            summary["pad_multiple"], 16,
            "the dilated ResNet50 pads to 16"
        );
        ours.push(summary["scores"][0]["percent"].as_f64().unwrap());
    }
    let theirs: Vec<f64> = seeds
        .iter()
        .map(|s| voc_results[*s]["corloc"].as_f64().unwrap())
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    eprintln!("CorLoc per seed: nave-lab {ours:?}, the authors' code {theirs:?}");
    assert!(
        (mean(&ours) - mean(&theirs)).abs() <= 3.0,
        "mean CorLoc {:.1} here against {:.1} by the authors' code",
        mean(&ours),
        mean(&theirs)
    );
}
