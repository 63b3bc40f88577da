//! Blind shortcut detection: does this model rely on a shortcut, and where?
//! Asked from the model and its own training images (artefacts included, as
//! an auditor has them), never from the run's settings or a recorded box.
//!
//! The NAVE-guided detector clusters the model's features over a sample of
//! training images of every class (set scope, so a cluster is one concept in
//! every image), then asks of every small, recurring cluster the question a
//! shortcut answers yes to: pasted onto images of the other classes, does
//! that segment move the model towards its own class, more than the ring of
//! image around it does? That lift over the control, weighted by how much the
//! segments look like one reproduced object (a sharp peak of grey levels that
//! the rest of the images lack), is the candidate's score; the best
//! candidate's segment on each probe is the suspect region.
//!
//! The occlusion baseline asks the same question of the square whose
//! occlusion moves each image's prediction most (a sliding square, no NAVE),
//! scored by the same transplant test, so the figures say what NAVE adds.
//!
//! The transplant test alone does not separate the zoo's runs that rely on
//! an artefact from clean ones: the synthetic pneumonia opacities are
//! compact, class-specific regions too, and a clean model's prediction moves
//! as much when one is pasted. The stereotypy weight (reproduced pixels, see
//! `recurrence`) is what tells them apart. `verdict` turns the score into the
//! audit's flag; `nave-lab bench detect` measures both detectors on a zoo.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::loader::normalize_u8;
use crate::data::watermark::WmBox;
use crate::models::Model;
use crate::nave::{colour, extract, kmeans};

use super::recurrence::{grey_levels, Recurrence};

/// The detector's settings: fixed, not read from the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectorSpec {
    /// Training images sampled per class.
    pub per_class: usize,
    /// Clusters of the set-scope clustering.
    pub k: usize,
    /// A candidate segment covers at most this share of an image.
    pub max_area: f64,
    /// ... and is present in at least this share of its class's images.
    pub min_presence: f64,
    /// Source/target pairs per transplant test.
    pub pairs: usize,
}

impl Default for DetectorSpec {
    fn default() -> Self {
        Self {
            per_class: 32,
            k: 10,
            max_area: 0.12,
            min_presence: 0.25,
            pairs: 32,
        }
    }
}

/// What a detector found for one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detection {
    /// For the best candidate: its transplant lift minus the control (how
    /// much the region, pasted onto other classes' images, pushes the model
    /// towards its class, in probability) times its stereotypy (how much it
    /// looks like one reproduced object rather than tissue).
    pub score: f64,
    /// The class the suspect region pushes towards.
    pub class: Option<String>,
    /// The suspect NAVE cluster (None for the occlusion baseline).
    pub cluster: Option<usize>,
    /// Mean probability gain of the pasted region, and of the control.
    pub lift: f64,
    pub control: f64,
    /// The suspect region's stereotypy (see `stereotypy`).
    #[serde(default)]
    pub stereotypy: f64,
    /// The suspect region's box on each probe (its stamped twin); None where
    /// the region does not appear.
    pub suspect_boxes: Vec<Option<WmBox>>,
    /// Every candidate the transplant test scored.
    #[serde(default)]
    pub candidates: Vec<Candidate>,
}

/// One (class, cluster) candidate and its transplant test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    pub class: String,
    pub cluster: usize,
    /// Share of the class's sampled images where the cluster is a small segment.
    pub presence: f64,
    /// Mean distance of the cluster's rows to its centre over that of all rows.
    pub tightness: f64,
    /// See `stereotypy`: 0 for tissue, up to 1 for a reproduced object.
    pub stereotypy: f64,
    pub lift: f64,
    pub control: f64,
}

/// What a detector may look at: the model, the training images as it saw them
/// (uint8 `[N, 3, S, S]`, artefacts included) with their labels, and the
/// probes to draw the suspect region on. Nothing about how the run was made.
pub struct Evidence<'a> {
    pub model: &'a Model,
    pub train: &'a Tensor,
    pub labels: &'a [i64],
    pub class_names: &'a [String],
    pub probes: &'a Tensor,
    pub device: Device,
}

