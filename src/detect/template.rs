//! Recurring structure: does a region's fine structure recur, anywhere, in
//! the other images of its class, and not in the images of the other classes?
//!
//! `recurrence` asks that of exact pixels, which a translucent artefact (a
//! ruler the anatomy shows through) or a black box on a radiograph's black
//! border never gives. Here the question is asked of the high-pass image
//! (grey level minus its local mean), by normalised cross-correlation: a
//! stamped object's edges and strokes correlate with themselves in every
//! image it is on, whatever shows through it and wherever it is, while
//! anatomy and opacities vary in shape from image to image and, where they
//! do recur (ribs, lung borders), recur in every class alike.
use tch::{Kind, Tensor};

use crate::data::PixelBox;

/// Side of the box filter whose mean is subtracted (the high pass keeps
/// edges and strokes finer than this, in pixels).
const BLUR: i64 = 5;
/// A window whose high-pass energy is below this (grey levels, RMS) is
/// flat: it correlates with nothing.
const FLAT_RMS: f64 = 1.0;

/// The grey levels (channel mean) `[B, 1, S, S]`, float, of uint8 images
/// `[B, 3, S, S]`.
pub fn grey(images: &Tensor) -> Tensor {
    images
        .to_kind(Kind::Float)
        .mean_dim([1i64].as_slice(), true, Kind::Float)
}

/// The high-pass grey images `[B, 1, S, S]` (float) of uint8 images `[B, 3, S, S]`.
pub fn high_pass(images: &Tensor) -> Tensor {
    let grey = grey(images);
    let local = grey.avg_pool2d(
        [BLUR, BLUR],
        [1, 1],
        [BLUR / 2, BLUR / 2],
        false,
        false,
        None::<i64>,
    );
    grey - local
}

/// Normalised cross-correlation of each template at every position of each
/// image: `templates` `[T, h, w]`, `images` `[N, 1, S, S]`, both high-pass;
/// returns `[N, T, S - h + 1, S - w + 1]` (float). A flat template or window
/// scores 0.
///
/// Computed through the Fourier transform, in float64: a direct correlation
/// costs `S^2 h w` per image and template, which at 224 px with a 56 px
/// window is 80 M multiply-adds and made the detector's template tests two
/// minutes a run; the transform costs `S^2 log S`. The window sums that
/// normalise it come from integral images. No padding is needed: a
/// circular correlation over the image's own size wraps only at positions
/// past `S - h`, which are cut off. Images go through in chunks that keep
/// the complex products near 64 MB.
fn correlation_maps(templates: &Tensor, images: &Tensor) -> Tensor {
    let (t, h, w) = templates.size3().expect("[T, h, w] templates");
    let (count, _, sh, sw) = images.size4().expect("[N, 1, S, S] images");
    if count == 0 {
        return Tensor::zeros(
            [0, t, sh - h + 1, sw - w + 1],
            (Kind::Float, images.device()),
        );
    }
    let n = (h * w) as f64;
    let templates = templates.to_device(images.device()).to_kind(Kind::Double);
    let centred = &templates - templates.mean_dim([1i64, 2].as_slice(), true, Kind::Double);
    let norm = centred
        .square()
        .sum_dim_intlist([1i64, 2].as_slice(), true, Kind::Double)
        .sqrt(); // [T, 1, 1]
    let flat_t = norm.lt(FLAT_RMS * n.sqrt()).view([1, t, 1, 1]);
    let unit = &centred / norm.clamp_min(1e-6);
    let spectrum = unit
        .constant_pad_nd([0, sw - w, 0, sh - h])
        .fft_rfft2(None::<&[i64]>, [-2i64, -1].as_slice(), "backward")
        .conj()
        .unsqueeze(0); // [1, T, S, S / 2 + 1]
    let per_image = t * sh * (sw / 2 + 1) * 16;
    let chunk = (64 * 1024 * 1024 / per_image).clamp(1, count);
    let mut out = Vec::new();
    let mut start = 0;
    while start < count {
        let len = chunk.min(count - start);
        let x = images.narrow(0, start, len).to_kind(Kind::Double); // [n, 1, S, S]
        let numerator = (x.fft_rfft2(None::<&[i64]>, [-2i64, -1].as_slice(), "backward")
            * &spectrum)
            .fft_irfft2(
                Some([sh, sw].as_slice()),
                [-2i64, -1].as_slice(),
                "backward",
            )
            .narrow(2, 0, sh - h + 1)
            .narrow(3, 0, sw - w + 1); // [n, T, H', W']
        let sum = window_sums(&x, h, w);
        let sum_sq = window_sums(&x.square(), h, w);
        let energy = (sum_sq - sum.square() / n).clamp_min(0.0).sqrt(); // [n, 1, H', W']
        let flat_x = energy.lt(FLAT_RMS * n.sqrt());
        out.push(
            (numerator / energy.clamp_min(1e-6))
                .masked_fill(&flat_x, 0.0)
                .masked_fill(&flat_t, 0.0)
                .to_kind(Kind::Float),
        );
        start += len;
    }
    Tensor::cat(&out, 0)
}

