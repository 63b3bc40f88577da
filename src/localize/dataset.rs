//! The object-localisation datasets, read as LOST's evaluation reads them.
//!
//! * VOC07 / VOC12 trainval: `root/VOCdevkit/VOC2007|VOC2012/{JPEGImages,
//!   Annotations, ImageSets/Main/trainval.txt}`. Every object is kept
//!   (difficult and truncated too) unless `no_hard`. Boxes are converted from
//!   VOC's 1-based inclusive pixels to continuous coordinates (x1 - 1, y1 - 1).
//! * COCO20k: `root/annotations/instances_train2014.json`, the images under
//!   `root/images/train2014/` (or `root/train2014/`), and the 19,817-name list
//!   `root/coco_20k_filenames.txt` as LOST ships it (`train2014/COCO_...jpg`;
//!   bare names are read too). Crowd boxes are dropped; `[x, y, w, h]`
//!   becomes `[x, y, x + w, y + h]`, rounded as LOST does (Python's round:
//!   halves to even). An image whose boxes are all crowd boxes stays, with no
//!   box to find: LOST counts it as a miss.
//!
//! A VOC image left without objects (all dropped) is skipped and counted.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use super::boxes::BBox;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LocalizeDataset {
    #[value(name = "voc07")]
    Voc07,
    #[value(name = "voc12")]
    Voc12,
    #[value(name = "coco20k")]
    Coco20k,
}

impl LocalizeDataset {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Voc07 => "voc07",
            Self::Voc12 => "voc12",
            Self::Coco20k => "coco20k",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub image: PathBuf,
    pub boxes: Vec<BBox>,
}

#[derive(Debug)]
pub struct Loaded {
    pub items: Vec<Item>,
    /// Images skipped because no object was left.
    pub without_objects: Vec<String>,
}

pub fn load(dataset: LocalizeDataset, root: &Path, no_hard: bool) -> anyhow::Result<Loaded> {
    match dataset {
        LocalizeDataset::Voc07 => load_voc(root, "VOC2007", no_hard),
        LocalizeDataset::Voc12 => load_voc(root, "VOC2012", no_hard),
        LocalizeDataset::Coco20k => load_coco20k(root),
    }
}

fn require_dir(path: &Path, what: &str) -> anyhow::Result<()> {
    if !path.is_dir() {
        bail!("{} does not exist: {what}", path.display());
    }
    Ok(())
}

/// Parses one VOC annotation file into continuous boxes.
pub fn parse_voc_xml(path: &Path, no_hard: bool) -> anyhow::Result<Vec<BBox>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc = roxmltree::Document::parse(&text)
        .with_context(|| format!("{}: malformed XML", path.display()))?;
    let mut boxes = Vec::new();
    for obj in doc.descendants().filter(|n| n.has_tag_name("object")) {
        let child_text = |node: roxmltree::Node, name: &str| {
            node.children()
                .find(|c| c.has_tag_name(name))
                .and_then(|c| c.text())
                .map(str::trim)
                .map(String::from)
        };
        let flag = |name: &str| child_text(obj, name).as_deref() == Some("1");
        if no_hard && (flag("difficult") || flag("truncated")) {
            continue;
        }
        let bnd = obj
            .children()
            .find(|c| c.has_tag_name("bndbox"))
            .with_context(|| format!("{}: an <object> has no <bndbox>", path.display()))?;
        let coord = |name: &str| -> anyhow::Result<f64> {
            let t = child_text(bnd, name)
                .with_context(|| format!("{}: <bndbox> lacks <{name}>", path.display()))?;
            // LOST reads them with int(); some files carry "273.0".
            let v: f64 = t.parse().with_context(|| {
                format!("{}: <{name}>{t}</{name}> is not a number", path.display())
            })?;
            Ok(v.trunc())
        };
        boxes.push([
            coord("xmin")? - 1.0,
            coord("ymin")? - 1.0,
            coord("xmax")?,
            coord("ymax")?,
        ]);
    }
    Ok(boxes)
}

