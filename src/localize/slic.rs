//! SLIC superpixels (Achanta et al. 2012), the paper's model-agnostic
//! reference row: k-means in (CIELAB colour, position) space, restricted to a
//! 2S x 2S window around each centre, on a regular grid of step S.
use image::RgbImage;

fn srgb_to_lab(p: [u8; 3]) -> [f64; 3] {
    let lin = |c: u8| {
        let c = c as f64 / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let (r, g, b) = (lin(p[0]), lin(p[1]), lin(p[2]));
    // D65 white
    let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
    let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
    let f = |t: f64| {
        if t > 0.008856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// Labels (row-major, one per pixel) of about `n_segments` superpixels.
pub fn slic(img: &RgbImage, n_segments: usize, compactness: f64, iterations: usize) -> Vec<i64> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let lab: Vec<[f64; 3]> = img.pixels().map(|p| srgb_to_lab(p.0)).collect();
    let step = ((w * h) as f64 / n_segments.max(1) as f64).sqrt().max(1.0);
    // Centres: [l, a, b, y, x]
    let mut centres = Vec::new();
    let mut y = step / 2.0;
    while y < h as f64 {
        let mut x = step / 2.0;
        while x < w as f64 {
            let (yi, xi) = (y as usize, x as usize);
            let c = lab[yi * w + xi];
            centres.push([c[0], c[1], c[2], y, x]);
            x += step;
        }
        y += step;
    }
    let mut labels = vec![0i64; w * h];
    let mut dist = vec![f64::INFINITY; w * h];
    let spatial = (compactness / step).powi(2);
    for _ in 0..iterations {
        dist.iter_mut().for_each(|d| *d = f64::INFINITY);
        for (k, c) in centres.iter().enumerate() {
            let (y0, y1) = (
                (c[3] - step).max(0.0) as usize,
                ((c[3] + step) as usize).min(h - 1),
            );
            let (x0, x1) = (
                (c[4] - step).max(0.0) as usize,
                ((c[4] + step) as usize).min(w - 1),
            );
            for yy in y0..=y1 {
                for xx in x0..=x1 {
                    let i = yy * w + xx;
                    let p = lab[i];
                    let dc = (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) + (p[2] - c[2]).powi(2);
                    let ds = (yy as f64 - c[3]).powi(2) + (xx as f64 - c[4]).powi(2);
                    let d = dc + ds * spatial;
                    if d < dist[i] {
                        dist[i] = d;
                        labels[i] = k as i64;
                    }
                }
            }
        }
        let mut sums = vec![[0f64; 6]; centres.len()];
        for (i, &l) in labels.iter().enumerate() {
            let s = &mut sums[l as usize];
            let p = lab[i];
            s[0] += p[0];
            s[1] += p[1];
            s[2] += p[2];
            s[3] += (i / w) as f64;
            s[4] += (i % w) as f64;
            s[5] += 1.0;
        }
        for (c, s) in centres.iter_mut().zip(&sums) {
            if s[5] > 0.0 {
                *c = [
                    s[0] / s[5],
                    s[1] / s[5],
                    s[2] / s[5],
                    s[3] / s[5],
                    s[4] / s[5],
                ];
            }
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_a_red_square_from_a_blue_background() {
        let img = RgbImage::from_fn(40, 40, |x, y| {
            if (10..30).contains(&x) && (10..30).contains(&y) {
                image::Rgb([220, 20, 20])
            } else {
                image::Rgb([20, 20, 220])
            }
        });
        let labels = slic(&img, 16, 10.0, 10);
        // No superpixel mixes the two colours.
        let inside = |i: usize| (10..30).contains(&(i % 40)) && (10..30).contains(&(i / 40));
        let mut kind = std::collections::HashMap::new();
        for (i, &l) in labels.iter().enumerate() {
            let e = kind.entry(l).or_insert(inside(i));
            assert_eq!(
                *e,
                inside(i),
                "superpixel {l} crosses the square's edge at pixel {i}"
            );
        }
        assert!(kind.len() >= 4);
    }
}
