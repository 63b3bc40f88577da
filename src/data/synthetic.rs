//! The built-in dataset: chest-X-ray-like images in two classes, generated
//! from a seed (no download, same bytes on every machine).
//!
//! Each image has a torso, two dark lung fields with faint ribs, a brighter
//! mediastinum, low-frequency soft-tissue texture and pixel noise; anatomy
//! varies in position and size. The positive class (PNEUMONIA) carries one to
//! three soft opacities inside the lungs: a real signal that a small CNN can
//! learn, but a subtle one, so that a watermark is the easier shortcut.
use std::f32::consts::PI;
use std::path::Path;

use anyhow::Context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{Split, SplitData};

pub const CLASS_NAMES: [&str; 2] = ["NORMAL", "PNEUMONIA"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticSpec {
    /// Seed of the generator (independent of the training seed: all runs see the same data).
    pub seed: u64,
    /// Images in the train split.
    pub train: usize,
    /// Images in the test split.
    pub test: usize,
    /// Side in pixels when written by `nave-lab data synth` (experiments generate at their image_size).
    pub size: u32,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            seed: 0,
            train: 600,
            test: 200,
            size: 64,
        }
    }
}

impl SyntheticSpec {
    pub fn count(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train,
            Split::Test => self.test,
            Split::Val => 0,
        }
    }
}

/// Classes alternate (even index NORMAL, odd PNEUMONIA), so the split is balanced.
pub fn label_of(index: usize) -> i64 {
    (index % 2) as i64
}

pub fn count_per_class(spec: &SyntheticSpec, split: Split) -> Vec<usize> {
    let n = spec.count(split);
    vec![n.div_ceil(2), n / 2]
}

