//! Object-localisation evaluation (paper section 4.2, Tables 1-7): how well
//! NAVE's segments isolate objects. Each NAVE cluster map is upsampled to the
//! image, split into 4-connected components (small ones dropped), each
//! component gives an inner and an outer box, a component is selected against
//! the ground-truth boxes, and the image counts as found when its box overlaps
//! the ground truth by more than half (LOST's CorLoc). Two protocols:
//!
//! * `author` (the default): as the first author's evaluation code computes
//!   it (see [`author`]): components on the padded map with a 14-pixel frame,
//!   the inner box selects, the outer box scores, IoU strictly above 0.5, and
//!   a ResNet50's layer4 dilated (stride 16, images padded to 16).
//! * `paper`: the paper's appendix read literally: components on the image,
//!   each strategy (inner or outer box) scored on its own IoU, at least 0.5;
//!   ResNets undilated and padded to 32.
//!
//! SLIC superpixels go through the same selection as the reference row.
pub mod author;
pub mod boxes;
pub mod dataset;
pub mod slic;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use image::RgbImage;
use serde::Serialize;
use tch::{Device, Tensor};

use crate::config::ClusterMethod;
use crate::models::{Arch, Model};
use crate::nave::{self, colour, extract};
use boxes::{components, inner_box, iou, outer_box, BBox};
use dataset::Item;

/// The box a paper-protocol column scores (`--strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Strategy {
    Inner,
    Outer,
}

/// What one CorLoc column measures: the authors' selection (on the padded
/// map, the inner box selects and the outer box scores), or one of the
/// paper's strategies on the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Column {
    Author,
    Paper(Strategy),
}

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::Author => "author",
            Column::Paper(Strategy::Inner) => "inner",
            Column::Paper(Strategy::Outer) => "outer",
        }
    }
}

impl Serialize for Column {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// As the first author's evaluation code computes it.
    Author,
    /// The paper's appendix read literally.
    Paper,
}

/// What a user chooses; [`Settings::for_protocol`] fills in the rest from
/// the protocol.
pub struct Choices {
    pub protocol: Protocol,
    /// Default: the architecture's taps.
    pub taps: Option<Vec<String>>,
    pub ks: Vec<usize>,
    pub method: ClusterMethod,
    /// Default: 10 for the author protocol, 1 for the paper's.
    pub n_init: Option<usize>,
    /// Paper protocol only (default inner and outer).
    pub strategies: Option<Vec<Strategy>>,
    /// Paper protocol only (default 784 pixels).
    pub min_size: Option<usize>,
    pub slic: bool,
    pub seed: u64,
    pub examples: usize,
}

pub struct Settings {
    pub protocol: Protocol,
    pub taps: Vec<String>,
    pub ks: Vec<usize>,
    pub method: ClusterMethod,
    /// k-means runs per map, the lowest inertia kept (scikit-learn's n_init).
    pub n_init: usize,
    /// The CorLoc columns: the author protocol has one, its own.
    pub columns: Vec<Column>,
    /// Paper protocol: components smaller than this many pixels are dropped.
    pub min_size: usize,
    /// Images are zero-padded (right, bottom) to a multiple of this.
    pub pad_multiple: i64,
    /// Whether the model's last stage was dilated (the author protocol's ResNet50).
    pub dilated: bool,
    pub slic: bool,
    pub seed: u64,
    /// Images drawn with their chosen boxes.
    pub examples: usize,
}

