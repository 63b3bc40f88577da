//! How a label map treats a known box (DESIGN.md's Clever Hans measures):
//! `wm_iou` (the best segment's IoU with the box), the grid-fair IoU, recall
//! and precision, and `wm_shift` (1 - ARI between the clean and marked maps
//! outside the dilated box). They need the artefact's box, so only the audit
//! of runs with a known artefact computes them.
use std::collections::HashMap;

use crate::data::PixelBox;
use crate::nave::stats::adjusted_rand_index;

/// How well the best segment (max IoU with the box) isolates the box, on an
/// upsampled `size x size` label map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Isolation {
    /// IoU(best segment, box): `wm_iou`.
    pub iou: f64,
    /// `iou` divided by the best IoU any union of grid cells reaches for this
    /// box: 1.0 = isolated as well as the clustering grid allows.
    pub fair: f64,
    /// Share of the box the best segment covers.
    pub recall: f64,
    /// Share of the best segment that lies in the box.
    pub precision: f64,
}

/// Pixel counts per label: (area, overlap with the box).
fn overlaps(labels: &[i64], size: usize, b: &PixelBox) -> HashMap<i64, (u64, u64)> {
    let mut counts: HashMap<i64, (u64, u64)> = HashMap::new();
    for y in 0..size {
        for x in 0..size {
            let c = counts.entry(labels[y * size + x]).or_default();
            c.0 += 1;
            if b.contains(x as i64, y as i64) {
                c.1 += 1;
            }
        }
    }
    counts
}

/// The box's pixels inside the image.
fn visible_area(size: usize, b: &PixelBox) -> u64 {
    let span = |start: i64, len: i64| ((start + len).min(size as i64) - start.max(0)).max(0) as u64;
    span(b.x, b.w) * span(b.y, b.h)
}

/// max over segments of IoU(segment, box), on a `size x size` label map.
pub fn wm_iou(labels: &[i64], size: usize, b: &PixelBox) -> f64 {
    let box_area = visible_area(size, b) as f64;
    overlaps(labels, size, b)
        .values()
        .map(|&(area, inter)| inter as f64 / (area as f64 + box_area - inter as f64))
        .fold(0.0, f64::max)
}

/// The best IoU with the box that any union of grid cells reaches; `cells`
/// maps each pixel to its grid cell (the upsampled cell index map). For a
/// ratio like IoU the best union takes the cells in decreasing order of the
/// share of their area inside the box, so checking every such prefix finds it.
pub fn best_grid_iou(cells: &[i64], size: usize, b: &PixelBox) -> f64 {
    let box_area = visible_area(size, b) as f64;
    let mut by_share: Vec<(u64, u64)> = overlaps(cells, size, b)
        .into_values()
        .filter(|&(_, inter)| inter > 0)
        .collect();
    // inter_a / area_a > inter_b / area_b, compared without division.
    by_share.sort_by(|a, b| (b.1 * a.0).cmp(&(a.1 * b.0)));
    let (mut area, mut inter, mut best) = (0u64, 0u64, 0.0f64);
    for (a, i) in by_share {
        area += a;
        inter += i;
        best = best.max(inter as f64 / (area as f64 + box_area - inter as f64));
    }
    best
}

/// The best segment's IoU, grid-fair IoU, recall and precision for the box.
pub fn isolation(labels: &[i64], cells: &[i64], size: usize, b: &PixelBox) -> Isolation {
    let box_area = visible_area(size, b) as f64;
    let (area, inter) = overlaps(labels, size, b)
        .into_values()
        .max_by(|x, y| {
            let iou = |&(a, i): &(u64, u64)| i as f64 / (a as f64 + box_area - i as f64);
            iou(x).total_cmp(&iou(y))
        })
        .unwrap_or((0, 0));
    let (area, inter) = (area as f64, inter as f64);
    let iou = inter / (area + box_area - inter).max(1.0);
    let ceiling = best_grid_iou(cells, size, b);
    Isolation {
        iou,
        fair: if ceiling > 0.0 {
            (iou / ceiling).min(1.0)
        } else {
            0.0
        },
        recall: inter / box_area.max(1.0),
        precision: if area > 0.0 { inter / area } else { 0.0 },
    }
}

