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