impl Settings {
    /// The protocol's settings for `model`. The authors' code dilates a
    /// ResNet50's last stage and pads every image to 16; the paper's reading
    /// keeps torchvision's ResNet (stride 32). `model` is dilated here when
    /// the protocol asks for it.
    pub fn for_protocol(c: Choices, model: &mut Model, arch: Arch) -> anyhow::Result<Self> {
        let (columns, min_size) = match c.protocol {
            Protocol::Author => {
                anyhow::ensure!(
                    c.strategies.is_none() && c.min_size.is_none(),
                    "--strategy and --min-size belong to --protocol paper; the author protocol selects with the inner box, scores the outer box and keeps components of more than {} pixels",
                    author::MIN_PIXELS
                );
                (vec![Column::Author], author::MIN_PIXELS)
            }
            Protocol::Paper => (
                c.strategies
                    .unwrap_or_else(|| vec![Strategy::Inner, Strategy::Outer])
                    .into_iter()
                    .map(Column::Paper)
                    .collect(),
                c.min_size.unwrap_or(author::MIN_PIXELS),
            ),
        };
        anyhow::ensure!(
            !c.ks.is_empty() && c.ks.iter().all(|&k| k >= 1),
            "-k needs positive numbers of clusters"
        );
        let taps = c.taps.unwrap_or_else(|| arch.default_taps());
        for t in &taps {
            model.tap_index(t)?;
        }
        let dilated = c.protocol == Protocol::Author && model.dilate_last_stage();
        let pad_multiple = match arch {
            Arch::VitS16 | Arch::VitS14 | Arch::VitB16 | Arch::VitB14 => {
                arch.patch_size().expect("a ViT")
            }
            // The deepest stage's stride: 16 dilated, 32 as torchvision builds it.
            Arch::Resnet18 | Arch::Resnet50 if dilated => 16,
            Arch::Resnet18 | Arch::Resnet50 => 32,
        };
        Ok(Self {
            protocol: c.protocol,
            taps,
            ks: c.ks,
            method: c.method,
            // The authors ran scikit-learn's KMeans with its defaults of the
            // time: the best of 10 k-means++ starts.
            n_init: c.n_init.unwrap_or(match c.protocol {
                Protocol::Author => 10,
                Protocol::Paper => 1,
            }),
            columns,
            min_size,
            pad_multiple,
            dilated,
            slic: c.slic,
            seed: c.seed,
            examples: c.examples,
        })
    }
}

/// One selection: the best component of one segmentation for one strategy.
#[derive(Debug, Clone, Serialize)]
pub struct Selection {
    pub iou: f64,
    pub found: bool,
    pub r#box: Option<BBox>,
    /// Author protocol: the selected ground-truth box and the IoU of the
    /// component's inner box with it, which made the choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gt: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner_iou: Option<f64>,
}

impl Selection {
    fn miss() -> Self {
        Self {
            iou: 0.0,
            found: false,
            r#box: None,
            gt: None,
            inner_iou: None,
        }
    }

    /// The authors' selection on a label map of the padded image (`h x w`).
    pub fn author(labels: &[i64], h: usize, w: usize, gt: &[BBox]) -> Self {
        match author::select(labels, h, w, gt) {
            None => Self::miss(),
            Some(c) => Self {
                iou: c.iou as f64,
                found: c.found,
                r#box: Some(c.outer.map(|v| v as f64)),
                gt: Some(c.gt),
                inner_iou: Some(c.inner_iou as f64),
            },
        }
    }
}

/// Best component box of a label map (`h x w`, image resolution) against the
/// ground truth, as the paper's appendix reads.
pub fn select(
    labels: &[i64],
    h: usize,
    w: usize,
    gt: &[BBox],
    strategy: Strategy,
    min_size: usize,
) -> Selection {
    let mut best = Selection::miss();
    for c in components(labels, h, w, min_size) {
        let b = match strategy {
            Strategy::Inner => inner_box(&c, h, w),
            Strategy::Outer => outer_box(&c),
        };
        let score = gt.iter().map(|g| iou(&b, g)).fold(0.0, f64::max);
        if best.r#box.is_none() || score > best.iou {
            best = Selection {
                iou: score,
                found: score >= 0.5,
                r#box: Some(b),
                gt: None,
                inner_iou: None,
            };
        }
    }
    best
}

/// AP@50 (CorLoc) in percent: the share of `images` whose selection is
/// `found`. The one place it is computed.
pub fn corloc(found: usize, images: usize) -> f64 {
    100.0 * found as f64 / images.max(1) as f64
}

