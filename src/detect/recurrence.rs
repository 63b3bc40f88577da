//! Reproduced pixels: where an image carries a small pattern that recurs,
//! pixel for pixel, in the other images of its class and not in the images of
//! the other classes.
//!
//! A stamped artefact (a box, a marker letter, a ruler) is the same pixels in
//! every image it is on; anatomy and pathology never are, because every image
//! has its own shape, position and noise. So the share of a region's pixels
//! that belong to class-specific repeated patches tells a reproduced object
//! from tissue, whatever its shape or colour, without knowing where it is.
//! The patches are 3 x 3 grey levels quantised to 32 levels: small enough
//! that a thin stroke (a marker letter) holds whole patches, coarse enough
//! that an artefact resampled onto images repeats exactly, fine enough that
//! the pixel noise of tissue does not.
use std::collections::{HashMap, HashSet};

use tch::{Kind, Tensor};

/// Side of a patch, in pixels.
const PATCH: usize = 3;
/// Grey levels are divided by this before hashing (256 / 8 = 32 levels).
const QUANTUM: u8 = 8;
/// A patch counts as reproduced when at least this share of the class's
/// images hold it (a recurring object, not a coincidence)...
const MIN_PRESENCE: f32 = 0.25;

/// Per class, the share of that class's images that contain each patch.
pub struct Recurrence {
    size: usize,
    /// `presence[c][patch]`: share of class c's images containing the patch.
    presence: Vec<HashMap<u128, f32>>,
    /// Images per class.
    members: Vec<u32>,
}

/// Grey level (channel mean) of every pixel of every image, row-major per image.
pub fn grey_levels(images: &Tensor) -> Vec<Vec<u8>> {
    let grey = images
        .to_kind(Kind::Float)
        .mean_dim([1i64].as_slice(), false, Kind::Float)
        .round()
        .to_kind(Kind::Uint8); // [B, S, S]
    (0..grey.size()[0])
        .map(|i| Vec::try_from(grey.get(i).flatten(0, -1)).expect("uint8 grey"))
        .collect()
}

/// The quantised patch whose top-left pixel is (y, x), packed into 128 bits.
fn patch_key(grey: &[u8], size: usize, y: usize, x: usize) -> u128 {
    let mut key = 0u128;
    for dy in 0..PATCH {
        for dx in 0..PATCH {
            key = (key << 8) | (grey[(y + dy) * size + x + dx] / QUANTUM) as u128;
        }
    }
    key
}

/// Every distinct patch of one image.
fn patches(grey: &[u8], size: usize) -> HashSet<u128> {
    let last = size.saturating_sub(PATCH - 1);
    (0..last)
        .flat_map(|y| (0..last).map(move |x| (y, x)))
        .map(|(y, x)| patch_key(grey, size, y, x))
        .collect()
}

impl Recurrence {
    /// Count the patches of `grey` images (square, `size` px) of classes `class_of`.
    pub fn new(grey: &[Vec<u8>], class_of: &[usize], classes: usize) -> Self {
        let size = (grey.first().map_or(0, Vec::len) as f64).sqrt() as usize;
        let mut counts: Vec<HashMap<u128, u32>> = vec![HashMap::new(); classes];
        let mut members = vec![0u32; classes];
        for (image, &class) in grey.iter().zip(class_of) {
            members[class] += 1;
            for key in patches(image, size) {
                *counts[class].entry(key).or_default() += 1;
            }
        }
        let presence = counts
            .into_iter()
            .zip(members.iter())
            .map(|(map, &n)| {
                map.into_iter()
                    .map(|(k, c)| (k, c as f32 / n.max(1) as f32))
                    .collect()
            })
            .collect();
        Self {
            size,
            presence,
            members,
        }
    }