/// A class-balanced sample of the training images and each one's class.
fn sampled(e: &Evidence, per_class: usize) -> (Tensor, Vec<usize>) {
    let groups = sample(e.labels, e.class_names.len(), per_class);
    let order: Vec<usize> = groups.iter().flatten().copied().collect();
    let class_of = groups
        .iter()
        .enumerate()
        .flat_map(|(c, g)| std::iter::repeat_n(c, g.len()))
        .collect();
    (e.train.index_select(0, &index_tensor(&order)), class_of)
}

/// Softmax probabilities `[N, C]` (CPU, float) of uint8 images.
fn probabilities(model: &Model, images: &Tensor, device: Device) -> Tensor {
    let _guard = tch::no_grad_guard();
    let n = images.size()[0];
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let len = 128.min(n - start);
        let x = normalize_u8(&images.narrow(0, start, len).to_device(device));
        out.push(
            model
                .forward_t(&x, false)
                .to_kind(Kind::Float)
                .softmax(-1, Kind::Float)
                .to_device(Device::Cpu),
        );
        start += len;
    }
    Tensor::cat(&out, 0)
}

/// Up to `per_class` training images of each class, in a fixed random order.
fn sample(labels: &[i64], classes: usize, per_class: usize) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    (0..classes as i64)
        .map(|c| {
            let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
            idx.shuffle(&mut rng);
            idx.truncate(per_class);
            idx
        })
        .collect()
}

fn index_tensor(idx: &[usize]) -> Tensor {
    Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>())
}

/// A grid mask grown by one cell in every direction (a segment cut by cell
/// borders then covers all of the object it stands for).
fn dilate(mask: &[bool], h: usize, w: usize) -> Vec<bool> {
    let mut out = vec![false; h * w];
    for y in 0..h {
        for x in 0..w {
            if !mask[y * w + x] {
                continue;
            }
            for yy in y.saturating_sub(1)..(y + 2).min(h) {
                for xx in x.saturating_sub(1)..(x + 2).min(w) {
                    out[yy * w + xx] = true;
                }
            }
        }
    }
    out
}

/// The control region: the ring of cells around the region. Same
/// neighbourhood, same source image, but without the region itself: anatomy
/// around a candidate carries the same evidence for its class when the
/// candidate is anatomy, and none when the candidate is an object on top of it.
fn ring(mask: &[bool], h: usize, w: usize) -> Vec<bool> {
    dilate(mask, h, w)
        .into_iter()
        .zip(mask)
        .map(|(grown, &inside)| grown && !inside)
        .collect()
}

/// A grid mask as a `[1, S, S]` float pixel mask (nearest-neighbour, as NAVE upsamples).
fn pixel_mask(mask: &[bool], h: usize, w: usize, size: usize) -> Tensor {
    let cells: Vec<i64> = mask.iter().map(|&m| m as i64).collect();
    let up: Vec<f32> = colour::upsample_labels(&cells, h, w, size)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    Tensor::from_slice(&up).view([1, size as i64, size as i64])
}

/// One transplant: the pixels of `source` under `mask` pasted onto `target`.
fn paste(source: &Tensor, target: &Tensor, mask: &Tensor) -> Tensor {
    let blended: Tensor = source.to_kind(Kind::Float) * mask
        + target.to_kind(Kind::Float) * (mask.ones_like() - mask);
    blended.round().to_kind(Kind::Uint8)
}

/// The region per source image to transplant, as a grid mask.
type Regions = Vec<(usize, Vec<bool>)>;

