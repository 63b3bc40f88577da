//! Whether a candidate's segments hold something sharper than the same
//! places hold in the other classes' images: a view of a stamped object
//! that does not ask its copies to look alike. A laterality letter drawn
//! R or L, at varied sizes, angles and contrasts, correlates with its other
//! copies no better than anatomy does with anatomy, but its strokes are
//! sharper than the radiograph around them, and the other class's images
//! have no such strokes where it lies.
//!
//! Each image's sharpness map is its high-pass magnitude, averaged over 3 x
//! 3 pixels (so one noisy pixel is not a stroke), less the image's own
//! median (so a texture or a grain every image of a class carries does not
//! count), over its own 90th percentile: real radiographs of one class
//! can be sharper all over than the other's (NORMAL lungs against the
//! haze of pneumonia), and a place is then sharper in every image of that
//! class without anything being there. On its image's own scale, a stroke
//! stands out of the image it is drawn on; anatomy as sharp as the rest of
//! its image does not. A segment's sharpness is the map's highest value
//! under it. The separation pairs each segment with the same cells in a
//! few images of the other classes: the AUROC of the segments' sharpness
//! against the paired places'. Anatomy lies at about the same places in the
//! other class's images and is about as sharp there (about 0.5); an object
//! only the class carries is sharper than what lies under it elsewhere
//! (near 1).
use tch::{Kind, Tensor};

use crate::data::PixelBox;
use crate::nave::{colour, components};

/// Images of the other classes each segment is paired with.
const PAIRS: usize = 4;

/// Each image's share of its sharpness above the median that counts as its
/// scale (see the module).
const SCALE_QUANTILE: f64 = 0.90;

/// The floor of an image's scale: it only keeps a flat image (no texture
/// above its median) from being divided by zero.
const SCALE_FLOOR: f64 = 1e-3;

/// The sharpness maps `[N, S, S]` (float) of high-pass grey images
/// `[N, 1, S, S]` (see `template::high_pass`), each on its image's scale.
pub fn sharpness_maps(high: &Tensor) -> Tensor {
    let smooth = high
        .abs()
        .avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None::<i64>)
        .squeeze_dim(1);
    let n = smooth.size()[0];
    let median = smooth.reshape([n, -1]).median_dim(1, true).0;
    let above = smooth - median.unsqueeze(-1);
    let scale = above
        .reshape([n, -1])
        .quantile_scalar(SCALE_QUANTILE, 1, true, "linear")
        .clamp_min(SCALE_FLOOR);
    above / scale.unsqueeze(-1)
}

/// The segments' separation (see the module): `segments` are grid masks on
/// images of one class, `others` the images of the other classes, `maps`
/// from [`sharpness_maps`].
pub fn separation(
    maps: &Tensor,
    segments: &[(usize, Vec<bool>)],
    others: &[usize],
    grid: (usize, usize),
) -> f64 {
    if segments.is_empty() || others.is_empty() {
        return 0.5;
    }
    let size = maps.size()[1] as usize;
    let (mut within, mut paired) = (Vec::new(), Vec::new());
    for (k, (i, mask)) in segments.iter().enumerate() {
        if !mask.iter().any(|&m| m) {
            continue; // no cell, no sharpness to read
        }
        let cells: Vec<i64> = mask.iter().map(|&m| m as i64).collect();
        let up = colour::upsample_labels(&cells, grid.0, grid.1, size);
        let pixels = Tensor::from_slice(&up)
            .to_device(maps.device())
            .reshape([size as i64, size as i64])
            .to_kind(Kind::Bool);
        let highest = |image: usize| {
            maps.get(image as i64)
                .masked_select(&pixels)
                .max()
                .double_value(&[])
        };
        within.push(highest(*i));
        for t in 0..PAIRS.min(others.len()) {
            paired.push(highest(others[(k * PAIRS + t) % others.len()]));
        }
    }
    crate::detect::template::separation(&within, &paired)
}

