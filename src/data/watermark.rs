//! The injected shortcut (paper section 4.5.3): a small filled square at a
//! random position, stamped on the raw images of one class before any
//! augmentation, so that it is part of the data as in the real datasets.
//!
//! The box of image `i` is a pure function of (seed, split, i): the clean and
//! the watermarked twin of a probe image share it, and the audit knows where
//! the watermark is without reading pixels.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::synthetic::mix_seed;
use super::Split;

/// What the watermark looks like and which images get it (`watermark:` in the experiment YAML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatermarkSpec {
    /// RGB colour of the square.
    pub colour: [u8; 3],
    /// Side of the square as a fraction of the image side.
    pub size: f64,
    /// Probability that a training image of the target class is stamped.
    pub p: f64,
    /// Class that carries the watermark in training; default the first class
    /// (the negative class, NORMAL, in the Chest-X-Ray layout).
    pub target_class: Option<String>,
}

impl Default for WatermarkSpec {
    fn default() -> Self {
        // The paper watermarks every negative image with a small black box.
        Self {
            colour: [0, 0, 0],
            size: 0.12,
            p: 1.0,
            target_class: None,
        }
    }
}

impl WatermarkSpec {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.size > 0.0 && self.size < 1.0) {
            return Err(format!(
                "watermark.size must be in (0, 1) (a fraction of the image side), got {}",
                self.size
            ));
        }
        if !(0.0..=1.0).contains(&self.p) {
            return Err(format!("watermark.p must be in [0, 1], got {}", self.p));
        }
        Ok(())
    }

    /// Index of the target class among `class_names`.
    pub fn target_index(&self, class_names: &[String]) -> Result<i64, String> {
        match &self.target_class {
            None => Ok(0),
            Some(name) => class_names
                .iter()
                .position(|c| c == name)
                .map(|i| i as i64)
                .ok_or_else(|| {
                    format!(
                        "watermark.target_class '{name}' is not a class of the dataset ({})",
                        class_names.join(", ")
                    )
                }),
        }
    }

    pub fn side_pixels(&self, image_size: i64) -> i64 {
        ((self.size * image_size as f64).round() as i64).clamp(1, image_size)
    }
}

/// A watermark square in pixel coordinates of the cached image (top-left corner and side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WmBox {
    pub x: i64,
    pub y: i64,
    pub side: i64,
}

impl WmBox {
    /// True when pixel (px, py) lies inside the box.
    pub fn contains(&self, px: i64, py: i64) -> bool {
        px >= self.x && px < self.x + self.side && py >= self.y && py < self.y + self.side
    }
}

/// Which images of an evaluation split carry the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// No image is stamped.
    Clean,
    /// Every image of the training target class is stamped.
    AsTrain,
    /// Every image of the other classes is stamped: a model that learned the
    /// shortcut now reads them as the target class.
    Flipped,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Clean, Variant::AsTrain, Variant::Flipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Clean => "clean",
            Variant::AsTrain => "as-train",
            Variant::Flipped => "flipped",
        }
    }
}

/// The box image `index` of `split` gets when it is stamped. Uniform over every
/// position that keeps the square fully inside the image.
pub fn box_for(
    spec: &WatermarkSpec,
    seed: u64,
    split: Split,
    index: usize,
    image_size: i64,
) -> WmBox {
    let side = spec.side_pixels(image_size);
    // Tag 0x57 ("W") keeps this stream apart from the synthetic generator's.
    let mut rng =
        ChaCha8Rng::seed_from_u64(mix_seed(seed, 0x57_00 + split.seed_tag(), index as u64));
    let max = image_size - side;
    WmBox {
        x: rng.gen_range(0..=max),
        y: rng.gen_range(0..=max),
        side,
    }
}

/// Whether training image `index` of the target class is stamped (probability p).
fn stamped_in_training(spec: &WatermarkSpec, seed: u64, index: usize) -> bool {
    if spec.p >= 1.0 {
        return true;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(seed, 0x50_00, index as u64));
    rng.gen_bool(spec.p)
}

/// The box of every image of a split (None: not stamped). Training images of
/// the target class are stamped with probability p; evaluation variants stamp
/// with probability 1 so that each measures one thing.
pub fn plan(
    spec: &WatermarkSpec,
    seed: u64,
    split: Split,
    labels: &[i64],
    target: i64,
    image_size: i64,
    variant: Variant,
) -> Vec<Option<WmBox>> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &label)| {
            let stamp = match (split, variant) {
                (_, Variant::Clean) => false,
                (Split::Train, Variant::AsTrain) => {
                    label == target && stamped_in_training(spec, seed, i)
                }
                (_, Variant::AsTrain) => label == target,
                (_, Variant::Flipped) => label != target,
            };
            stamp.then(|| box_for(spec, seed, split, i, image_size))
        })
        .collect()
}