/// The sum of every `h` x `w` window of `x` (`[N, 1, S, S]`, float64) at
/// each valid position, `[N, 1, S - h + 1, S - w + 1]`, from its integral
/// image.
fn window_sums(x: &Tensor, h: i64, w: i64) -> Tensor {
    let (sh, sw) = (x.size()[2], x.size()[3]);
    let integral = x
        .constant_pad_nd([1, 0, 1, 0])
        .cumsum(2, Kind::Double)
        .cumsum(3, Kind::Double); // [N, 1, S + 1, S + 1]
    let (rows, cols) = (sh - h + 1, sw - w + 1);
    let corner = |y: i64, x: i64| integral.narrow(2, y, rows).narrow(3, x, cols);
    corner(h, w) - corner(0, w) - corner(h, 0) + corner(0, 0)
}

/// Best normalised cross-correlation of each template anywhere in each
/// image (see `correlation_maps`): `[T, N]`.
pub fn best_correlation(templates: &Tensor, images: &Tensor) -> Tensor {
    correlation_maps(templates, images)
        .flatten(2, -1)
        .amax([2i64].as_slice(), false)
        .transpose(0, 1)
}

/// Where in `image` (high-pass, `[1, S, S]`) any of the templates matches
/// best: the window it covers there, and its correlation.
pub fn best_match(templates: &Tensor, image: &Tensor) -> (PixelBox, f64) {
    best_matches(templates, &image.unsqueeze(0))[0]
}

/// [`best_match`] for every image of `images` (high-pass `[N, 1, S, S]`);
/// among equal correlations the first (template, row, column) wins.
pub fn best_matches(templates: &Tensor, images: &Tensor) -> Vec<(PixelBox, f64)> {
    let (_, h, w) = templates.size3().expect("[T, h, w] templates");
    let maps = correlation_maps(templates, images); // [N, T, H', W']
    let (positions, width) = (maps.size()[2] * maps.size()[3], maps.size()[3]);
    let flat = maps.flatten(1, -1); // [N, T * H' * W']
    let at = flat.argmax(1, true); // [N, 1]
    let best: Vec<f64> = Vec::try_from(
        flat.gather(1, &at, false)
            .flatten(0, -1)
            .to_kind(Kind::Double),
    )
    .expect("float scores");
    let at: Vec<i64> = Vec::try_from(at.flatten(0, -1)).expect("int64 positions");
    at.iter()
        .zip(best)
        .map(|(&at, r)| {
            let position = at % positions;
            let window = PixelBox {
                x: position % width,
                y: position / width,
                w,
                h,
            };
            (window, r)
        })
        .collect()
}

/// What in a template recurs: its per-pixel agreement with its best match in
/// each of `images` (the terms of the correlation, averaged over the
/// images), `[h, w]`. The reproduced object's edges and strokes agree in
/// every match; whatever is around it agrees in none, and averages out.
pub fn agreement(template: &Tensor, images: &Tensor) -> Tensor {
    let (h, w) = (template.size()[0], template.size()[1]);
    let unit = |x: &Tensor| {
        let c = x - x.mean(Kind::Float);
        let norm = c.square().sum(Kind::Float).sqrt().clamp_min(1e-6);
        c / norm
    };
    let t = unit(template);
    let maps = correlation_maps(&template.unsqueeze(0), images); // [N, 1, H', W']
    let width = maps.size()[3];
    let best: Vec<i64> =
        Vec::try_from(maps.flatten(1, -1).argmax(1, false)).expect("int64 positions");
    let terms: Vec<Tensor> = best
        .iter()
        .enumerate()
        .map(|(j, &at)| {
            let window =
                images
                    .get(j as i64)
                    .get(0)
                    .narrow(0, at / width, h)
                    .narrow(1, at % width, w);
            &t * unit(&window)
        })
        .collect();
    Tensor::stack(&terms, 0).mean_dim([0i64].as_slice(), false, Kind::Float)
}