/// 1 - ARI between the clean and watermarked label maps over the pixels
/// outside the box dilated by `margin` pixels on every side.
pub fn wm_shift(clean: &[i64], marked: &[i64], size: usize, b: &PixelBox, margin: i64) -> f64 {
    let grown = b.dilated(margin);
    let (mut a, mut m) = (Vec::new(), Vec::new());
    for y in 0..size {
        for x in 0..size {
            if !grown.contains(x as i64, y as i64) {
                a.push(clean[y * size + x]);
                m.push(marked[y * size + x]);
            }
        }
    }
    if a.len() < 2 {
        return 0.0;
    }
    1.0 - adjusted_rand_index(&a, &m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wm_iou_and_shift() {
        let size = 8;
        let b = PixelBox::square(2, 2, 2);
        // A segment that is exactly the box: IoU 1.
        let labels: Vec<i64> = (0..64)
            .map(|i| if b.contains(i % 8, i / 8) { 1 } else { 0 })
            .collect();
        assert_eq!(wm_iou(&labels, size, &b), 1.0);
        // A segment of the box plus 4 more pixels: IoU 4 / 8.
        let mut wider = labels.clone();
        for i in [0, 1, 8, 9] {
            wider[i] = 1;
        }
        assert_eq!(wm_iou(&wider, size, &b), 0.5);
        // Same map outside the (dilated) box: no shift; a changed outside: shift > 0.
        assert_eq!(wm_shift(&labels, &wider, size, &b, 2), 0.0);
        let mut changed = labels.clone();
        for v in changed.iter_mut().skip(40) {
            *v = 2;
        }
        assert!(wm_shift(&labels, &changed, size, &b, 0) > 0.3);
    }

    /// The grid cell of every pixel, as the audit upsamples a label map.
    fn cell_map(grid: usize, size: usize) -> Vec<i64> {
        let cells: Vec<i64> = (0..(grid * grid) as i64).collect();
        crate::nave::colour::upsample_labels(&cells, grid, grid, size)
    }

    /// The best union of cells by trying every subset of the cells the box touches.
    fn brute_force_best(grid: usize, size: usize, b: &PixelBox) -> (f64, Vec<i64>) {
        let cells = cell_map(grid, size);
        // Per touched cell: (cell, area, pixels inside the box).
        let mut touched: Vec<(i64, f64, f64)> = Vec::new();
        for c in 0..(grid * grid) as i64 {
            let pixels: Vec<usize> = (0..size * size).filter(|&i| cells[i] == c).collect();
            let inside = pixels
                .iter()
                .filter(|&&i| b.contains((i % size) as i64, (i / size) as i64))
                .count();
            if inside > 0 {
                touched.push((c, pixels.len() as f64, inside as f64));
            }
        }
        let mut best = (0.0, Vec::new());
        for mask in 1u32..(1 << touched.len()) {
            let chosen: Vec<&(i64, f64, f64)> = touched
                .iter()
                .enumerate()
                .filter(|(k, _)| mask & (1 << k) != 0)
                .map(|(_, t)| t)
                .collect();
            let area: f64 = chosen.iter().map(|t| t.1).sum();
            let inter: f64 = chosen.iter().map(|t| t.2).sum();
            let iou = inter / (area + b.area() as f64 - inter);
            if iou > best.0 {
                best = (iou, chosen.iter().map(|t| t.0).collect());
            }
        }
        best
    }

    #[test]
    fn perfect_isolation_scores_one_at_any_position_grid_and_size() {
        let mut checked = 0;
        for size in [64usize, 96, 112] {
            for grid in [4usize, 7, 14] {
                for side in [size / 12, size / 8, size / 5] {
                    for (x, y) in [
                        (0, 0),
                        (3, 5),
                        (size / 3, size / 2),
                        (size - side, size - side),
                        (size / 2 + 1, 7),
                    ] {
                        let b = PixelBox::square(x as i64, y as i64, side as i64);
                        let (best, chosen) = brute_force_best(grid, size, &b);
                        let cells = cell_map(grid, size);
                        assert!(
                            (best_grid_iou(&cells, size, &b) - best).abs() < 1e-12,
                            "size {size} grid {grid} box {b:?}"
                        );
                        let labels: Vec<i64> = cells
                            .iter()
                            .map(|c| chosen.contains(c) as i64 + 3)
                            .collect();
                        let iso = isolation(&labels, &cells, size, &b);
                        assert!(
                            (iso.fair - 1.0).abs() < 1e-12,
                            "size {size} grid {grid} box {b:?}: {iso:?}"
                        );
                        assert!((iso.iou - best).abs() < 1e-12);
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 135);
    }

    #[test]
    fn isolation_recall_precision_and_a_missed_box() {
        // 8 x 8 image, 4 x 4 grid (2-pixel cells), a 2 x 2 box on cell (1, 1).
        let size = 8;
        let cells = cell_map(4, size);
        let b = PixelBox::square(2, 2, 2);
        // The segment is cell (1, 1) plus cell (2, 1): IoU 4 / 8, recall 1, precision 0.5.
        let labels: Vec<i64> = cells.iter().map(|&c| (c == 5 || c == 6) as i64).collect();
        let iso = isolation(&labels, &cells, size, &b);
        assert_eq!(
            (iso.iou, iso.fair, iso.recall, iso.precision),
            (0.5, 0.5, 1.0, 0.5)
        );
        // A box straddling four cells: the grid allows IoU 4 / 16 at best, so
        // a segment of exactly those four cells is fair 1.0 with raw IoU 0.25.
        let b = PixelBox::square(1, 1, 2);
        let labels: Vec<i64> = cells
            .iter()
            .map(|&c| [0, 1, 4, 5].contains(&c) as i64)
            .collect();
        let iso = isolation(&labels, &cells, size, &b);
        assert_eq!(
            (iso.iou, iso.fair, iso.recall, iso.precision),
            (0.25, 1.0, 1.0, 0.25)
        );
        // One label everywhere: IoU = box / image.
        let iso = isolation(&vec![0; 64], &cells, size, &b);
        assert_eq!(iso.iou, 4.0 / 64.0);
        assert_eq!(iso.fair, 0.25);
    }
}
