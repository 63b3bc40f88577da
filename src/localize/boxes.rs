//! Segments to boxes (paper appendix A) and LOST's IoU.
//!
//! Boxes are `[x1, y1, x2, y2]` in continuous image coordinates. The outer and
//! inner boxes follow Algorithms 2 and 3 literally (pixel indices, medians as
//! NumPy computes them); the IoU is LOST's (`bbox_iou`: widths x2 - x1, with
//! its 1e-7 guards).
use crate::nave::stats::median;

pub type BBox = [f64; 4];

pub use crate::nave::components::{components, Component};

/// Algorithm 2: min and max of the component's pixel coordinates.
pub fn outer_box(c: &Component) -> BBox {
    let xmin = c.pixels.iter().map(|p| p.1).min().unwrap_or(0) as f64;
    let xmax = c.pixels.iter().map(|p| p.1).max().unwrap_or(0) as f64;
    let ymin = c.pixels.iter().map(|p| p.0).min().unwrap_or(0) as f64;
    let ymax = c.pixels.iter().map(|p| p.0).max().unwrap_or(0) as f64;
    [xmin, ymin, xmax, ymax]
}

/// Algorithm 3: a box centred on the component's median pixel, its half-extent
/// the smaller distance from the median to the extremes, clipped to the image.
pub fn inner_box(c: &Component, h: usize, w: usize) -> BBox {
    let xs = median(&c.pixels.iter().map(|p| p.1 as f64).collect::<Vec<_>>());
    let ys = median(&c.pixels.iter().map(|p| p.0 as f64).collect::<Vec<_>>());
    let [xmin, ymin, xmax, ymax] = outer_box(c);
    let xd = (xs - xmin).abs().min((xs - xmax).abs());
    let yd = (ys - ymin).abs().min((ys - ymax).abs());
    [
        (xs - xd).clamp(0.0, w as f64),
        (ys - yd).clamp(0.0, h as f64),
        (xs + xd).clamp(0.0, w as f64),
        (ys + yd).clamp(0.0, h as f64),
    ]
}

/// LOST's IoU of two boxes.
pub fn iou(a: &BBox, b: &BBox) -> f64 {
    const EPS: f64 = 1e-7;
    let inter =
        (a[2].min(b[2]) - a[0].max(b[0])).max(0.0) * (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let (w1, h1) = (a[2] - a[0], a[3] - a[1] + EPS);
    let (w2, h2) = (b[2] - b[0], b[3] - b[1] + EPS);
    inter / (w1 * h1 + w2 * h2 - inter + EPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_and_inner_boxes_of_a_non_convex_component() {
        // An L: the column x = 1, y = 1..=8 and the row y = 8, x = 1..=8 (15 pixels).
        let mut pixels: Vec<(usize, usize)> = (1..=8).map(|y| (y, 1)).collect();
        pixels.extend((2..=8).map(|x| (8, x)));
        let c = Component { label: 0, pixels };
        assert_eq!(outer_box(&c), [1.0, 1.0, 8.0, 8.0]);
        // xs: eight 1s then 2..=8 -> median 1 (8th of 15 sorted values); ys: 1..=7 then eight 8s -> median 8.
        // xd = min(|1-1|, |1-8|) = 0; yd = min(|8-1|, |8-8|) = 0: the inner box collapses onto the corner,
        // far from the outer box, as the paper's Figure 7 illustrates.
        assert_eq!(inner_box(&c, 10, 10), [1.0, 8.0, 1.0, 8.0]);
        // A plus sign: median at the centre, half-extent to the nearer end.
        let mut plus: Vec<(usize, usize)> = (0..=6).map(|x| (3, x)).collect();
        plus.extend([0, 1, 2, 4, 5].iter().map(|&y| (y, 3)));
        let c = Component {
            label: 0,
            pixels: plus,
        };
        // xs: 0..=6 plus five 3s -> median 3; ys: 0,1,2,4,5 plus seven 3s -> median 3.
        // xd = min(3, 3) = 3; yd = min(3, |3-5| = 2) = 2.
        assert_eq!(inner_box(&c, 7, 7), [0.0, 1.0, 6.0, 5.0]);
        // Even counts take the mean of the middle values.
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), 2.5);
    }

    #[test]
    fn iou_as_lost_computes_it() {
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]) - 1.0).abs() < 1e-6);
        // Half overlap: inter 50, union 150.
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 1.0, 1.0], &[2.0, 2.0, 3.0, 3.0]), 0.0);
    }
}