fn load_voc(root: &Path, year: &str, no_hard: bool) -> anyhow::Result<Loaded> {
    let base = root.join("VOCdevkit").join(year);
    require_dir(
        &base,
        &format!("--root must be the folder that contains VOCdevkit/{year}/"),
    )?;
    for sub in ["JPEGImages", "Annotations"] {
        require_dir(&base.join(sub), &format!("VOCdevkit/{year} needs {sub}/"))?;
    }
    let list = base.join("ImageSets/Main/trainval.txt");
    let ids = std::fs::read_to_string(&list)
        .with_context(|| format!("reading {} (the trainval image list)", list.display()))?;
    let mut items = Vec::new();
    let mut without_objects = Vec::new();
    for id in ids.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let boxes = parse_voc_xml(&base.join("Annotations").join(format!("{id}.xml")), no_hard)?;
        if boxes.is_empty() {
            without_objects.push(id.to_string());
            continue;
        }
        items.push(Item {
            id: id.to_string(),
            image: base.join("JPEGImages").join(format!("{id}.jpg")),
            boxes,
        });
    }
    Ok(Loaded {
        items,
        without_objects,
    })
}

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    image_id: u64,
    bbox: [f64; 4],
    #[serde(default)]
    iscrowd: u8,
}

fn load_coco20k(root: &Path) -> anyhow::Result<Loaded> {
    require_dir(
        root,
        "--root must be the COCO folder holding annotations/instances_train2014.json",
    )?;
    let ann_path = root.join("annotations/instances_train2014.json");
    let list_path = root.join("coco_20k_filenames.txt");
    let list = std::fs::read_to_string(&list_path).with_context(|| {
        format!(
            "reading {} (LOST's list of the 19,817 COCO20k images)",
            list_path.display()
        )
    })?;
    let wanted: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let file = std::fs::File::open(&ann_path)
        .with_context(|| format!("reading {}", ann_path.display()))?;
    let coco: CocoFile = serde_json::from_reader(std::io::BufReader::new(file))
        .with_context(|| format!("{}: not a COCO instances file", ann_path.display()))?;
    let images_dir = [root.join("images/train2014"), root.join("train2014")]
        .into_iter()
        .find(|p| p.is_dir())
        .with_context(|| {
            format!(
                "{}: neither images/train2014/ nor train2014/ exists",
                root.display()
            )
        })?;
    let by_name: HashMap<&str, u64> = coco
        .images
        .iter()
        .map(|i| (i.file_name.as_str(), i.id))
        .collect();
    let mut boxes: HashMap<u64, Vec<BBox>> = HashMap::new();
    for a in &coco.annotations {
        // A crowd-only image keeps an entry with no box (a miss, as in LOST).
        let image_boxes = boxes.entry(a.image_id).or_default();
        if a.iscrowd == 1 {
            continue;
        }
        let [x, y, w, h] = a.bbox;
        image_boxes.push([
            x.round_ties_even(),
            y.round_ties_even(),
            (x + w).round_ties_even(),
            (y + h).round_ties_even(),
        ]);
    }
    let mut items = Vec::new();
    let mut without_objects = Vec::new();
    let mut seen = HashSet::new();
    for line in wanted {
        // LOST's list names `train2014/COCO_train2014_...jpg`; the
        // annotations name the file alone.
        let name = line.rsplit('/').next().unwrap_or(&line).to_string();
        if !seen.insert(name.clone()) {
            continue;
        }
        let id = by_name.get(name.as_str()).with_context(|| {
            format!(
                "{}: {line} is not in {}",
                list_path.display(),
                ann_path.display()
            )
        })?;
        match boxes.remove(id) {
            Some(b) => items.push(Item {
                id: name.clone(),
                image: images_dir.join(&name),
                boxes: b,
            }),
            None => without_objects.push(name),
        }
    }
    Ok(Loaded {
        items,
        without_objects,
    })
}
