//! `nave-lab data show`: a PNG grid of samples as the model sees them.
use std::path::Path;

use tch::{Kind, Tensor};

use super::loader::to_unit;
use super::transforms::{AugmentSpec, Augmenter};

/// Lays out rows of `[N, 3, S, S]` float images in [0, 1] as one RGB picture,
/// each image scaled up by `zoom` (nearest neighbour) with a 2-pixel gap.
pub fn grid_image(rows: &[Tensor], zoom: i64) -> image::RgbImage {
    let n = rows.iter().map(|r| r.size()[0]).max().unwrap_or(0);
    let s = rows.first().map(|r| r.size()[2]).unwrap_or(0) * zoom;
    let gap = 2;
    let width = (n * (s + gap) + gap) as u32;
    let height = (rows.len() as i64 * (s + gap) + gap) as u32;
    let mut out = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        let row = (row.to_device(tch::Device::Cpu).to_kind(Kind::Float) * 255.0)
            .round()
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8);
        let row = if zoom > 1 {
            row.repeat_interleave_self_int(zoom, 2, None)
                .repeat_interleave_self_int(zoom, 3, None)
        } else {
            row
        };
        for i in 0..row.size()[0] {
            let hwc = row.get(i).permute([1, 2, 0]).contiguous();
            let bytes: Vec<u8> = Vec::try_from(hwc.flatten(0, -1)).expect("uint8 image");
            let tile = image::RgbImage::from_raw(s as u32, s as u32, bytes).expect("tile size");
            let x = gap + i * (s + gap);
            let y = gap + r as i64 * (s + gap);
            image::imageops::replace(&mut out, &tile, x, y);
        }
    }
    out
}

/// Writes three rows: the clean images, the watermarked ones and the
/// watermarked ones augmented.
pub fn write_show(
    clean: &Tensor,
    watermarked: &Tensor,
    augment: &AugmentSpec,
    seed: u64,
    out: &Path,
) -> anyhow::Result<()> {
    let clean = to_unit(clean);
    let marked = to_unit(watermarked);
    let augmented = Augmenter::new(augment.clone(), seed).apply(&marked);
    let zoom = (192 / clean.size()[2]).clamp(1, 4);
    let img = grid_image(&[clean, marked, augmented], zoom);
    crate::io::write_atomic_with(out, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", tmp.display()))
    })
}

/// `count` indices out of `len`, shuffled by `seed` (at least one).
pub fn sample_order(len: usize, count: usize, seed: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    order.truncate(count.max(1));
    order
}

/// The images at `order` and the same images stamped with `artefact` where
/// it would land on each (every image stamped: as-train for one class and
/// flipped for the others is the same picture).
pub fn stamped_sample(
    images: &Tensor,
    artefact: &super::watermark::Artefact,
    order: &[usize],
    seed: u64,
    split: super::Split,
) -> (Tensor, Tensor) {
    let clean = images.index_select(0, &super::index_tensor(order));
    let boxes: Vec<_> = order
        .iter()
        .map(|&i| Some(artefact.placement_for(seed, split, i)))
        .collect();
    let marked = artefact.stamp(&clean, &boxes);
    (clean, marked)
}
