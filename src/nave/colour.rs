//! Pictures of an explanation: overlays with a fixed palette, average-colour
//! images, and label maps (DESIGN.md "Outputs of an explanation").
use image::{Rgb, RgbImage};

/// A fixed, distinguishable palette (cluster k always gets colour k).
pub const PALETTE: [[u8; 3]; 20] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
    [220, 190, 255],
    [170, 110, 40],
    [255, 250, 200],
    [128, 0, 0],
    [170, 255, 195],
    [128, 128, 0],
    [255, 215, 180],
    [0, 0, 128],
    [128, 128, 128],
];

pub fn colour_of(k: i64) -> [u8; 3] {
    PALETTE[k as usize % PALETTE.len()]
}

/// Nearest-neighbour upsampling of an `h x w` label map to `size x size` (the only upsampling NAVE allows).
pub fn upsample_labels(labels: &[i64], h: usize, w: usize, size: usize) -> Vec<i64> {
    upsample_nearest(labels, h, w, size, size)
}

/// Nearest-neighbour resize of a `gh x gw` grid to `h x w`: the source index
/// is `floor(i * gh / h)`, as OpenCV's INTER_NEAREST takes it.
pub fn upsample_nearest(grid: &[i64], gh: usize, gw: usize, h: usize, w: usize) -> Vec<i64> {
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        let gy = (y * gh / h).min(gh - 1);
        for x in 0..w {
            out.push(grid[gy * gw + (x * gw / w).min(gw - 1)]);
        }
    }
    out
}

/// The image with each segment's colour blended over it (alpha 0.5) and the
/// segment borders drawn in white.
pub fn overlay(image: &RgbImage, labels: &[i64]) -> RgbImage {
    let (w, h) = image.dimensions();
    let mut out = image.clone();
    for y in 0..h {
        for x in 0..w {
            let l = labels[(y * w + x) as usize];
            let c = colour_of(l);
            let p = image.get_pixel(x, y).0;
            let border = (x + 1 < w && labels[(y * w + x + 1) as usize] != l)
                || (y + 1 < h && labels[((y + 1) * w + x) as usize] != l);
            let v = if border {
                [255, 255, 255]
            } else {
                [0, 1, 2].map(|i| ((p[i] as u16 + c[i] as u16) / 2) as u8)
            };
            out.put_pixel(x, y, Rgb(v));
        }
    }
    out
}

/// Each pixel takes the mean colour of the image over its segment.
pub fn average_colour(image: &RgbImage, labels: &[i64]) -> RgbImage {
    let (w, h) = image.dimensions();
    let k = labels.iter().copied().max().unwrap_or(0) as usize + 1;
    let mut sums = vec![[0u64; 3]; k];
    let mut counts = vec![0u64; k];
    for (i, p) in image.pixels().enumerate() {
        let l = labels[i] as usize;
        for (sum, &v) in sums[l].iter_mut().zip(&p.0) {
            *sum += v as u64;
        }
        counts[l] += 1;
    }
    let means: Vec<[u8; 3]> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &n)| {
            if n == 0 {
                [0; 3]
            } else {
                [0, 1, 2].map(|c| ((s[c] as f64 / n as f64).round()) as u8)
            }
        })
        .collect();
    RgbImage::from_fn(w, h, |x, y| {
        Rgb(means[labels[(y * w + x) as usize] as usize])
    })
}

/// Pixelwise mean of several images of the same size (paper Figure 4: the
/// average-colour map over repeated explanations).
pub fn mean_image(images: &[RgbImage]) -> Option<RgbImage> {
    let first = images.first()?;
    let (w, h) = first.dimensions();
    let mut acc = vec![0f64; (w * h * 3) as usize];
    for img in images {
        for (a, &v) in acc.iter_mut().zip(img.as_raw()) {
            *a += v as f64;
        }
    }
    let n = images.len() as f64;
    RgbImage::from_raw(w, h, acc.iter().map(|a| (a / n).round() as u8).collect())
}

/// A label map drawn in the palette: cluster k in colour k, one pixel per
/// grid cell (a page scales it up with `image-rendering: pixelated`).
pub fn label_picture(labels: &[i64], w: u32, h: u32) -> RgbImage {
    RgbImage::from_raw(w, h, labels.iter().flat_map(|&l| colour_of(l)).collect())
        .expect("label map size")
}

/// A rectangle outlined 2 px wide (its own border and one pixel outside),
/// clipped to the image: a box drawn on a picture.
pub fn outline(canvas: &mut RgbImage, (x, y): (i32, i32), (w, h): (u32, u32), rgb: [u8; 3]) {
    for d in 0..2 {
        let rect =
            imageproc::rect::Rect::at(x - d, y - d).of_size(w + 2 * d as u32, h + 2 * d as u32);
        imageproc::drawing::draw_hollow_rect_mut(canvas, rect, Rgb(rgb));
    }
}

/// Cluster indices as a grayscale PNG-ready image (value = index).
pub fn label_image(labels: &[i64], w: u32, h: u32) -> image::GrayImage {
    image::GrayImage::from_raw(
        w,
        h,
        labels.iter().map(|&l| l.clamp(0, 255) as u8).collect(),
    )
    .expect("label map size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_picture_draws_cluster_k_in_colour_k() {
        let pic = label_picture(&[0, 1, 2, 21], 2, 2);
        assert_eq!(pic.get_pixel(0, 0).0, PALETTE[0]);
        assert_eq!(pic.get_pixel(1, 0).0, PALETTE[1]);
        assert_eq!(pic.get_pixel(0, 1).0, PALETTE[2]);
        assert_eq!(
            pic.get_pixel(1, 1).0,
            PALETTE[1],
            "the palette repeats after 20"
        );
    }

    #[test]
    fn average_colour_on_a_constructed_image() {
        // Left half: pixels 10 and 30 (mean 20); right half: 100 everywhere.
        let img = RgbImage::from_fn(4, 2, |x, y| {
            if x < 2 {
                Rgb([if y == 0 { 10 } else { 30 }; 3])
            } else {
                Rgb([100, 0, 50])
            }
        });
        let labels = vec![0, 0, 1, 1, 0, 0, 1, 1];
        let avg = average_colour(&img, &labels);
        assert_eq!(avg.get_pixel(0, 0).0, [20, 20, 20]);
        assert_eq!(avg.get_pixel(1, 1).0, [20, 20, 20]);
        assert_eq!(avg.get_pixel(3, 1).0, [100, 0, 50]);
        // The mean over two explanations that split differently blurs where they disagree.
        let other = average_colour(&img, &[0, 0, 0, 0, 0, 0, 0, 0]);
        let m = mean_image(&[avg, other]).unwrap();
        // The whole-image mean is (60, 10, 35); halfway to (20, 20, 20): (40, 15, 27.5 -> 28).
        assert_eq!(m.get_pixel(0, 0).0, [40, 15, 28]);
    }

    #[test]
    fn nearest_upsampling_keeps_labels_exact() {
        let up = upsample_labels(&[0, 1, 2, 3], 2, 2, 4);
        assert_eq!(up, vec![0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]);
    }
}