/// The image as NAVE sees it here: ImageNet-normalised, no resize, zero-padded
/// on the right and bottom to a multiple of `multiple`. Returns `[1, 3, Hp, Wp]`.
pub fn prepare(img: &RgbImage, multiple: i64) -> Tensor {
    let (w, h) = (img.width() as i64, img.height() as i64);
    // [1, 3, H, W]
    let x = crate::data::loader::normalize_u8(
        &Tensor::from_slice(img.as_raw())
            .view([1, h, w, 3])
            .permute([0, 3, 1, 2]),
    );
    let (hp, wp) = (
        (h + multiple - 1) / multiple * multiple,
        (w + multiple - 1) / multiple * multiple,
    );
    x.constant_pad_nd([0, wp - w, 0, hp - h])
}

/// A label map: `h x w` labels in row-major order.
pub struct LabelMap {
    pub h: usize,
    pub w: usize,
    pub labels: Vec<i64>,
}

impl LabelMap {
    /// The top-left `h x w` part (the image inside its padding).
    pub fn crop(&self, h: usize, w: usize) -> LabelMap {
        let labels = (0..h)
            .flat_map(|y| self.labels[y * self.w..y * self.w + w].iter().copied())
            .collect();
        LabelMap { h, w, labels }
    }
}

/// Nearest-neighbour resize of a `gh x gw` grid to `h x w` (see
/// [`colour::upsample_nearest`]).
pub fn upsample_nearest(grid: &[i64], gh: usize, gw: usize, h: usize, w: usize) -> LabelMap {
    let labels = colour::upsample_nearest(grid, gh, gw, h, w);
    LabelMap { h, w, labels }
}

/// NAVE label maps of one image for every K, on the padded image (the
/// feature grid's labels upsampled with nearest neighbour).
fn nave_maps(
    model: &Model,
    img: &RgbImage,
    s: &Settings,
    device: Device,
) -> anyhow::Result<Vec<LabelMap>> {
    let x = prepare(img, s.pad_multiple).to_device(device);
    let (hp, wp) = (x.size()[2] as usize, x.size()[3] as usize);
    let feats = extract::features(model, &x, &s.taps, None, 1)?; // [1, D, h, w]
    let (gh, gw) = (feats.size()[2] as usize, feats.size()[3] as usize);
    let rows = extract::to_rows(&feats);
    s.ks.iter()
        .map(|&k| {
            let k = k.min(gh * gw);
            let labels = if s.method == ClusterMethod::Kmeans && s.n_init > 1 {
                nave::kmeans::kmeans_best_of(&rows, k, s.seed, s.n_init, 1e-4, 300).labels
            } else {
                nave::cluster(&rows, s.method, k, s.seed, 1e-4, 300)?
            };
            let grid: Vec<i64> = Vec::try_from(labels.to_device(Device::Cpu))?;
            Ok(upsample_nearest(&grid, gh, gw, hp, wp))
        })
        .collect()
}

#[derive(Serialize)]
struct Line<'a> {
    image: &'a str,
    source: &'a str,
    k: usize,
    strategy: Column,
    iou: f64,
    found: bool,
    r#box: Option<BBox>,
    gt: &'a [BBox],
    #[serde(skip_serializing_if = "Option::is_none")]
    selected_gt: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inner_iou: Option<f64>,
}

pub struct Summary {
    /// (source, K, column) -> (found, evaluated)
    pub scores: BTreeMap<(String, usize, Column), (usize, usize)>,
    pub images: usize,
    pub skipped: Vec<String>,
    pub seconds_per_image: f64,
}

impl Summary {
    /// CorLoc of one source, K and column; NaN when not evaluated.
    pub fn percent(&self, key: &(String, usize, Column)) -> f64 {
        self.scores
            .get(key)
            .map(|&(f, n)| corloc(f, n))
            .unwrap_or(f64::NAN)
    }
}

impl Summary {
    /// The CorLoc table as the CLI prints it: a row per source and K, a
    /// column per [`Column`].
    pub fn table(&self, s: &Settings) -> String {
        let mut out = format!("{:<14} {:>4}  ", "segments", "K");
        for c in &s.columns {
            out += &format!("{:>7}", c.name());
        }
        let sources: std::collections::BTreeSet<&String> =
            self.scores.keys().map(|k| &k.0).collect();
        for src in sources {
            for &k in &s.ks {
                out += &format!("\n{src:<14} {k:>4}  ");
                for &c in &s.columns {
                    out += &format!("{:>7.1}", self.percent(&(src.clone(), k, c)));
                }
            }
        }
        out
    }
}