/// A seed that differs for every (dataset seed, split, index).
pub fn mix_seed(seed: u64, tag: u64, index: u64) -> u64 {
    // splitmix64 over the three values: consecutive inputs give unrelated streams.
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(tag.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(index.wrapping_mul(0x94D0_49BB_1331_11EB))
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn gaussian(rng: &mut ChaCha8Rng) -> f32 {
    // Box-Muller
    let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
    let u2: f32 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

/// Smooth inside-ness of an ellipse: 1 inside, 0 outside, soft edge of width `soft`.
fn ellipse(u: f32, v: f32, cx: f32, cy: f32, rx: f32, ry: f32, soft: f32) -> f32 {
    let d = (((u - cx) / rx).powi(2) + ((v - cy) / ry).powi(2)).sqrt();
    1.0 / (1.0 + ((d - 1.0) / soft).exp())
}

/// One grayscale image, `size` x `size`, values 0..=255.
pub fn render(seed: u64, split: Split, index: usize, size: u32) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(seed, split.seed_tag(), index as u64));
    let positive = label_of(index) == 1;
    let s = size as usize;
    let (jx, jy) = (rng.gen_range(-0.04..0.04f32), rng.gen_range(-0.04..0.04f32));
    let (torso_rx, torso_ry) = (rng.gen_range(0.38..0.45f32), rng.gen_range(0.46..0.54f32));
    let lung_dx = rng.gen_range(0.15..0.19f32);
    let (lung_rx, lung_ry) = (rng.gen_range(0.10..0.13f32), rng.gen_range(0.22..0.28f32));
    let lung_cy = 0.47 + jy;
    let brightness = rng.gen_range(0.85..1.1f32);
    // Soft-tissue texture: a few random low-frequency waves.
    let waves: Vec<(f32, f32, f32, f32)> = (0..4)
        .map(|_| {
            (
                rng.gen_range(2.0..6.0f32),
                rng.gen_range(2.0..6.0f32),
                rng.gen_range(0.0..2.0 * PI),
                rng.gen_range(0.01..0.03f32),
            )
        })
        .collect();
    let rib_phase = rng.gen_range(0.0..1.0f32);
    // Opacities (positive class only): soft blobs centred inside a lung.
    let mut blobs = Vec::new();
    if positive {
        for _ in 0..rng.gen_range(1..=3) {
            let side = if rng.gen_bool(0.5) { -1.0 } else { 1.0 };
            let a = rng.gen_range(0.0..2.0 * PI);
            let r = rng.gen_range(0.0..0.7f32).sqrt();
            let cx = 0.5 + jx + side * lung_dx + r * a.cos() * lung_rx * 0.8;
            let cy = lung_cy + r * a.sin() * lung_ry * 0.8;
            blobs.push((
                cx,
                cy,
                rng.gen_range(0.045..0.08f32),
                rng.gen_range(0.16..0.26f32),
            ));
        }
    }
    let mut out = vec![0u8; s * s];
    for y in 0..s {
        let v = (y as f32 + 0.5) / s as f32;
        for x in 0..s {
            let u = (x as f32 + 0.5) / s as f32;
            let torso = ellipse(u, v, 0.5 + jx, 0.56 + jy, torso_rx, torso_ry, 0.04);
            let lungs = ellipse(u, v, 0.5 + jx - lung_dx, lung_cy, lung_rx, lung_ry, 0.08).max(
                ellipse(u, v, 0.5 + jx + lung_dx, lung_cy, lung_rx, lung_ry, 0.08),
            );
            let spine = (-(((u - 0.5 - jx) / 0.035).powi(2))).exp() * torso;
            let ribs = 0.05
                * ((2.0 * PI * (v * 7.0 + 3.0 * (u - 0.5 - jx).powi(2) + rib_phase))
                    .sin()
                    .max(0.0));
            let mut value = 0.06 + 0.5 * torso - 0.3 * lungs + 0.12 * spine + ribs * lungs;
            for &(fx, fy, phase, amp) in &waves {
                value += amp * (2.0 * PI * (fx * u + fy * v) + phase).sin() * torso;
            }
            for &(cx, cy, sigma, amp) in &blobs {
                let d2 = (u - cx).powi(2) + (v - cy).powi(2);
                value += amp * (-d2 / (2.0 * sigma * sigma)).exp() * lungs;
            }
            value = value * brightness + 0.025 * gaussian(&mut rng);
            out[y * s + x] = (value.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    out
}

/// A split generated in memory at `image_size`.
pub fn generate(spec: &SyntheticSpec, split: Split, image_size: i64) -> SplitData {
    let n = spec.count(split);
    let size = image_size as u32;
    let pixels: Vec<Vec<u8>> = (0..n)
        .into_par_iter()
        .map(|i| render(spec.seed, split, i, size))
        .collect();
    let flat: Vec<u8> = pixels.concat();
    let images =
        super::to_rgb(Tensor::from_slice(&flat).view([n as i64, 1, image_size, image_size]));
    SplitData {
        split,
        images,
        labels: (0..n).map(label_of).collect(),
        class_names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
        skipped: vec![],
    }
}

/// Writes the set in the Chest-X-Ray folder layout (`out/{train,test}/{NORMAL,PNEUMONIA}/*.png`),
/// so that it goes through the same loader as the real data. The folder is
/// staged beside `out` and moved into place: a kill leaves no half-written set.
pub fn write_folder(spec: &SyntheticSpec, out: &Path) -> anyhow::Result<usize> {
    if out.exists() {
        anyhow::bail!(
            "{} already exists; choose a new folder or remove it first",
            out.display()
        );
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    // Built in a staging folder beside `out` (see `staging`); the files in
    // it need no atomic write of their own.
    let staged = crate::staging::StagedFolder::begin(out)?;
    let tmp = staged.dir().to_path_buf();
    let mut written = 0;
    for split in [Split::Train, Split::Test] {
        for class in CLASS_NAMES {
            let dir = tmp.join(split.as_str()).join(class);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let n = spec.count(split);
        (0..n)
            .into_par_iter()
            .try_for_each(|i| -> anyhow::Result<()> {
                let pixels = render(spec.seed, split, i, spec.size);
                let img = image::GrayImage::from_raw(spec.size, spec.size, pixels)
                    .expect("buffer matches size");
                let path = tmp
                    .join(split.as_str())
                    .join(CLASS_NAMES[label_of(i) as usize])
                    .join(format!("{i:05}.png"));
                img.save(&path)
                    .with_context(|| format!("writing {}", path.display()))
            })?;
        written += n;
    }
    staged.commit()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_pixels_other_seed_other_pixels() {
        assert_eq!(
            render(3, Split::Train, 5, 32),
            render(3, Split::Train, 5, 32)
        );
        assert_ne!(
            render(3, Split::Train, 5, 32),
            render(4, Split::Train, 5, 32)
        );
        assert_ne!(
            render(3, Split::Train, 5, 32),
            render(3, Split::Test, 5, 32)
        );
    }

    #[test]
    fn positive_images_are_brighter_in_the_lungs_on_average() {
        // The opacities add intensity inside the lung fields: averaged over many
        // images, the positive class is measurably brighter there.
        let lung_mean = |index: usize| {
            let img = render(0, Split::Train, index, 64);
            let mut sum = 0.0;
            for y in 20..40 {
                for x in (14..26).chain(38..50) {
                    sum += img[y * 64 + x] as f64;
                }
            }
            sum / (20.0 * 24.0)
        };
        let neg: f64 = (0..100).step_by(2).map(lung_mean).sum::<f64>() / 50.0;
        let pos: f64 = (1..100).step_by(2).map(lung_mean).sum::<f64>() / 50.0;
        assert!(pos > neg + 3.0, "positive {pos:.1} vs negative {neg:.1}");
    }

    #[test]
    fn generate_is_balanced_and_rgb() {
        let spec = SyntheticSpec {
            train: 10,
            test: 4,
            ..Default::default()
        };
        let data = generate(&spec, Split::Train, 32);
        assert_eq!(data.images.size(), vec![10, 3, 32, 32]);
        assert_eq!(data.count_per_class(), vec![5, 5]);
        assert_eq!(count_per_class(&spec, Split::Train), vec![5, 5]);
    }
}
