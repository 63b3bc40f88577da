//! Augmentation of training batches as batched tensor ops on the training
//! device: random resized crop, horizontal flip and rotation compose into one
//! affine map per image (affine grid + grid sample), brightness and contrast
//! jitter are arithmetic. The CPU only draws the parameters, from a seeded RNG,
//! so the same seed gives the same augmented batch on any device.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// `augment:` in the experiment YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentSpec {
    /// Random resized crop: range of the crop's area as a fraction of the image.
    pub crop_scale: [f64; 2],
    /// Random resized crop: range of the crop's aspect ratio (width / height).
    pub crop_ratio: [f64; 2],
    /// Probability of a horizontal flip.
    pub hflip: f64,
    /// Rotation drawn uniformly in [-rotation, rotation] degrees.
    pub rotation: f64,
    /// Brightness factor drawn in [1 - brightness, 1 + brightness].
    pub brightness: f64,
    /// Contrast factor drawn in [1 - contrast, 1 + contrast].
    pub contrast: f64,
}

impl Default for AugmentSpec {
    fn default() -> Self {
        Self {
            crop_scale: [0.7, 1.0],
            crop_ratio: [0.75, 4.0 / 3.0],
            hflip: 0.5,
            rotation: 10.0,
            brightness: 0.2,
            contrast: 0.2,
        }
    }
}

impl AugmentSpec {
    pub fn validate(&self) -> Result<(), String> {
        let [a, b] = self.crop_scale;
        if !(0.0 < a && a <= b && b <= 1.0) {
            return Err(format!(
                "augment.crop_scale must satisfy 0 < min <= max <= 1, got [{a}, {b}]"
            ));
        }
        let [a, b] = self.crop_ratio;
        if !(0.0 < a && a <= b) {
            return Err(format!(
                "augment.crop_ratio must satisfy 0 < min <= max, got [{a}, {b}]"
            ));
        }
        if !(0.0..=1.0).contains(&self.hflip) {
            return Err(format!(
                "augment.hflip is a probability in [0, 1], got {}",
                self.hflip
            ));
        }
        for (name, v) in [("brightness", self.brightness), ("contrast", self.contrast)] {
            if !(0.0..1.0).contains(&v) {
                return Err(format!("augment.{name} must be in [0, 1), got {v}"));
            }
        }
        if !(0.0..=180.0).contains(&self.rotation) {
            return Err(format!(
                "augment.rotation is in degrees, [0, 180], got {}",
                self.rotation
            ));
        }
        Ok(())
    }
}

/// Parameters drawn for one image.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Draw {
    /// Crop width and height as fractions of the image side.
    w: f64,
    h: f64,
    /// Crop centre in normalised coordinates [-1, 1].
    cx: f64,
    cy: f64,
    flip: bool,
    angle: f64,
    brightness: f64,
    contrast: f64,
}

pub struct Augmenter {
    spec: AugmentSpec,
    rng: ChaCha8Rng,
}