/// A stroke's pixels: at least this share of the sharpest pixel's
/// sharpness (on the image's scale) ...
const STROKE_SHARE: f64 = 0.35;
/// ... each within this many pixels of another (a varied letter, rotated,
/// translucent, is sharper along some strokes than others and breaks into
/// pieces at the share; at 0.5 and touching pixels only, the pieces found
/// on zoo-varied-d's radiograph markers were 3-5 px of a 25-35 px letter).
const STROKE_GAP: usize = 3;

/// Where the sharpest stroke in `within` lies, on a sharpness map (`map`,
/// `size x size`, row-major, from [`sharpness_maps`]): the box of the
/// pixels at least `STROKE_SHARE` of the box's sharpest pixel and linked to
/// it through such pixels at most `STROKE_GAP` apart, running on past the
/// box by up to `reach` pixels (a region of grid cells cuts through the
/// object it holds). None when nothing in the box stands out of its image
/// (its sharpest pixel is no sharper than the image's 90th percentile, 1 on
/// the map's scale). A marker's letter is one such stroke; anatomy's edges
/// spread through the box at about the image's own sharpness.
pub fn sharpest_stroke(
    map: &[f32],
    size: usize,
    within: &PixelBox,
    reach: i64,
) -> Option<PixelBox> {
    let clip = |v: i64| v.clamp(0, size as i64) as usize;
    let (px0, py0) = (clip(within.x), clip(within.y));
    let (px1, py1) = (clip(within.x + within.w), clip(within.y + within.h));
    // The stroke may run on past the box by `reach`.
    let (x0, y0) = (clip(within.x - reach), clip(within.y - reach));
    let (x1, y1) = (
        clip(within.x + within.w + reach),
        clip(within.y + within.h + reach),
    );
    let (mut peak, mut top) = (None, 1.0f32);
    for y in py0..py1 {
        for x in px0..px1 {
            if map[y * size + x] > top {
                (peak, top) = (Some((x, y)), map[y * size + x]);
            }
        }
    }
    let (px, py) = peak?;
    let floor = top as f64 * STROKE_SHARE;
    let (ww, wh) = (x1 - x0, y1 - y0);
    let strong: Vec<bool> = (0..ww * wh)
        .map(|k| map[(y0 + k / ww) * size + x0 + k % ww] as f64 >= floor)
        .collect();
    let stroke = components::linked_to(&strong, wh, ww, (py - y0, px - x0), STROKE_GAP);
    let (mut bx0, mut by0, mut bx1, mut by1) = (px, py, px, py);
    for (y, x) in stroke {
        let (x, y) = (x + x0, y + y0);
        (bx0, by0, bx1, by1) = (bx0.min(x), by0.min(y), bx1.max(x), by1.max(y));
    }
    Some(PixelBox {
        x: bx0 as i64,
        y: by0 as i64,
        w: (bx1 - bx0 + 1) as i64,
        h: (by1 - by0 + 1) as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Smooth gradients (anatomy-like) on every image; a sharp cross drawn
    /// on images `marked`, at a place that moves from image to image.
    fn images(n: i64, marked: &[i64]) -> Tensor {
        let ramp = Tensor::arange(32, (Kind::Float, Device::Cpu)) * 4.0 + 40.0;
        let images = ramp.view([1, 1, 1, 32]).expand([n, 3, 32, 32], true).copy();
        for &i in marked {
            let y = 2 + (i % 3);
            let _ = images.get(i).narrow(1, y, 6).narrow(2, 13, 2).fill_(250.0);
            let _ = images
                .get(i)
                .narrow(1, y + 2, 2)
                .narrow(2, 11, 6)
                .fill_(250.0);
        }
        images.to_kind(Kind::Uint8)
    }

    fn top_row_segments(idx: &[usize]) -> Vec<(usize, Vec<bool>)> {
        // A 4 x 4 grid: the top row's middle cells.
        let mask: Vec<bool> = (0..16).map(|c| c == 1 || c == 2).collect();
        idx.iter().map(|&i| (i, mask.clone())).collect()
    }

    /// The separation of the top row's segments on images 0-3 against
    /// images 4-7, with the cross drawn on the images `marked`.
    fn top_row_separation(marked: &[i64]) -> (Tensor, f64) {
        let maps = sharpness_maps(&crate::detect::template::high_pass(&images(8, marked)));
        let sep = separation(
            &maps,
            &top_row_segments(&[0, 1, 2, 3]),
            &[4, 5, 6, 7],
            (4, 4),
        );
        (maps, sep)
    }

    #[test]
    fn a_sharp_object_only_its_class_carries_separates_and_smooth_anatomy_does_not() {
        assert_eq!(top_row_separation(&[0, 1, 2, 3]).1, 1.0);
        assert_eq!(top_row_separation(&[]).1, 0.5);
        // Both classes carry it: no separation.
        let (maps, sep) = top_row_separation(&[0, 1, 2, 3, 4, 5, 6, 7]);
        assert!(sep <= 0.75, "{sep}");
        // A segment with no cell reads nothing, and does not fail.
        let empty = vec![(0, vec![false; 16])];
        assert_eq!(separation(&maps, &empty, &[4, 5, 6, 7], (4, 4)), 0.5);
    }

    #[test]
    fn the_sharpest_stroke_is_the_cross_and_smooth_images_have_none() {
        // Image 1's cross: rows 3-8, columns 11-16 (see `images`).
        let maps = sharpness_maps(&crate::detect::template::high_pass(&images(2, &[1])));
        let map = |i: i64| Vec::<f32>::try_from(maps.get(i).flatten(0, -1)).unwrap();
        // Away from the left and right borders, where the high pass of the
        // ramp is not 0.
        let top = PixelBox {
            x: 4,
            y: 0,
            w: 24,
            h: 16,
        };
        let stroke = sharpest_stroke(&map(1), 32, &top, 0).expect("the cross");
        // The high pass rings a pixel or two around the cross.
        assert!(
            (9..=11).contains(&stroke.x) && (1..=3).contains(&stroke.y),
            "{stroke:?}"
        );
        assert!(
            (6..=10).contains(&stroke.w) && (6..=10).contains(&stroke.h),
            "{stroke:?}"
        );
        // Outside the box the cross is not looked for; the smooth image has none.
        let below = PixelBox {
            x: 4,
            y: 16,
            w: 24,
            h: 16,
        };
        assert_eq!(sharpest_stroke(&map(1), 32, &below, 0), None);
        assert_eq!(sharpest_stroke(&map(0), 32, &top, 0), None);
        // A box that holds the cross's left end only: that end, or with the
        // reach, the whole cross.
        let left = PixelBox {
            x: 4,
            y: 0,
            w: 10,
            h: 16,
        };
        let end = sharpest_stroke(&map(1), 32, &left, 0).unwrap();
        assert!(end.x + end.w <= 14, "{end:?}");
        let whole = sharpest_stroke(&map(1), 32, &left, 8).unwrap();
        assert_eq!(whole, stroke);
    }

    #[test]
    fn each_map_is_on_its_own_images_scale() {
        // 17 noisy images, each at another contrast: each map's 90th
        // percentile is 1.
        tch::manual_seed(3);
        let noise = Tensor::rand([17, 1, 128, 128], (Kind::Float, Device::Cpu));
        let contrast = Tensor::arange(17, (Kind::Float, Device::Cpu)).view([17, 1, 1, 1]) + 1.0;
        let maps = sharpness_maps(&(noise * contrast));
        assert_eq!(maps.size(), [17, 128, 128]);
        for i in 0..17 {
            let q = maps
                .get(i)
                .flatten(0, -1)
                .quantile_scalar(SCALE_QUANTILE, 0, false, "linear")
                .double_value(&[]);
            assert!(
                (q - 1.0).abs() < 1e-3,
                "image {i}: its 90th percentile is {q}"
            );
        }
    }
}