/// The transplant test of one candidate: `regions` are (source image, grid
/// mask) pairs of images of `class`; `targets` images of the other classes.
/// Returns (lift, control): the mean gain of P(class) when the region is
/// pasted, and when the ring of cells around it is pasted instead.
#[allow(clippy::too_many_arguments)]
fn transplant(
    model: &Model,
    images: &Tensor,
    regions: &Regions,
    targets: &[usize],
    class: usize,
    grid: (usize, usize),
    pairs: usize,
    device: Device,
) -> (f64, f64) {
    let size = images.size()[2] as usize;
    let (h, w) = grid;
    let n = pairs.min(regions.len().max(targets.len()));
    let (mut pasted, mut controls, mut bases) = (Vec::new(), Vec::new(), Vec::new());
    for t in 0..n {
        let (src, mask) = &regions[t % regions.len()];
        let dst = targets[t % targets.len()];
        let (source, target) = (images.get(*src as i64), images.get(dst as i64));
        pasted.push(paste(&source, &target, &pixel_mask(mask, h, w, size)));
        controls.push(paste(
            &source,
            &target,
            &pixel_mask(&ring(mask, h, w), h, w, size),
        ));
        bases.push(dst);
    }
    let batch = Tensor::cat(
        &[
            Tensor::stack(&pasted, 0),
            Tensor::stack(&controls, 0),
            images.index_select(0, &index_tensor(&bases)),
        ],
        0,
    );
    let p = probabilities(model, &batch, device).select(1, class as i64); // [3n]
    let p: Vec<f32> = Vec::try_from(p).expect("float probabilities");
    let (with, rest) = p.split_at(n);
    let (control, base) = rest.split_at(n);
    let mean_gain =
        |v: &[f32]| v.iter().zip(base).map(|(a, b)| (a - b) as f64).sum::<f64>() / n.max(1) as f64;
    (mean_gain(with), mean_gain(control))
}

/// Reproduced pixels that make a segment count fully as carrying a
/// reproduced object: a few patches' worth, so a thin stroke (a marker
/// letter) counts; fewer count in proportion.
const REPRODUCED_PIXELS: f64 = 40.0;

/// How much the segments look like one reproduced object rather than
/// anatomy: the mean over the segments of their reproduced pixels (see
/// `recurrence`) over `REPRODUCED_PIXELS`, capped at 1. A stamped box, token
/// or ruler repeats pixel for pixel in its class; tissue and opacities do not.
fn stereotypy(maps: &[Vec<f32>], segments: &[(usize, Vec<bool>)], grid: (usize, usize)) -> f64 {
    let size = (maps.first().map_or(0, Vec::len) as f64).sqrt() as usize;
    let mut sum = 0.0f64;
    for (i, mask) in segments {
        let cells: Vec<i64> = mask.iter().map(|&m| m as i64).collect();
        let up = colour::upsample_labels(&cells, grid.0, grid.1, size);
        let reproduced = maps[*i]
            .iter()
            .zip(&up)
            .filter(|(&r, &m)| m == 1 && r > 0.0)
            .count();
        sum += (reproduced as f64 / REPRODUCED_PIXELS).min(1.0);
    }
    sum / segments.len().max(1) as f64
}

/// Each sampled image's recurrence map for its own class.
fn recurrence_maps(
    grey: &[Vec<u8>],
    class_of: &[usize],
    classes: usize,
) -> (Recurrence, Vec<Vec<f32>>) {
    let table = Recurrence::new(grey, class_of, classes);
    let maps = grey
        .iter()
        .zip(class_of)
        .map(|(g, &c)| table.map(g, c))
        .collect();
    (table, maps)
}

/// The cells of a probe's suspect segment (grown by one cell, as the
/// transplant test grows it) that hold reproduced pixels: a cell whose share
/// of class-specific recurring pixels is at least a quarter. None when no
/// cell does (the segment is then the region).
fn suspect_cells(
    segment: &[bool],
    map: &[f32],
    grid: (usize, usize),
    size: usize,
) -> Option<Vec<bool>> {
    let (h, w) = grid;
    let ids: Vec<i64> = (0..(h * w) as i64).collect();
    let up = colour::upsample_labels(&ids, h, w, size);
    let (mut sum, mut n) = (vec![0f32; h * w], vec![0u32; h * w]);
    for (&cell, &r) in up.iter().zip(map) {
        sum[cell as usize] += (r > 0.0) as u8 as f32;
        n[cell as usize] += 1;
    }
    let cells: Vec<bool> = dilate(segment, h, w)
        .into_iter()
        .enumerate()
        .map(|(i, inside)| inside && sum[i] >= 0.125 * n[i].max(1) as f32)
        .collect();
    cells.iter().any(|&c| c).then_some(cells)
}