fn draw_example(
    img: &RgbImage,
    gt: &[BBox],
    chosen: &[(Column, Option<BBox>)],
    path: &Path,
) -> anyhow::Result<()> {
    let mut canvas = img.clone();
    let rect = |c: &mut RgbImage, b: &BBox, colour: [u8; 3]| {
        let (x, y) = (b[0].round() as i32, b[1].round() as i32);
        let (w, h) = (
            ((b[2] - b[0]).round() as u32).max(1),
            ((b[3] - b[1]).round() as u32).max(1),
        );
        colour::outline(c, (x, y), (w, h), colour);
    };
    for g in gt {
        rect(&mut canvas, g, [40, 220, 40]);
    }
    for (strategy, b) in chosen {
        if let Some(b) = b {
            rect(
                &mut canvas,
                b,
                if *strategy == Column::Paper(Strategy::Inner) {
                    [40, 90, 255]
                } else {
                    [230, 30, 30]
                },
            );
        }
    }
    crate::io::write_png(&canvas, path)
}

/// Evaluates `items`; writes `per_image.jsonl`, `summary.json` and examples into `out`.
pub fn evaluate(
    model: &Model,
    items: &[Item],
    skipped: Vec<String>,
    s: &Settings,
    out: &Path,
    device: Device,
) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(out.join("examples"))
        .with_context(|| format!("creating {}", out.display()))?;
    let lines_path = out.join("per_image.jsonl");
    // Written whole at the end, through io's temp-and-rename (with fsync).
    let mut lines: Vec<u8> = Vec::new();
    let mut scores: BTreeMap<(String, usize, Column), (usize, usize)> = BTreeMap::new();
    let source = format!("nave-{}", format!("{:?}", s.method).to_lowercase());
    let bar = crate::ui::progress_bar(items.len() as u64, "localizing");
    let started = Instant::now();
    let mut unreadable = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let img = match crate::data::image_file::open_rgb(&item.image) {
            Ok(i) => i,
            Err(e) => {
                crate::warn!("cannot read {}: {e:#}; skipped", item.image.display());
                unreadable.push(item.id.clone());
                bar.inc(1);
                continue;
            }
        };
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut maps: Vec<(String, usize, LabelMap)> = nave_maps(model, &img, s, device)?
            .into_iter()
            .zip(&s.ks)
            .map(|(m, &k)| (source.clone(), k, m))
            .collect();
        if s.slic {
            for &k in &s.ks {
                let labels = slic::slic(&img, k, 10.0, 10);
                maps.push(("slic".to_string(), k, LabelMap { h, w, labels }));
            }
        }
        let mut chosen_first = Vec::new();
        for (src, k, map) in &maps {
            for &strategy in &s.columns {
                // The authors' code works on the padded map; the paper's
                // reading on the image.
                let sel = match strategy {
                    Column::Author => Selection::author(&map.labels, map.h, map.w, &item.boxes),
                    Column::Paper(box_kind) => {
                        let image_part = map.crop(h, w);
                        select(&image_part.labels, h, w, &item.boxes, box_kind, s.min_size)
                    }
                };
                let e = scores.entry((src.clone(), *k, strategy)).or_default();
                e.0 += sel.found as usize;
                e.1 += 1;
                serde_json::to_writer(
                    &mut lines,
                    &Line {
                        image: &item.id,
                        source: src,
                        k: *k,
                        strategy,
                        iou: sel.iou,
                        found: sel.found,
                        r#box: sel.r#box,
                        gt: &item.boxes,
                        selected_gt: sel.gt,
                        inner_iou: sel.inner_iou,
                    },
                )?;
                lines.write_all(b"\n")?;
                if src == &source && *k == s.ks[0] {
                    chosen_first.push((strategy, sel.r#box));
                }
            }
        }
        if n < s.examples {
            let labels_first = maps[0].2.crop(h, w);
            let overlay = colour::overlay(&img, &labels_first.labels);
            draw_example(
                &overlay,
                &item.boxes,
                &chosen_first,
                &out.join("examples")
                    .join(format!("{}.png", item.id.replace(['/', '.'], "_"))),
            )?;
        }
        bar.inc(1);
        let key = (source.clone(), s.ks[0], s.columns[0]);
        if let Some(&(f, t)) = scores.get(&key) {
            bar.set_prefix(format!(
                "{source} K={} {}: {:.1}%",
                s.ks[0],
                s.columns[0].name(),
                corloc(f, t)
            ));
        }
    }
    bar.finish_and_clear();
    crate::io::write_atomic(&lines_path, &lines)?;
    let evaluated = items.len() - unreadable.len();
    let summary = Summary {
        scores,
        images: evaluated,
        skipped: skipped.into_iter().chain(unreadable).collect(),
        seconds_per_image: started.elapsed().as_secs_f64() / evaluated.max(1) as f64,
    };
    let json = serde_json::json!({
        "images": summary.images,
        "skipped": summary.skipped,
        "seconds_per_image": summary.seconds_per_image,
        "protocol": s.protocol, "n_init": s.n_init, "taps": s.taps, "method": format!("{:?}", s.method).to_lowercase(), "min_size": s.min_size, "pad_multiple": s.pad_multiple,
        "scores": summary.scores.iter().map(|((src, k, st), (f, n))| serde_json::json!({"source": src, "k": k, "strategy": st, "found": f, "images": n, "percent": corloc(*f, *n)})).collect::<Vec<_>>(),
    });
    crate::io::write_json(&out.join("summary.json"), &json)?;
    Ok(summary)
}

