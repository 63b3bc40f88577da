//! The localisation protocol of the first author's evaluation code (VOC_eval,
//! `main_nave.py` run with `--centered_boxes`), step for step, where it
//! differs from a plain reading of the paper's appendix:
//!
//! * Components are taken on the label map of the *padded* image, kept when
//!   they have strictly more than 784 pixels (14 x 14 x 4), and only then a
//!   14-pixel frame along the padded map's edges is cleared from every
//!   component; a component left empty is dropped. A component the frame
//!   cuts in two stays one component.
//! * Components are listed cluster by cluster (ascending label), each
//!   cluster's in raster order of their first pixel (scikit-image's
//!   `measure.label` numbering), which decides ties.
//! * The inner box is centred on the component's median pixel truncated to
//!   an integer (`int(np.median(...))`), clipped to the padded map.
//! * The (ground-truth box, component) pair with the highest IoU of the
//!   component's *inner* box is selected (the first such pair, ground truth
//!   major); the image is found when the selected component's *outer* box
//!   has an IoU strictly above 0.5 with that ground-truth box.
//! * IoUs are computed as the code's `bbox_iou` computes them on integer
//!   boxes: in float32, with its 1e-7 guards.
//!
//! An image without ground truth (COCO's crowd-only images) or without any
//! component is a miss, as in LOST.
use super::boxes::{components, BBox, Component};
use crate::nave::stats::median;

/// Components of at most this many pixels are dropped (strictly more are kept).
pub const MIN_PIXELS: usize = 14 * 14 * 4;
/// Width of the frame cleared along the padded map's edges.
pub const FRAME: usize = 14;

/// An integer box `[x1, y1, x2, y2]` (pixel indices, as the code's NumPy boxes).
pub type IntBox = [i64; 4];

/// The authors' selection for one label map.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Index of the selected ground-truth box.
    pub gt: usize,
    /// Index of the selected component in [`components_on_padded`]'s order.
    pub component: usize,
    /// IoU of the component's inner box with that ground-truth box (float32).
    pub inner_iou: f32,
    /// The component's outer box: the prediction.
    pub outer: IntBox,
    /// IoU of the outer box with the selected ground-truth box (float32).
    pub iou: f32,
    /// `iou > 0.5`.
    pub found: bool,
}

/// The components the authors' code scores, from an `h x w` label map of the
/// padded image: sizes checked before the frame is cleared.
pub fn components_on_padded(labels: &[i64], h: usize, w: usize) -> Vec<Component> {
    let mut all: Vec<Component> = components(labels, h, w, 0)
        .into_iter()
        .filter(|c| c.pixels.len() > MIN_PIXELS)
        .collect();
    // `components` lists them in raster order of their first pixel; the
    // code walks the clusters in ascending label order (a stable sort keeps
    // the raster order within a cluster).
    all.sort_by_key(|c| c.label);
    all.into_iter()
        .filter_map(|mut c| {
            c.pixels
                .retain(|&(y, x)| y >= FRAME && x >= FRAME && y + FRAME < h && x + FRAME < w);
            (!c.pixels.is_empty()).then_some(c)
        })
        .collect()
}

/// Min and max of the component's pixel indices.
pub fn outer_box(c: &Component) -> IntBox {
    let xs = c.pixels.iter().map(|p| p.1 as i64);
    let ys = c.pixels.iter().map(|p| p.0 as i64);
    [
        xs.clone().min().unwrap_or(0),
        ys.clone().min().unwrap_or(0),
        xs.max().unwrap_or(0),
        ys.max().unwrap_or(0),
    ]
}

/// The centred ("inner") box: the median pixel truncated to integers, the
/// half-extent the nearer distance to the extremes, clipped to `[0, w]` and
/// `[0, h]`.
pub fn inner_box(c: &Component, h: usize, w: usize) -> IntBox {
    let xs = median(&c.pixels.iter().map(|p| p.1 as f64).collect::<Vec<_>>()) as i64;
    let ys = median(&c.pixels.iter().map(|p| p.0 as f64).collect::<Vec<_>>()) as i64;
    let [xmin, ymin, xmax, ymax] = outer_box(c);
    let xd = (xs - xmin).abs().min((xs - xmax).abs());
    let yd = (ys - ymin).abs().min((ys - ymax).abs());
    let (w, h) = (w as i64, h as i64);
    [
        (xs - xd).clamp(0, w),
        (ys - yd).clamp(0, h),
        (xs + xd).clamp(0, w),
        (ys + yd).clamp(0, h),
    ]
}

/// `bbox_iou` of two integer boxes as PyTorch evaluates it: the
/// intersection in integers, the rest in float32 (an int64 tensor plus a
/// Python float is float32), 1e-7 added to the heights and to the union.
pub fn iou_f32(a: &IntBox, b: &IntBox) -> f32 {
    const EPS: f32 = 1e-7;
    let inter = (a[2].min(b[2]) - a[0].max(b[0])).max(0) * (a[3].min(b[3]) - a[1].max(b[1])).max(0);
    let h1 = (a[3] - a[1]) as f32 + EPS;
    let h2 = (b[3] - b[1]) as f32 + EPS;
    let union = ((a[2] - a[0]) as f32 * h1 + (b[2] - b[0]) as f32 * h2 - inter as f32) + EPS;
    inter as f32 / union
}