/// Pixel box of the largest 4-connected group of `mask`'s cells.
fn largest_component_box(mask: &[bool], h: usize, w: usize, size: usize) -> Option<WmBox> {
    let mut seen = vec![false; h * w];
    let mut best: Vec<usize> = Vec::new();
    for start in 0..h * w {
        if !mask[start] || seen[start] {
            continue;
        }
        let mut stack = vec![start];
        let mut group = Vec::new();
        seen[start] = true;
        while let Some(i) = stack.pop() {
            group.push(i);
            let (y, x) = (i / w, i % w);
            let mut visit = |j: usize| {
                if mask[j] && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if y > 0 {
                visit(i - w);
            }
            if y + 1 < h {
                visit(i + w);
            }
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < w {
                visit(i + 1);
            }
        }
        if group.len() > best.len() {
            best = group;
        }
    }
    if best.is_empty() {
        return None;
    }
    let mut cells = vec![false; h * w];
    for i in best {
        cells[i] = true;
    }
    cells_box(&cells, h, w, size)
}

/// Pixel bounding box of a set of grid cells, mapped to the image as NAVE
/// upsamples its label maps (nearest neighbour); None for no cell.
fn cells_box(cells: &[bool], h: usize, w: usize, size: usize) -> Option<WmBox> {
    let up = colour::upsample_labels(
        &cells.iter().map(|&c| c as i64).collect::<Vec<_>>(),
        h,
        w,
        size,
    );
    let (mut x0, mut y0, mut x1, mut y1) = (size, size, 0, 0);
    let mut any = false;
    for (i, &v) in up.iter().enumerate() {
        if v == 1 {
            any = true;
            let (y, x) = (i / size, i % size);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    any.then(|| WmBox {
        x: x0 as i64,
        y: y0 as i64,
        w: (x1 - x0 + 1) as i64,
        h: (y1 - y0 + 1) as i64,
    })
}

/// The NAVE-guided detector, clustering the features of `taps`.
pub fn nave_detect(
    e: &Evidence,
    taps: &[String],
    spec: &DetectorSpec,
) -> anyhow::Result<Detection> {
    let _guard = tch::no_grad_guard();
    let (model, class_names, probes, device) = (e.model, e.class_names, e.probes, e.device);
    let (images, class_of) = sampled(e, spec.per_class); // [B, 3, S, S] uint8
    let (table, maps) = recurrence_maps(&grey_levels(&images), &class_of, class_names.len());
    let features_of = |imgs: &Tensor| {
        extract::features(
            model,
            &normalize_u8(&imgs.to_device(device)),
            taps,
            None,
            32,
        )
    };
    let feats = features_of(&images)?; // [B, D, h, w]
    let (b, _, h, w) = feats.size4()?;
    let (h, w) = (h as usize, w as usize);
    let cells = h * w;
    let k = spec.k.min(b as usize * cells);
    let result = kmeans::kmeans(&extract::to_rows(&feats), k, 0, 1e-4, 100);
    let labels_grid: Vec<i64> =
        Vec::try_from(result.labels.to_device(Device::Cpu)).expect("int64 labels");
    // How tightly each cluster's rows sit around its centre, relative to all
    // rows: a reproduced object (the same pixels in every image) is tight.
    let rows = extract::to_rows(&feats);
    let dist: Vec<f32> = Vec::try_from(
        (&rows - result.centres.index_select(0, &result.labels))
            .norm_scalaropt_dim(2, [1i64].as_slice(), false)
            .to_device(Device::Cpu),
    )
    .expect("float distances");
    let overall = dist.iter().map(|&d| d as f64).sum::<f64>() / dist.len().max(1) as f64;
    let tightness: Vec<f64> = (0..k as i64)
        .map(|c| {
            let (sum, n) = dist
                .iter()
                .zip(&labels_grid)
                .filter(|(_, &l)| l == c)
                .fold((0.0, 0usize), |(s, n), (&d, _)| (s + d as f64, n + 1));
            sum / n.max(1) as f64 / overall.max(1e-12)
        })
        .collect();

    // Every small, recurring cluster of every class is a candidate.
    let mut best: Option<(f64, usize, usize, f64, f64, f64)> = None;
    let mut candidates = Vec::new();
    for (class, class_name) in class_names.iter().enumerate() {
        let members: Vec<usize> = (0..b as usize).filter(|&i| class_of[i] == class).collect();
        let targets: Vec<usize> = (0..b as usize).filter(|&i| class_of[i] != class).collect();
        if members.is_empty() || targets.is_empty() {
            continue;
        }
        for cluster in 0..k as i64 {
            let segments: Regions = members
                .iter()
                .filter_map(|&i| {
                    let mask: Vec<bool> = labels_grid[i * cells..(i + 1) * cells]
                        .iter()
                        .map(|&l| l == cluster)
                        .collect();
                    let area = mask.iter().filter(|&&m| m).count() as f64 / cells as f64;
                    (area > 0.0 && area <= spec.max_area).then_some((i, mask))
                })
                .collect();
            if (segments.len() as f64) < spec.min_presence * members.len() as f64 {
                continue;
            }
            let regions: Regions = segments
                .iter()
                .map(|(i, m)| (*i, dilate(m, h, w)))
                .collect();
            let stereo = stereotypy(&maps, &segments, (h, w));
            let (lift, control) = transplant(
                model,
                &images,
                &regions,
                &targets,
                class,
                (h, w),
                spec.pairs,
                device,
            );
            let score = (lift - control) * stereo;
            candidates.push(Candidate {
                class: class_name.clone(),
                cluster: cluster as usize,
                presence: regions.len() as f64 / members.len() as f64,
                tightness: tightness[cluster as usize],
                stereotypy: stereo,
                lift,
                control,
            });
            if best.is_none_or(|(s, ..)| score > s) {
                best = Some((score, class, cluster as usize, lift, control, stereo));
            }
        }
    }
    let Some((score, class, cluster, lift, control, stereotypy)) = best else {
        return Ok(Detection {
            score: 0.0,
            class: None,
            cluster: None,
            lift: 0.0,
            control: 0.0,
            stereotypy: 0.0,
            suspect_boxes: vec![None; probes.size()[0] as usize],
            candidates,
        });
    };
    // The suspect cluster on each probe: its cells are those nearest its centre.
    let rows = extract::to_rows(&features_of(probes)?); // [P*h*w, D]
    let nearest: Vec<i64> = Vec::try_from(
        Tensor::cdist(&rows, &result.centres.to_kind(Kind::Float), 2.0, None)
            .argmin(1, false)
            .to_device(Device::Cpu),
    )
    .expect("int64 labels");
    let size = probes.size()[2] as usize;
    let probe_grey = grey_levels(probes);
    let suspect_boxes = nearest
        .chunks(cells)
        .zip(&probe_grey)
        .map(|(grid, grey)| {
            let mask: Vec<bool> = grid.iter().map(|&l| l == cluster as i64).collect();
            suspect_cells(&mask, &table.map(grey, class), (h, w), size)
                .and_then(|cells| largest_component_box(&cells, h, w, size))
                .or_else(|| largest_component_box(&mask, h, w, size))
        })
        .collect();
    Ok(Detection {
        score,
        class: Some(class_names[class].clone()),
        cluster: Some(cluster),
        lift,
        control,
        stereotypy,
        suspect_boxes,
        candidates,
    })
}

/// The occlusion baseline: per image, the square (a sixth of the side, on a
/// 7 x 7 lattice) whose grey-filling lowers P(own class) most is that image's
/// region; the same transplant test scores it.
pub fn occlusion_detect(e: &Evidence, spec: &DetectorSpec) -> anyhow::Result<Detection> {
    let _guard = tch::no_grad_guard();
    let (model, class_names, probes, device) = (e.model, e.class_names, e.probes, e.device);
    let classes = class_names.len();
    let size = e.train.size()[2] as usize;
    // The square lattice as a 7 x 7 grid of cells whose masks are squares.
    let lattice = 7usize;
    let squares = square_masks(size, lattice);
    let (images, class_of) = sampled(e, spec.per_class / 2);
    let (_, maps) = recurrence_maps(&grey_levels(&images), &class_of, classes);
    let most_sensitive = |imgs: &Tensor, class_per_image: &[usize]| -> Vec<usize> {
        let n = imgs.size()[0];
        let base = probabilities(model, imgs, device);
        let mut best = Vec::new();
        for i in 0..n {
            let img = imgs.get(i);
            let mean = img
                .to_kind(Kind::Float)
                .mean_dim([1i64, 2].as_slice(), true, Kind::Float);
            let occluded: Vec<Tensor> = squares
                .iter()
                .map(|m| {
                    let filled: Tensor = img.to_kind(Kind::Float) * (m.ones_like() - m) + &mean * m;
                    filled.round().to_kind(Kind::Uint8)
                })
                .collect();
            let c = class_per_image[i as usize] as i64;
            let p: Vec<f32> = Vec::try_from(
                probabilities(model, &Tensor::stack(&occluded, 0), device).select(1, c),
            )
            .expect("float");
            let p0 = base.double_value(&[i, c]) as f32;
            let (arg, _) = p
                .iter()
                .enumerate()
                .map(|(j, &v)| (j, p0 - v))
                .fold((0, f32::MIN), |a, b| if b.1 > a.1 { b } else { a });
            best.push(arg);
        }
        best
    };
    let chosen = most_sensitive(&images, &class_of);
    let square_grid = |j: usize| -> Vec<bool> {
        let mut m = vec![false; lattice * lattice];
        m[j] = true;
        m
    };
    let mut best: Option<(f64, usize, f64, f64, f64)> = None;
    for class in 0..classes {
        let regions: Regions = (0..class_of.len())
            .filter(|&i| class_of[i] == class)
            .map(|i| (i, square_grid(chosen[i])))
            .collect();
        let targets: Vec<usize> = (0..class_of.len())
            .filter(|&i| class_of[i] != class)
            .collect();
        if regions.is_empty() || targets.is_empty() {
            continue;
        }
        let (lift, control) = transplant(
            model,
            &images,
            &regions,
            &targets,
            class,
            (lattice, lattice),
            spec.pairs,
            device,
        );
        let stereo = stereotypy(&maps, &regions, (lattice, lattice));
        let score = (lift - control) * stereo;
        if best.is_none_or(|(s, ..)| score > s) {
            best = Some((score, class, lift, control, stereo));
        }
    }
    let (score, class, lift, control, stereotypy) = best.unwrap_or((0.0, 0, 0.0, 0.0, 0.0));
    let per_probe = most_sensitive(probes, &vec![class; probes.size()[0] as usize]);
    let suspect_boxes = per_probe
        .iter()
        .map(|&j| largest_component_box(&square_grid(j), lattice, lattice, size))
        .collect();
    Ok(Detection {
        score,
        class: Some(class_names[class].clone()),
        cluster: None,
        lift,
        control,
        stereotypy,
        suspect_boxes,
        candidates: Vec::new(),
    })
}

/// The `[1, S, S]` pixel masks of a `lattice x lattice` grid's cells.
fn square_masks(size: usize, lattice: usize) -> Vec<Tensor> {
    (0..lattice * lattice)
        .map(|j| {
            let mut m = vec![false; lattice * lattice];
            m[j] = true;
            pixel_mask(&m, lattice, lattice, size)
        })
        .collect()
}

/// Grid-rasterised region of a box: the bounding box of the grid cells (of an
/// `h x w` grid over a `size` image) that the box touches, in pixels.
pub fn rasterised(b: &WmBox, h: usize, w: usize, size: usize) -> Option<WmBox> {
    let cells: Vec<i64> = (0..(h * w) as i64).collect();
    let up = colour::upsample_labels(&cells, h, w, size);
    let mut touched = vec![false; h * w];
    for y in 0..size {
        for x in 0..size {
            if b.contains(x as i64, y as i64) {
                touched[up[y * size + x] as usize] = true;
            }
        }
    }
    cells_box(&touched, h, w, size)
}

/// IoU of two boxes.
pub fn box_iou(a: &WmBox, b: &WmBox) -> f64 {
    let ix = ((a.x + a.w).min(b.x + b.w) - a.x.max(b.x)).max(0);
    let iy = ((a.y + a.h).min(b.y + b.h) - a.y.max(b.y)).max(0);
    let inter = (ix * iy) as f64;
    inter / ((a.area() + b.area()) as f64 - inter).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_dilate_roll_and_box() {
        // 4 x 4 grid, one cell at (1, 1).
        let mut m = vec![false; 16];
        m[5] = true;
        let d = dilate(&m, 4, 4);
        assert_eq!(d.iter().filter(|&&v| v).count(), 9);
        assert!(d[0] && d[10] && !d[15]);
        let r = ring(&d, 4, 4);
        assert_eq!(r.iter().filter(|&&v| v).count(), 16 - 9);
        assert!(r[15] && !r[5] && !r[0]);
        // Two groups: the larger one's box, in pixels of a 16 px image (4 px cells).
        let mut g = vec![false; 16];
        for i in [0, 1, 4, 15] {
            g[i] = true;
        }
        assert_eq!(
            largest_component_box(&g, 4, 4, 16),
            Some(WmBox {
                x: 0,
                y: 0,
                w: 8,
                h: 8
            })
        );
        assert_eq!(largest_component_box(&[false; 16], 4, 4, 16), None);
    }

    #[test]
    fn rasterised_boxes_and_iou() {
        // A 3 x 3 box at (5, 5) on a 16 px image with 4 px cells touches cells (1..=1, 1..=1)
        // and (2, 2): pixels 4..12.
        let b = WmBox::square(5, 5, 4);
        assert_eq!(
            rasterised(&b, 4, 4, 16),
            Some(WmBox {
                x: 4,
                y: 4,
                w: 8,
                h: 8
            })
        );
        assert_eq!(box_iou(&b, &b), 1.0);
        assert_eq!(
            box_iou(&WmBox::square(0, 0, 2), &WmBox::square(1, 0, 2)),
            2.0 / 6.0
        );
        assert_eq!(
            box_iou(&WmBox::square(0, 0, 2), &WmBox::square(5, 5, 2)),
            0.0
        );
    }

    #[test]
    fn a_pasted_region_is_exactly_the_source_under_the_mask() {
        let source = Tensor::full([3, 8, 8], 200, (Kind::Uint8, Device::Cpu));
        let target = Tensor::full([3, 8, 8], 10, (Kind::Uint8, Device::Cpu));
        let mut m = vec![false; 4];
        m[3] = true; // the bottom-right quarter of a 2 x 2 grid
        let out = paste(&source, &target, &pixel_mask(&m, 2, 2, 8));
        assert_eq!(out.int64_value(&[0, 7, 7]), 200);
        assert_eq!(out.int64_value(&[2, 4, 4]), 200);
        assert_eq!(out.int64_value(&[1, 3, 7]), 10);
        assert_eq!(out.int64_value(&[0, 0, 0]), 10);
    }

    #[test]
    fn stereotypy_is_the_share_of_reproduced_pixels_in_the_segments() {
        // Two 16 x 16 images on a 4 x 4 grid (4 px cells); the segment is cell (1, 1).
        let mut maps = vec![vec![0f32; 256]; 2];
        for y in 4..8 {
            for x in 4..6 {
                maps[0][y * 16 + x] = 1.0; // 8 reproduced pixels in image 0's segment
            }
        }
        maps[1][0] = 1.0; // outside the segment: does not count
        let mut cell = vec![false; 16];
        cell[5] = true;
        let segments: Vec<(usize, Vec<bool>)> = (0..2).map(|i| (i, cell.clone())).collect();
        // (8 / REPRODUCED_PIXELS + 0) / 2 segments.
        let expected = 8.0 / REPRODUCED_PIXELS / 2.0;
        assert!((stereotypy(&maps, &segments, (4, 4)) - expected).abs() < 1e-9);
        assert_eq!(stereotypy(&maps, &segments[1..], (4, 4)), 0.0);
        // The suspect cells: the grown segment's cells with >= 1/8 reproduced pixels.
        let cells = suspect_cells(&cell, &maps[0], (4, 4), 16).expect("one cell");
        assert_eq!(cells.iter().filter(|&&c| c).count(), 1);
        assert!(cells[5]);
        assert_eq!(suspect_cells(&cell, &vec![0f32; 256], (4, 4), 16), None);
    }
}