/// Where `localize` writes by default.
pub fn default_out(dataset: dataset::LocalizeDataset) -> PathBuf {
    PathBuf::from("reports").join(format!("localize-{}", dataset.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{IMAGENET_MEAN, IMAGENET_STD};

    #[test]
    fn exact_segment_scores_one_and_a_miss_scores_zero() {
        // A 40x40 image whose segment 1 is exactly the box [10, 10, 30, 30) in pixels.
        let (h, w) = (40, 40);
        let labels: Vec<i64> = (0..h * w)
            .map(|i| {
                if (10..30).contains(&(i % w)) && (10..30).contains(&(i / w)) {
                    1
                } else {
                    0
                }
            })
            .collect();
        // Outer box of that component is [10, 10, 29, 29] (Algorithm 2 returns pixel indices).
        let gt = [[10.0, 10.0, 29.0, 29.0]];
        let sel = select(&labels, h, w, &gt, Strategy::Outer, 10);
        assert!((sel.iou - 1.0).abs() < 1e-6 && sel.found);
        // Inner box of a square is the same square (median at the centre).
        let sel = select(&labels, h, w, &gt, Strategy::Inner, 10);
        assert!(sel.found, "{sel:?}");
        let far = [[0.0, 0.0, 3.0, 3.0]];
        let miss = select(&labels, h, w, &far, Strategy::Outer, 500);
        assert!(!miss.found && miss.iou < 0.5);
        let found = |sels: &[&Selection]| sels.iter().filter(|s| s.found).count();
        assert_eq!(corloc(found(&[&sel, &sel]), 2), 100.0);
        assert_eq!(corloc(found(&[&miss, &miss]), 2), 0.0);
        assert_eq!(corloc(found(&[&sel, &miss]), 2), 50.0);
        assert_eq!(corloc(0, 0), 0.0);
    }

    #[test]
    fn padding_is_zero_on_the_right_and_bottom() {
        let img = RgbImage::from_pixel(20, 10, image::Rgb([255, 255, 255]));
        let x = prepare(&img, 16);
        assert_eq!(x.size(), vec![1, 3, 16, 32]);
        assert_eq!(x.double_value(&[0, 0, 15, 31]), 0.0);
        assert!(
            (x.double_value(&[0, 0, 9, 19]) - (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]).abs()
                < 1e-5
        );
        assert_eq!(x.double_value(&[0, 1, 10, 0]), 0.0);
    }
}