/// The box, inside a template, of the part that recurs: pixels whose
/// agreement (smoothed over 3 x 3) is at least a quarter of the highest,
/// less the `BLUR / 2` pixels by which the high pass spreads an edge.
pub fn recurring_box(agreement: &Tensor) -> Option<PixelBox> {
    let (h, w) = (agreement.size()[0], agreement.size()[1]);
    let smooth = agreement
        .view([1, 1, h, w])
        .avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None::<i64>)
        .view([h, w]);
    let peak = smooth.max().double_value(&[]);
    if peak <= 0.0 {
        return None;
    }
    let on: Vec<bool> = Vec::try_from(smooth.ge(peak / 4.0).flatten(0, -1)).expect("bool mask");
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, -1, -1);
    for (i, _) in on.iter().enumerate().filter(|(_, &v)| v) {
        let (y, x) = (i as i64 / w, i as i64 % w);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    let spread = BLUR / 2;
    let (x0, y0) = ((x0 + spread).min(x1), (y0 + spread).min(y1));
    let (x1, y1) = ((x1 - spread).max(x0), (y1 - spread).max(y0));
    Some(PixelBox {
        x: x0,
        y: y0,
        w: x1 - x0 + 1,
        h: y1 - y0 + 1,
    })
}

/// The high-pass window of image `i` under `b`.
pub fn crop(high: &Tensor, i: usize, b: &PixelBox) -> Tensor {
    high.get(i as i64)
        .get(0)
        .narrow(0, b.y, b.h)
        .narrow(1, b.x, b.w)
}

/// The box of side `side` (clipped to the image) centred on `b`'s centre.
pub fn centred_window(b: &PixelBox, side: i64, size: i64) -> PixelBox {
    let side = side.min(size);
    let (cx, cy) = (b.x + b.w / 2, b.y + b.h / 2);
    PixelBox {
        x: (cx - side / 2).clamp(0, size - side),
        y: (cy - side / 2).clamp(0, size - side),
        w: side,
        h: side,
    }
}

/// How much the templates recur in their class beyond the other classes:
/// the mean best correlation of each template with the `within` images (of
/// its class, never its own image), and that with the `other` images.
pub fn recurrence_gap(templates: &Tensor, within: &Tensor, other: &Tensor) -> (f64, f64) {
    let w = best_correlation(templates, within)
        .mean(Kind::Float)
        .double_value(&[]);
    let o = best_correlation(templates, other)
        .mean(Kind::Float)
        .double_value(&[]);
    (w, o)
}

/// Each image's best correlation with `template` (`[1, h, w]`) anywhere in
/// it (see `best_correlation`), in the order of `images`.
pub fn best_correlations(template: &Tensor, images: &Tensor) -> Vec<f64> {
    if images.size()[0] == 0 {
        return Vec::new();
    }
    Vec::try_from(
        best_correlation(template, images)
            .amax([0i64].as_slice(), false)
            .to_kind(Kind::Double),
    )
    .expect("double correlations")
}