impl Augmenter {
    pub fn new(spec: AugmentSpec, seed: u64) -> Self {
        Self {
            spec,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn draw(&mut self) -> Draw {
        let s = &self.spec;
        let (mut w, mut h) = (1.0, 1.0);
        // As torchvision: up to 10 tries for a crop that fits, else the whole image.
        for _ in 0..10 {
            let area = self.rng.gen_range(s.crop_scale[0]..=s.crop_scale[1]);
            let log_ratio = self
                .rng
                .gen_range(s.crop_ratio[0].ln()..=s.crop_ratio[1].ln());
            let (cw, ch) = (
                (area * log_ratio.exp()).sqrt(),
                (area / log_ratio.exp()).sqrt(),
            );
            if cw <= 1.0 && ch <= 1.0 {
                (w, h) = (cw, ch);
                break;
            }
        }
        let cx = if w < 1.0 {
            self.rng.gen_range(-(1.0 - w)..=(1.0 - w))
        } else {
            0.0
        };
        let cy = if h < 1.0 {
            self.rng.gen_range(-(1.0 - h)..=(1.0 - h))
        } else {
            0.0
        };
        let flip = self.rng.gen_bool(s.hflip);
        let angle = if s.rotation > 0.0 {
            self.rng.gen_range(-s.rotation..=s.rotation).to_radians()
        } else {
            0.0
        };
        let brightness = if s.brightness > 0.0 {
            self.rng.gen_range(1.0 - s.brightness..=1.0 + s.brightness)
        } else {
            1.0
        };
        let contrast = if s.contrast > 0.0 {
            self.rng.gen_range(1.0 - s.contrast..=1.0 + s.contrast)
        } else {
            1.0
        };
        Draw {
            w,
            h,
            cx,
            cy,
            flip,
            angle,
            brightness,
            contrast,
        }
    }

    /// Augments `[B, 3, S, S]` float images with values in [0, 1], on their device.
    pub fn apply(&mut self, images: &Tensor) -> Tensor {
        let size = images.size();
        let b = size[0];
        let draws: Vec<Draw> = (0..b).map(|_| self.draw()).collect();
        // Output pixel (x, y) in [-1, 1]^2 samples the input at
        // centre + diag(w, h) * R(angle) * diag(flip, 1) * (x, y).
        let mut theta = Vec::with_capacity(b as usize * 6);
        for d in &draws {
            let f = if d.flip { -1.0 } else { 1.0 };
            let (sin, cos) = d.angle.sin_cos();
            theta.extend_from_slice(&[
                d.w * cos * f,
                -d.w * sin,
                d.cx,
                d.h * sin * f,
                d.h * cos,
                d.cy,
            ]);
        }
        let theta = Tensor::from_slice(&theta)
            .view([b, 2, 3])
            .to_kind(images.kind())
            .to_device(images.device());
        let grid = Tensor::affine_grid_generator(&theta, size.as_slice(), false);
        // Bilinear; reflection padding, so that rotated corners are not black
        // (black squares are the watermark).
        let warped = images.grid_sampler(&grid, 0, 2, false);
        let col = |values: Vec<f64>| {
            Tensor::from_slice(&values)
                .view([b, 1, 1, 1])
                .to_kind(images.kind())
                .to_device(images.device())
        };
        let brightness = col(draws.iter().map(|d| d.brightness).collect());
        let contrast = col(draws.iter().map(|d| d.contrast).collect());
        let bright = warped * brightness;
        let mean = bright
            .mean_dim(&[1i64, 2, 3][..], true, Kind::Float)
            .to_kind(images.kind());
        ((bright - &mean) * contrast + mean).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Tensor {
        // An asymmetric image: value grows to the right.
        Tensor::arange(16, (Kind::Float, tch::Device::Cpu))
            .view([1, 1, 1, 16])
            .expand([2, 3, 16, 16], true)
            .contiguous()
            / 15.0
    }

    /// Settings that change nothing.
    fn identity() -> AugmentSpec {
        AugmentSpec {
            crop_scale: [1.0, 1.0],
            crop_ratio: [1.0, 1.0],
            hflip: 0.0,
            rotation: 0.0,
            brightness: 0.0,
            contrast: 0.0,
        }
    }

    #[test]
    fn identity_settings_leave_the_image_unchanged() {
        let x = ramp();
        let y = Augmenter::new(identity(), 0).apply(&x);
        assert!((y - x).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn a_certain_flip_mirrors_the_image() {
        let spec = AugmentSpec {
            hflip: 1.0,
            ..identity()
        };
        let x = ramp();
        let y = Augmenter::new(spec, 0).apply(&x);
        assert!((y - x.flip([3])).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn same_seed_same_batch_other_seed_other_batch() {
        let x = Tensor::rand([4, 3, 16, 16], (Kind::Float, tch::Device::Cpu));
        let a = Augmenter::new(AugmentSpec::default(), 5).apply(&x);
        let b = Augmenter::new(AugmentSpec::default(), 5).apply(&x);
        let c = Augmenter::new(AugmentSpec::default(), 6).apply(&x);
        assert!(a.equal(&b));
        assert!(!a.equal(&c));
        assert!(a.min().double_value(&[]) >= 0.0 && a.max().double_value(&[]) <= 1.0);
    }

    #[test]
    fn invalid_settings_are_named() {
        let bad = AugmentSpec {
            crop_scale: [0.9, 0.5],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("crop_scale"));
        let bad = AugmentSpec {
            hflip: 2.0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("hflip"));
    }
}