/// Stamps the boxes onto `[N, 3, S, S]` uint8 images, returning a new tensor.
pub fn stamp(images: &Tensor, boxes: &[Option<WmBox>], colour: [u8; 3]) -> Tensor {
    let out = images.copy();
    for (i, b) in boxes.iter().enumerate() {
        let Some(b) = b else { continue };
        for (c, &value) in colour.iter().enumerate() {
            let _ = out
                .get(i as i64)
                .get(c as i64)
                .narrow(0, b.y, b.side)
                .narrow(1, b.x, b.side)
                .fill_(value as i64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WatermarkSpec {
        WatermarkSpec {
            colour: [255, 0, 10],
            size: 0.25,
            p: 1.0,
            target_class: None,
        }
    }

    #[test]
    fn positions_repeat_with_the_seed_and_change_with_it() {
        let a: Vec<WmBox> = (0..20)
            .map(|i| box_for(&spec(), 7, Split::Train, i, 32))
            .collect();
        let b: Vec<WmBox> = (0..20)
            .map(|i| box_for(&spec(), 7, Split::Train, i, 32))
            .collect();
        let c: Vec<WmBox> = (0..20)
            .map(|i| box_for(&spec(), 8, Split::Train, i, 32))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Positions vary between images, not one fixed spot.
        assert!(
            a.iter()
                .map(|b| (b.x, b.y))
                .collect::<std::collections::HashSet<_>>()
                .len()
                > 10
        );
    }

    #[test]
    fn every_box_lies_inside_the_image_and_reaches_the_edges() {
        let mut touches_right = false;
        for i in 0..2000 {
            let b = box_for(&spec(), 1, Split::Test, i, 32);
            assert_eq!(b.side, 8);
            assert!(
                b.x >= 0 && b.y >= 0 && b.x + b.side <= 32 && b.y + b.side <= 32,
                "{b:?}"
            );
            touches_right |= b.x + b.side == 32;
        }
        assert!(touches_right, "the last valid column is never drawn");
    }

    #[test]
    fn recorded_box_matches_the_stamped_pixels() {
        let images = Tensor::full([4, 3, 32, 32], 128, (tch::Kind::Uint8, tch::Device::Cpu));
        let labels = [0, 1, 0, 1];
        let boxes = plan(&spec(), 3, Split::Test, &labels, 0, 32, Variant::AsTrain);
        let out = stamp(&images, &boxes, spec().colour);
        for (i, b) in boxes.iter().enumerate() {
            for y in 0..32 {
                for x in 0..32 {
                    let px: Vec<i64> = (0..3)
                        .map(|c| out.int64_value(&[i as i64, c, y, x]))
                        .collect();
                    let inside = b.is_some_and(|b| b.contains(x, y));
                    let expected = if inside {
                        vec![255, 0, 10]
                    } else {
                        vec![128, 128, 128]
                    };
                    assert_eq!(px, expected, "image {i} pixel ({x},{y})");
                }
            }
        }
        // The input was not modified.
        assert_eq!(images.int64_value(&[0, 0, 0, 0]), 128);
    }

    #[test]
    fn variants_choose_the_right_class() {
        let labels = [0, 1, 1, 0, 1];
        let as_train = plan(&spec(), 0, Split::Test, &labels, 0, 32, Variant::AsTrain);
        let flipped = plan(&spec(), 0, Split::Test, &labels, 0, 32, Variant::Flipped);
        let clean = plan(&spec(), 0, Split::Test, &labels, 0, 32, Variant::Clean);
        assert_eq!(
            as_train.iter().map(Option::is_some).collect::<Vec<_>>(),
            [true, false, false, true, false]
        );
        assert_eq!(
            flipped.iter().map(Option::is_some).collect::<Vec<_>>(),
            [false, true, true, false, true]
        );
        assert!(clean.iter().all(Option::is_none));
        // A stamped image gets the same box in every variant (the twins share it).
        assert_eq!(as_train[0], Some(box_for(&spec(), 0, Split::Test, 0, 32)));
        assert_eq!(flipped[1], Some(box_for(&spec(), 0, Split::Test, 1, 32)));
    }

    #[test]
    fn training_probability_is_respected() {
        let labels = vec![0i64; 4000];
        let half = WatermarkSpec { p: 0.5, ..spec() };
        let n = plan(&half, 0, Split::Train, &labels, 0, 32, Variant::AsTrain)
            .iter()
            .filter(|b| b.is_some())
            .count();
        assert!(
            (1800..2200).contains(&n),
            "{n} of 4000 stamped with p = 0.5"
        );
        assert!(half.target_index(&["A".into(), "B".into()]).is_ok());
        let named = WatermarkSpec {
            target_class: Some("B".into()),
            ..spec()
        };
        assert_eq!(named.target_index(&["A".into(), "B".into()]), Ok(1));
        let wrong = WatermarkSpec {
            target_class: Some("C".into()),
            ..spec()
        };
        assert!(wrong
            .target_index(&["A".into(), "B".into()])
            .unwrap_err()
            .contains("'C'"));
    }
}