/// How well a template tells the `within` images from the `other` images by
/// their best correlations with it (`best_correlations`): the AUROC (ties
/// count half), 0.5 when either set is empty. Rank-based, so it holds where
/// a varied object's copies correlate with it only moderately, as long as
/// the other images correlate less.
pub fn separation(within: &[f64], other: &[f64]) -> f64 {
    crate::detect::evaluate::auroc(within, other).unwrap_or(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn noise(seed: i64, n: i64, size: i64) -> Tensor {
        tch::manual_seed(seed);
        (Tensor::rand([n, 3, size, size], (Kind::Float, Device::Cpu)) * 40.0 + 100.0)
            .to_kind(Kind::Uint8)
    }

    /// A 10 x 10 ruler: ticks every other column, drawn at (y, x) with `opacity`.
    fn ruler(images: &Tensor, i: i64, y: i64, x: i64, opacity: f64) {
        let mut region = images.get(i).narrow(1, y, 10).narrow(2, x, 10);
        let pattern = Tensor::zeros([10, 10], (Kind::Float, Device::Cpu));
        for c in (0..10).step_by(2) {
            let _ = pattern.narrow(1, c, 1).narrow(0, 0, 6).fill_(255.0);
        }
        let _ = pattern.narrow(0, 8, 2).fill_(255.0);
        let blended = region.to_kind(Kind::Float) * (1.0 - opacity) + pattern * opacity;
        region.copy_(&blended.round().to_kind(Kind::Uint8));
    }

    /// The direct correlation the transform replaces: every window's
    /// normalised correlation by convolution, in float32.
    fn direct_correlation_maps(templates: &Tensor, images: &Tensor) -> Tensor {
        let (t, h, w) = templates.size3().unwrap();
        let n = (h * w) as f64;
        let centred = templates - templates.mean_dim([1i64, 2].as_slice(), true, Kind::Float);
        let norm = centred
            .square()
            .sum_dim_intlist([1i64, 2].as_slice(), true, Kind::Float)
            .sqrt();
        let flat_t = norm.lt(FLAT_RMS * n.sqrt()).view([1, t, 1, 1]);
        let unit = (&centred / norm.clamp_min(1e-6)).view([t, 1, h, w]);
        let numerator = images.conv2d(&unit, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        let ones = Tensor::ones([1, 1, h, w], (Kind::Float, images.device()));
        let sum = images.conv2d(&ones, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        let sum_sq = images
            .square()
            .conv2d(&ones, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        let energy = (sum_sq - sum.square() / n).clamp_min(0.0).sqrt();
        let flat_x = energy.lt(FLAT_RMS * n.sqrt());
        (numerator / energy.clamp_min(1e-6))
            .masked_fill(&flat_x, 0.0)
            .masked_fill(&flat_t, 0.0)
    }

    #[test]
    fn the_transform_gives_the_direct_correlation() {
        // Noise with a flat square (flat windows score 0) and a stamped
        // ruler; templates of several shapes, one of them flat.
        let images = noise(3, 5, 48);
        let _ = images.narrow(2, 30, 14).narrow(3, 2, 14).fill_(90);
        ruler(&images, 1, 5, 20, 0.8);
        let high = high_pass(&images);
        for (h, w) in [(10, 10), (7, 13), (48, 48), (1, 1)] {
            let templates = Tensor::stack(
                &[
                    crop(
                        &high,
                        1,
                        &PixelBox {
                            x: 20.min(48 - w),
                            y: 5.min(48 - h),
                            w,
                            h,
                        },
                    ),
                    crop(&high, 2, &PixelBox { x: 0, y: 0, w, h }),
                    Tensor::zeros([h, w], (Kind::Float, Device::Cpu)),
                ],
                0,
            );
            let fast = correlation_maps(&templates, &high);
            let direct = direct_correlation_maps(&templates, &high);
            assert_eq!(fast.size(), direct.size(), "{h} x {w}");
            let diff = (&fast - &direct).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{h} x {w}: largest difference {diff}");
            // The flat square's windows and the flat template score 0.
            assert_eq!(fast.select(1, 2).abs().max().double_value(&[]), 0.0);
        }
        // Many images go through in chunks with the same result.
        let many = high.repeat([40, 1, 1, 1]);
        let t = crop(
            &high,
            1,
            &PixelBox {
                x: 20,
                y: 5,
                w: 10,
                h: 10,
            },
        )
        .unsqueeze(0);
        let maps = correlation_maps(&t, &many);
        assert_eq!(maps.size()[0], 200);
        let diff = (&maps.narrow(0, 195, 5) - correlation_maps(&t, &high))
            .abs()
            .max()
            .double_value(&[]);
        assert_eq!(diff, 0.0);
        // No images: no maps.
        assert_eq!(correlation_maps(&t, &high.narrow(0, 0, 0)).size()[0], 0);
    }

    #[test]
    fn a_translucent_stamp_recurs_in_its_class_and_noise_does_not() {
        let images = noise(1, 12, 40);
        for i in 0..6 {
            ruler(&images, i, 3 + i * 4, 25 - i * 3, 0.7);
        }
        let high = high_pass(&images);
        let at = |i: i64| PixelBox {
            x: 25 - i * 3,
            y: 3 + i * 4,
            w: 10,
            h: 10,
        };
        let templates = Tensor::stack(&[crop(&high, 0, &at(0)), crop(&high, 1, &at(1))], 0);
        let (within, other) =
            recurrence_gap(&templates, &high.narrow(0, 2, 4), &high.narrow(0, 6, 6));
        assert!(within > 0.8, "the ruler recurs: {within}");
        assert!(other < 0.7, "noise does not hold it: {other}");
        assert!(within - other > 0.2);
        // A window of plain noise recurs nowhere.
        let plain = Tensor::stack(&[crop(&high, 8, &at(0))], 0);
        let (w, o) = recurrence_gap(&plain, &high.narrow(0, 2, 4), &high.narrow(0, 6, 6));
        assert!((w - o).abs() < 0.1, "noise: {w} vs {o}");
        // Found again where it is, in an image it was not taken from.
        let (window, r) = best_match(&templates.narrow(0, 0, 1), &high.get(4));
        assert_eq!((window.x, window.y), (at(4).x, at(4).y));
        assert!(r > 0.8);
        // What recurs in a window wider than the ruler is the ruler.
        let wide = crop(
            &high,
            0,
            &PixelBox {
                x: 20,
                y: 0,
                w: 18,
                h: 18,
            },
        ); // the ruler at (25, 3)
        let found = recurring_box(&agreement(&wide, &high.narrow(0, 1, 5))).expect("a box");
        assert!(
            (found.x - 5).abs() <= 1 && (found.y - 3).abs() <= 1,
            "{found:?}"
        );
        assert!(
            (found.w - 10).abs() <= 2 && (found.h - 10).abs() <= 2,
            "{found:?}"
        );
        // A flat template scores 0.
        let flat = Tensor::zeros([1, 6, 6], (Kind::Float, Device::Cpu));
        assert_eq!(
            best_correlation(&flat, &high)
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
    }

    #[test]
    fn separation_ranks_each_image_by_its_best_match() {
        // Rulers drawn at three opacities on images 0-5; plain noise on 6-11.
        let images = noise(2, 12, 40);
        for i in 0..6 {
            ruler(
                &images,
                i,
                3 + i * 4,
                25 - i * 3,
                [0.4, 0.6, 0.9][i as usize % 3],
            );
        }
        let high = high_pass(&images);
        let template = crop(
            &high,
            0,
            &PixelBox {
                x: 25,
                y: 3,
                w: 10,
                h: 10,
            },
        )
        .unsqueeze(0);
        let (carriers, plain) = (high.narrow(0, 1, 5), high.narrow(0, 6, 6));
        let best = |images: &Tensor| best_correlations(&template, images);
        // Every carrier matches better than every plain image.
        assert_eq!(separation(&best(&carriers), &best(&plain)), 1.0);
        assert_eq!(separation(&best(&plain), &best(&carriers)), 0.0);
        // Plain images against plain images: no better than chance.
        let s = separation(&best(&plain.narrow(0, 0, 3)), &best(&plain.narrow(0, 3, 3)));
        assert!(s > 0.0 && s < 1.0, "{s}");
        // Nothing to rank against: chance.
        assert_eq!(
            separation(&best(&carriers), &best(&plain.narrow(0, 0, 0))),
            0.5
        );
    }

    #[test]
    fn windows_are_centred_and_clipped() {
        let b = PixelBox {
            x: 30,
            y: 2,
            w: 4,
            h: 4,
        };
        assert_eq!(
            centred_window(&b, 10, 40),
            PixelBox {
                x: 27,
                y: 0,
                w: 10,
                h: 10
            }
        );
        assert_eq!(
            centred_window(&b, 60, 40),
            PixelBox {
                x: 0,
                y: 0,
                w: 40,
                h: 40
            }
        );
    }
}