    /// How reproduced each pixel is for `class`: the share of `class`'s
    /// images holding its patch, where that patch is reproduced (see
    /// `MIN_PRESENCE`), else 0; the best over the patches covering the pixel.
    /// A patch that one or two images have is not evidence of reproduction
    /// (the image itself may be one of them): at least three must hold it.
    pub fn map(&self, grey: &[u8], class: usize) -> Vec<f32> {
        let size = self.size;
        let mut out = vec![0f32; size * size];
        let last = size.saturating_sub(PATCH - 1);
        let floor = 3.0 / self.members[class].max(1) as f32;
        for y in 0..last {
            for x in 0..last {
                let key = patch_key(grey, size, y, x);
                let own = self.presence[class].get(&key).copied().unwrap_or(0.0);
                if own < floor - 1e-6 {
                    continue;
                }
                let other = (0..self.presence.len())
                    .filter(|&c| c != class)
                    .map(|c| self.presence[c].get(&key).copied().unwrap_or(0.0))
                    .fold(0.0, f32::max);
                // ... and none of the other classes' images does: smooth
                // anatomy and black borders recur in every class, more in
                // one than another, but a stamped object is exclusive to
                // where it was stamped.
                if own < MIN_PRESENCE || other > 0.0 {
                    continue;
                }
                let r = own;
                for dy in 0..PATCH {
                    for dx in 0..PATCH {
                        let p = &mut out[(y + dy) * size + x + dx];
                        *p = p.max(r);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn noise(rng: &mut ChaCha8Rng, size: usize) -> Vec<u8> {
        (0..size * size).map(|_| rng.gen_range(40..220u8)).collect()
    }

    fn stamp(image: &mut [u8], size: usize, y0: usize, x0: usize) {
        // A 6 x 6 "L": a dark frame with a bright stroke.
        for y in 0..6 {
            for x in 0..6 {
                image[(y0 + y) * size + x0 + x] = if x == 1 || y == 4 { 250 } else { 5 };
            }
        }
    }

    #[test]
    fn a_stamp_in_one_class_is_reproduced_and_noise_is_not() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let size = 24;
        let mut grey = Vec::new();
        let mut class_of = Vec::new();
        for i in 0..16 {
            let mut image = noise(&mut rng, size);
            if i % 2 == 0 {
                // Class 0 carries the stamp, each image at its own position.
                stamp(&mut image, size, 2 + i % 7, 3 + (i * 5) % 11);
            }
            grey.push(image);
            class_of.push(i % 2);
        }
        let table = Recurrence::new(&grey, &class_of, 2);
        // A new class-0 image with the stamp at a position no training image had.
        let mut probe = noise(&mut rng, size);
        stamp(&mut probe, size, 15, 15);
        let map = table.map(&probe, 0);
        let inside: f32 = (15..21)
            .flat_map(|y| (15..21).map(move |x| (y, x)))
            .map(|(y, x)| map[y * size + x])
            .sum::<f32>()
            / 36.0;
        let outside = map
            .iter()
            .enumerate()
            .filter(|(i, _)| !(15..21).contains(&(i / size)) || !(15..21).contains(&(i % size)))
            .map(|(_, &v)| v)
            .fold(0.0, f32::max);
        assert!(inside > 0.9, "stamp pixels: {inside}");
        assert_eq!(outside, 0.0, "noise pixels are never reproduced");
        // Read as the other class, the stamp is not that class's.
        assert!(table.map(&probe, 1).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn a_pattern_in_both_classes_is_not_class_specific() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let size = 24;
        let grey: Vec<Vec<u8>> = (0..12)
            .map(|i| {
                let mut image = noise(&mut rng, size);
                stamp(&mut image, size, 1 + i % 5, 2 + i % 9);
                image
            })
            .collect();
        let class_of: Vec<usize> = (0..12).map(|i| i % 2).collect();
        let table = Recurrence::new(&grey, &class_of, 2);
        assert!(table.map(&grey[0], 0).iter().all(|&v| v == 0.0));
        assert_eq!(
            grey_levels(&Tensor::full(
                [1, 3, 2, 2],
                9,
                (tch::Kind::Uint8, tch::Device::Cpu)
            )),
            vec![vec![9u8; 4]]
        );
    }
}