/// Ground-truth boxes as the code holds them: integers (VOC's are already;
/// COCO's were rounded by the loader).
pub fn integer_boxes(gt: &[BBox]) -> Vec<IntBox> {
    gt.iter()
        .map(|b| [b[0] as i64, b[1] as i64, b[2] as i64, b[3] as i64])
        .collect()
}

/// Selects and scores one label map (`h x w`, the padded image) against the
/// ground truth. `None` when there is no ground truth or no component (a miss).
pub fn select(labels: &[i64], h: usize, w: usize, gt: &[BBox]) -> Option<Choice> {
    let gt = integer_boxes(gt);
    let comps = components_on_padded(labels, h, w);
    let inner: Vec<IntBox> = comps.iter().map(|c| inner_box(c, h, w)).collect();
    let mut best: Option<(usize, usize, f32)> = None;
    for (g, gbox) in gt.iter().enumerate() {
        for (c, ibox) in inner.iter().enumerate() {
            let v = iou_f32(ibox, gbox);
            // Strictly greater: the first maximum wins, as torch's argmax.
            if best.is_none_or(|(_, _, b)| v > b) {
                best = Some((g, c, v));
            }
        }
    }
    let (g, c, inner_iou) = best?;
    let outer = outer_box(&comps[c]);
    let iou = iou_f32(&outer, &gt[g]);
    Some(Choice {
        gt: g,
        component: c,
        inner_iou,
        outer,
        iou,
        found: iou > 0.5,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `h x w` map, label 0 everywhere but `1` on the rectangle `[x0, x1) x [y0, y1)`.
    fn map_with(h: usize, w: usize, rects: &[(i64, [usize; 4])]) -> Vec<i64> {
        let mut m = vec![0; h * w];
        for &(label, [x0, y0, x1, y1]) in rects {
            for y in y0..y1 {
                for x in x0..x1 {
                    m[y * w + x] = label;
                }
            }
        }
        m
    }

    #[test]
    fn sizes_are_counted_before_the_frame_and_kept_strictly_above_784() {
        // 28 x 28 = 784 pixels: dropped; 28 x 29 = 812: kept.
        let m = map_with(96, 96, &[(1, [30, 30, 58, 58]), (2, [60, 10, 89, 38])]);
        let cs = components_on_padded(&m, 96, 96);
        let labels: Vec<i64> = cs.iter().map(|c| c.label).collect();
        assert_eq!(labels, vec![0, 2], "label 1 has exactly 784 pixels");
        // Label 2 touches the top frame (rows < 14): those rows are cleared,
        // but its size was counted before.
        assert_eq!(outer_box(&cs[1]), [60, 14, 81, 37]);
        // The background's box stops at the frame.
        assert_eq!(outer_box(&cs[0]), [14, 14, 81, 81]);
    }

    #[test]
    fn a_component_inside_the_frame_only_is_dropped_after_counting() {
        // A strip 14 columns wide along the right edge: 1,120 pixels, all in the frame.
        let m = map_with(80, 80, &[(1, [66, 0, 80, 80])]);
        let cs = components_on_padded(&m, 80, 80);
        assert_eq!(cs.len(), 1, "the 1120-pixel strip lies wholly in the frame");
        assert_eq!(cs[0].label, 0);
    }

    #[test]
    fn inner_box_truncates_the_median() {
        // Pixels at x = 20, 21 (even count: median 20.5 -> 20), y = 30.
        let c = Component {
            label: 0,
            pixels: vec![(30, 20), (30, 21)],
        };
        assert_eq!(inner_box(&c, 64, 64), [20, 30, 20, 30]);
    }

    #[test]
    fn iou_in_float32_with_the_guards() {
        assert_eq!(iou_f32(&[0, 0, 10, 10], &[5, 0, 15, 10]), 50.0 / 150.0f32);
        assert_eq!(iou_f32(&[0, 0, 10, 10], &[0, 0, 10, 10]), 1.0);
        // A degenerate box (zero height) has no intersection.
        assert_eq!(iou_f32(&[3, 4, 9, 4], &[0, 0, 10, 10]), 0.0);
    }

    #[test]
    fn the_inner_box_selects_and_the_outer_box_scores_strictly_above_half() {
        // One object [30, 30, 70, 70); the segment is an L whose inner box
        // collapses (IoU 0) and a square that matches it.
        let m = map_with(
            112,
            112,
            &[
                (1, [30, 30, 70, 70]),
                (2, [20, 80, 90, 95]),
                (2, [75, 20, 90, 95]),
            ],
        );
        let gt = [[30.0, 30.0, 69.0, 69.0]];
        let choice = select(&m, 112, 112, &gt).unwrap();
        assert_eq!(choice.outer, [30, 30, 69, 69]);
        assert!(choice.found && choice.iou > 0.99);
        // The same ground truth with twice the area: the outer box's IoU is
        // then at most 0.5, which is a miss (strict).
        let gt = [[30.0, 30.0, 69.0, 108.0]];
        let choice = select(&m, 112, 112, &gt).unwrap();
        assert!(choice.iou <= 0.5 && !choice.found, "{choice:?}");
        // No ground truth: a miss without a choice.
        assert!(select(&m, 112, 112, &[]).is_none());
    }
}
