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

use crate::nave::colour;

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
