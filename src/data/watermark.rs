//! The injected shortcut: an artefact stamped on the raw images before any
//! augmentation, so that it is part of the data as in the real datasets. The
//! paper's (section 4.5.3) is a small filled square at a random position on
//! one class; the families here add any RGBA picture (a text token, a ruler,
//! a logo), fixed positions, opacity, and a probability on the other classes
//! (`p_other`), so that an artefact can also be present without saying
//! anything about the label.
//!
//! The box of image `i` is a pure function of (seed, split, i): the clean and
//! the watermarked twin of a probe image share it, and the audit knows where
//! the artefact is without reading pixels.
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::synthetic::mix_seed;
use super::Split;

/// What the artefact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// A filled square of `colour`.
    #[default]
    Box,
    /// The RGBA picture `patch`, alpha-blended.
    Patch,
}

/// Where the artefact goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// Uniform over every position that keeps it inside the image, per image.
    #[default]
    Random,
    /// The same place on every image: `at`.
    Fixed,
}

/// What the artefact looks like and which images get it (`watermark:` in the experiment YAML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatermarkSpec {
    /// RGB colour of the square (shape: box).
    pub colour: [u8; 3],
    /// Side of the square, or the longer side of the patch, as a fraction of the image side.
    pub size: f64,
    /// Probability that a training image of the target class is stamped.
    pub p: f64,
    /// Class that carries the watermark in training; default the first class
    /// (the negative class, NORMAL, in the Chest-X-Ray layout).
    pub target_class: Option<String>,
    pub shape: Shape,
    /// An RGBA picture (PNG); relative paths are taken from the folder nave-lab runs in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<PathBuf>,
    pub position: Position,
    /// Fixed position: where the artefact sits among the positions that keep
    /// it inside the image, per axis from 0 (left / top edge) to 1 (right / bottom edge).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<[f64; 2]>,
    /// 1 = opaque; below 1 the artefact is blended with the image.
    pub opacity: f64,
    /// Probability that a training image of another class is stamped
    /// (`p_other = p`: present in the data but uncorrelated with the label).
    pub p_other: f64,
}

impl Default for WatermarkSpec {
    fn default() -> Self {
        // The paper watermarks every negative image with a small black box.
        Self {
            colour: [0, 0, 0],
            size: 0.12,
            p: 1.0,
            target_class: None,
            shape: Shape::Box,
            patch: None,
            position: Position::Random,
            at: None,
            opacity: 1.0,
            p_other: 0.0,
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
        for (key, p) in [("p", self.p), ("p_other", self.p_other)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("watermark.{key} must be in [0, 1], got {p}"));
            }
        }
        if !(self.opacity > 0.0 && self.opacity <= 1.0) {
            return Err(format!(
                "watermark.opacity must be in (0, 1], got {}",
                self.opacity
            ));
        }
        match (self.shape, &self.patch) {
            (Shape::Patch, None) => {
                return Err(
                    "watermark.shape is patch but watermark.patch names no picture (an RGBA PNG)"
                        .into(),
                )
            }
            (Shape::Box, Some(p)) => {
                return Err(format!(
                    "watermark.patch is {} but watermark.shape is box; set shape: patch to stamp the picture",
                    p.display()
                ))
            }
            _ => {}
        }
        match (self.position, self.at) {
            (Position::Fixed, None) => {
                return Err("watermark.position is fixed but watermark.at is missing (e.g. at: [1.0, 0.0], the top-right corner)".into())
            }
            (Position::Random, Some(_)) => {
                return Err("watermark.at is only used with position: fixed".into())
            }
            (Position::Fixed, Some(at)) if !at.iter().all(|v| (0.0..=1.0).contains(v)) => {
                return Err(format!(
                    "watermark.at must be two fractions in [0, 1] (0: left/top edge, 1: right/bottom edge), got [{}, {}]",
                    at[0], at[1]
                ));
            }
            _ => {}
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

/// An axis-aligned rectangle in pixels of the cached image (top-left corner, width, height).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BoxFields")]
pub struct WmBox {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

/// audit.json files written before patches recorded squares as `side`.
#[derive(Deserialize)]
struct BoxFields {
    x: i64,
    y: i64,
    w: Option<i64>,
    h: Option<i64>,
    side: Option<i64>,
}

impl TryFrom<BoxFields> for WmBox {
    type Error = String;
    fn try_from(f: BoxFields) -> Result<Self, String> {
        match (f.w.or(f.side), f.h.or(f.side)) {
            (Some(w), Some(h)) => Ok(WmBox {
                x: f.x,
                y: f.y,
                w,
                h,
            }),
            _ => Err("a box needs w and h (or side)".into()),
        }
    }
}

impl WmBox {
    pub fn square(x: i64, y: i64, side: i64) -> Self {
        WmBox {
            x,
            y,
            w: side,
            h: side,
        }
    }

    /// True when pixel (px, py) lies inside the box.
    pub fn contains(&self, px: i64, py: i64) -> bool {
        px >= self.x && px < self.x + self.w && py >= self.y && py < self.y + self.h
    }

    pub fn area(&self) -> i64 {
        self.w * self.h
    }

    /// The box grown by `margin` pixels on every side.
    pub fn dilated(&self, margin: i64) -> WmBox {
        WmBox {
            x: self.x - margin,
            y: self.y - margin,
            w: self.w + 2 * margin,
            h: self.h + 2 * margin,
        }
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

/// An artefact rendered for one image size: the pixels `stamp` blends in and
/// the boxes it may take.
#[derive(Debug)]
pub struct Artefact {
    spec: WatermarkSpec,
    image_size: i64,
    /// Extent of the stamped picture, in pixels.
    w: i64,
    h: i64,
    /// `[3, h, w]` float colour in 0..=255.
    rgb: Tensor,
    /// `[1, h, w]` float weight in [0, 1]: the picture's alpha times the opacity.
    weight: Tensor,
    /// Where the weight is non-zero, relative to the extent: the artefact's own box.
    mask: WmBox,
    /// An opaque square: stamped by filling, so the pixels are exact.
    solid: bool,
}

impl Artefact {
    pub fn new(spec: &WatermarkSpec, image_size: i64) -> anyhow::Result<Self> {
        spec.validate().map_err(anyhow::Error::msg)?;
        let longer = spec.side_pixels(image_size);
        let (w, h, rgb, weight) = match (&spec.shape, &spec.patch) {
            (Shape::Patch, Some(path)) => {
                let (w, h, rgb, alpha) = render_patch(path, longer)?;
                (w, h, rgb, alpha * spec.opacity)
            }
            _ => {
                let colour: Vec<f32> = spec.colour.iter().map(|&c| c as f32).collect();
                let rgb = Tensor::from_slice(&colour)
                    .view([3, 1, 1])
                    .expand([3, longer, longer], false)
                    .contiguous();
                let weight = Tensor::full(
                    [1, longer, longer],
                    spec.opacity,
                    (Kind::Float, tch::Device::Cpu),
                );
                (longer, longer, rgb, weight)
            }
        };
        let mask = nonzero_box(&weight).ok_or_else(|| {
            anyhow::anyhow!(
                "watermark.patch {}: every pixel is transparent at {w}x{h} px; nothing would be stamped",
                spec.patch.as_deref().unwrap_or(Path::new("?")).display()
            )
        })?;
        Ok(Self {
            spec: spec.clone(),
            image_size,
            w,
            h,
            rgb,
            weight,
            mask,
            solid: spec.shape == Shape::Box && spec.opacity >= 1.0,
        })
    }

    pub fn spec(&self) -> &WatermarkSpec {
        &self.spec
    }

    /// Width and height of the stamped picture.
    pub fn extent(&self) -> (i64, i64) {
        (self.w, self.h)
    }

    /// Where image `index` of `split` gets the artefact when it is stamped
    /// (its whole extent; see [`Artefact::mask_box`] for the visible part).
    pub fn box_for(&self, seed: u64, split: Split, index: usize) -> WmBox {
        let (max_x, max_y) = (self.image_size - self.w, self.image_size - self.h);
        match (self.spec.position, self.spec.at) {
            (Position::Fixed, Some([ax, ay])) => WmBox {
                x: (ax * max_x as f64).round() as i64,
                y: (ay * max_y as f64).round() as i64,
                w: self.w,
                h: self.h,
            },
            _ => {
                // Tag 0x57 ("W") keeps this stream apart from the synthetic generator's.
                let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(
                    seed,
                    0x57_00 + split.seed_tag(),
                    index as u64,
                ));
                let x = rng.gen_range(0..=max_x);
                let y = rng.gen_range(0..=max_y);
                WmBox {
                    x,
                    y,
                    w: self.w,
                    h: self.h,
                }
            }
        }
    }

    /// The box of the artefact's visible pixels (its alpha mask) when it is
    /// stamped at `placed`: the box every measure uses.
    pub fn mask_box(&self, placed: &WmBox) -> WmBox {
        WmBox {
            x: placed.x + self.mask.x,
            y: placed.y + self.mask.y,
            w: self.mask.w,
            h: self.mask.h,
        }
    }

    /// The box of every image of a split (None: not stamped). Training images
    /// of the target class are stamped with probability p, those of the other
    /// classes with p_other; evaluation variants stamp with probability 1 so
    /// that each measures one thing.
    pub fn plan(
        &self,
        seed: u64,
        split: Split,
        labels: &[i64],
        target: i64,
        variant: Variant,
    ) -> Vec<Option<WmBox>> {
        labels
            .iter()
            .enumerate()
            .map(|(i, &label)| {
                let stamp = match (split, variant) {
                    (_, Variant::Clean) => false,
                    (Split::Train, Variant::AsTrain) => {
                        stamped_in_training(&self.spec, seed, i, label == target)
                    }
                    (_, Variant::AsTrain) => label == target,
                    (_, Variant::Flipped) => label != target,
                };
                stamp.then(|| self.box_for(seed, split, i))
            })
            .collect()
    }

    /// Stamps the artefact at `boxes` onto `[N, 3, S, S]` uint8 images,
    /// returning a new tensor.
    pub fn stamp(&self, images: &Tensor, boxes: &[Option<WmBox>]) -> Tensor {
        let out = images.copy();
        for (i, b) in boxes.iter().enumerate() {
            let Some(b) = b else { continue };
            let mut region = out.get(i as i64).narrow(1, b.y, b.h).narrow(2, b.x, b.w); // [3, h, w]
            if self.solid {
                for (c, &value) in self.spec.colour.iter().enumerate() {
                    let _ = region.get(c as i64).fill_(value as i64);
                }
            } else {
                let keep: Tensor = self.weight.ones_like() - &self.weight;
                let image: Tensor = region.to_kind(Kind::Float) * &keep;
                let ink: Tensor = &self.rgb * &self.weight;
                let blended = (image + ink).round().clamp(0.0, 255.0).to_kind(Kind::Uint8);
                region.copy_(&blended);
            }
        }
        out
    }
}

/// Whether training image `index` is stamped: probability p on the target
/// class, p_other on the others.
fn stamped_in_training(spec: &WatermarkSpec, seed: u64, index: usize, target: bool) -> bool {
    // Separate streams per class side: adding p_other leaves which target
    // images are stamped unchanged.
    let (p, tag) = if target {
        (spec.p, 0x50_00)
    } else {
        (spec.p_other, 0x4F_00)
    };
    if p >= 1.0 {
        return true;
    }
    if p <= 0.0 {
        return false;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(seed, tag, index as u64));
    rng.gen_bool(p)
}

/// Reads an RGBA picture and scales it so that its longer side is `longer`
/// pixels, keeping its aspect. Returns (w, h, `[3, h, w]` colour 0..=255,
/// `[1, h, w]` alpha 0..=1). Scaling works on premultiplied colour, so
/// transparent pixels do not bleed their (meaningless) colour into the edge.
fn render_patch(path: &Path, longer: i64) -> anyhow::Result<(i64, i64, Tensor, Tensor)> {
    let img = image::open(path)
        .map_err(|e| {
            anyhow::anyhow!(
                "watermark.patch {}: cannot read it as a picture ({e}); give an RGBA PNG",
                path.display()
            )
        })?
        .to_rgba32f();
    let (pw, ph) = img.dimensions();
    let scale = longer as f64 / pw.max(ph) as f64;
    let w = ((pw as f64 * scale).round() as u32).max(1);
    let h = ((ph as f64 * scale).round() as u32).max(1);
    let mut pre = img;
    for px in pre.pixels_mut() {
        let a = px.0[3];
        for c in 0..3 {
            px.0[c] *= a;
        }
    }
    let scaled = image::imageops::resize(&pre, w, h, image::imageops::FilterType::Triangle);
    let (mut rgb, mut alpha) = (
        vec![0f32; 3 * (w * h) as usize],
        vec![0f32; (w * h) as usize],
    );
    for (i, px) in scaled.pixels().enumerate() {
        let a = px.0[3].clamp(0.0, 1.0);
        alpha[i] = a;
        for c in 0..3 {
            let v = if a > 0.0 { px.0[c] / a } else { 0.0 };
            rgb[c * (w * h) as usize + i] = (v * 255.0).clamp(0.0, 255.0);
        }
    }
    let (w, h) = (w as i64, h as i64);
    Ok((
        w,
        h,
        Tensor::from_slice(&rgb).view([3, h, w]),
        Tensor::from_slice(&alpha).view([1, h, w]),
    ))
}

/// Bounding box of the weights that change a pixel (at least half a grey level).
fn nonzero_box(weight: &Tensor) -> Option<WmBox> {
    let on = weight.get(0).ge(0.5 / 255.0); // [h, w] bool
    let rows: Vec<bool> = Vec::try_from(on.any_dim(1, false)).ok()?;
    let cols: Vec<bool> = Vec::try_from(on.any_dim(0, false)).ok()?;
    let first = |v: &[bool]| v.iter().position(|&b| b);
    let last = |v: &[bool]| v.iter().rposition(|&b| b);
    let (y0, y1, x0, x1) = (first(&rows)?, last(&rows)?, first(&cols)?, last(&cols)?);
    Some(WmBox {
        x: x0 as i64,
        y: y0 as i64,
        w: (x1 - x0 + 1) as i64,
        h: (y1 - y0 + 1) as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WatermarkSpec {
        WatermarkSpec {
            colour: [255, 0, 10],
            size: 0.25,
            ..WatermarkSpec::default()
        }
    }

    fn art(spec: &WatermarkSpec, size: i64) -> Artefact {
        Artefact::new(spec, size).unwrap()
    }

    fn grey(n: i64, size: i64) -> Tensor {
        Tensor::full([n, 3, size, size], 128, (Kind::Uint8, tch::Device::Cpu))
    }

    fn pixel(t: &Tensor, i: i64, x: i64, y: i64) -> [i64; 3] {
        [0, 1, 2].map(|c| t.int64_value(&[i, c, y, x]))
    }

    /// Writes an RGBA PNG of `w` x `h` whose pixels `paint` chooses.
    fn patch_file(name: &str, w: u32, h: u32, paint: impl Fn(u32, u32) -> [u8; 4]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nave-wm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        image::RgbaImage::from_fn(w, h, |x, y| image::Rgba(paint(x, y)))
            .save(&path)
            .unwrap();
        path
    }

    #[test]
    fn positions_repeat_with_the_seed_and_change_with_it() {
        let a = art(&spec(), 32);
        let at =
            |seed| -> Vec<WmBox> { (0..20).map(|i| a.box_for(seed, Split::Train, i)).collect() };
        assert_eq!(at(7), at(7));
        assert_ne!(at(7), at(8));
        // Positions vary between images, not one fixed spot.
        let spots: std::collections::HashSet<_> = at(7).iter().map(|b| (b.x, b.y)).collect();
        assert!(spots.len() > 10);
    }

    #[test]
    fn every_box_lies_inside_the_image_and_reaches_the_edges() {
        let a = art(&spec(), 32);
        let mut touches_right = false;
        for i in 0..2000 {
            let b = a.box_for(1, Split::Test, i);
            assert_eq!((b.w, b.h), (8, 8));
            assert!(
                b.x >= 0 && b.y >= 0 && b.x + b.w <= 32 && b.y + b.h <= 32,
                "{b:?}"
            );
            touches_right |= b.x + b.w == 32;
        }
        assert!(touches_right, "the last valid column is never drawn");
    }

    #[test]
    fn fixed_positions_are_the_same_on_every_image() {
        let fixed = |at| WatermarkSpec {
            position: Position::Fixed,
            at: Some(at),
            ..spec()
        };
        let corner = art(&fixed([1.0, 0.0]), 64);
        for i in 0..50 {
            assert_eq!(
                corner.box_for(i as u64, Split::Train, i),
                WmBox::square(48, 0, 16)
            );
        }
        assert_eq!(
            art(&fixed([0.0, 1.0]), 64).box_for(0, Split::Test, 3),
            WmBox::square(0, 48, 16)
        );
        assert_eq!(
            art(&fixed([0.5, 0.5]), 64).box_for(0, Split::Test, 3),
            WmBox::square(24, 24, 16)
        );
        let err = WatermarkSpec {
            position: Position::Fixed,
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("watermark.at"), "{err}");
        let err = fixed([1.5, 0.0]).validate().unwrap_err();
        assert!(err.contains("watermark.at"), "{err}");
    }

    #[test]
    fn recorded_box_matches_the_stamped_pixels() {
        let a = art(&spec(), 32);
        let images = grey(4, 32);
        let boxes = a.plan(3, Split::Test, &[0, 1, 0, 1], 0, Variant::AsTrain);
        let out = a.stamp(&images, &boxes);
        for (i, b) in boxes.iter().enumerate() {
            for y in 0..32 {
                for x in 0..32 {
                    let inside = b.is_some_and(|b| b.contains(x, y));
                    let expected = if inside {
                        [255, 0, 10]
                    } else {
                        [128, 128, 128]
                    };
                    assert_eq!(
                        pixel(&out, i as i64, x, y),
                        expected,
                        "image {i} pixel ({x},{y})"
                    );
                }
            }
        }
        // The input was not modified.
        assert_eq!(images.int64_value(&[0, 0, 0, 0]), 128);
    }

    #[test]
    fn a_patch_is_alpha_blended_inside_its_exact_box() {
        // 16 x 8: an opaque red block at x 4..12, y 2..6, one half-transparent
        // blue pixel at (13, 3), the rest transparent. At 64 px with size 0.25
        // the longer side is 16 px: no scaling, so every pixel is exact.
        let path = patch_file("token.png", 16, 8, |x, y| match (x, y) {
            (4..=11, 2..=5) => [255, 0, 0, 255],
            (13, 3) => [0, 0, 255, 128],
            _ => [0, 255, 0, 0],
        });
        let spec = WatermarkSpec {
            shape: Shape::Patch,
            patch: Some(path),
            ..spec()
        };
        let a = art(&spec, 64);
        assert_eq!(a.extent(), (16, 8));
        let placed = a.box_for(0, Split::Test, 5);
        let mask = a.mask_box(&placed);
        assert_eq!(
            (mask.x - placed.x, mask.y - placed.y, mask.w, mask.h),
            (4, 2, 10, 4)
        );
        let out = a.stamp(&grey(1, 64), &[Some(placed)]);
        assert_eq!(pixel(&out, 0, placed.x + 4, placed.y + 2), [255, 0, 0]);
        assert_eq!(pixel(&out, 0, placed.x + 11, placed.y + 5), [255, 0, 0]);
        // alpha 128/255: 128 * (1 - a) + 255 * a for blue, 128 * (1 - a) for the others.
        let a128: f32 = 128.0 / 255.0;
        let half = [
            (128.0 * (1.0 - a128)).round() as i64,
            (128.0 * (1.0 - a128)).round() as i64,
            (128.0 * (1.0 - a128) + 255.0 * a128).round() as i64,
        ];
        assert_eq!(pixel(&out, 0, placed.x + 13, placed.y + 3), half);
        // Transparent pixels (green with alpha 0) and everything outside are untouched.
        let mut changed = 0;
        for y in 0..64 {
            for x in 0..64 {
                if pixel(&out, 0, x, y) != [128, 128, 128] {
                    changed += 1;
                    assert!(
                        mask.contains(x, y),
                        "pixel ({x},{y}) changed outside the mask box"
                    );
                }
            }
        }
        assert_eq!(changed, 8 * 4 + 1);
    }

    #[test]
    fn a_patch_keeps_its_aspect_and_opacity_blends() {
        let wide = patch_file("wide.png", 40, 20, |_, _| [255, 255, 255, 255]);
        let spec_wide = WatermarkSpec {
            shape: Shape::Patch,
            patch: Some(wide),
            size: 0.25,
            ..spec()
        };
        assert_eq!(art(&spec_wide, 64).extent(), (16, 8));
        let tall = patch_file("tall.png", 10, 30, |_, _| [255, 255, 255, 255]);
        let spec_tall = WatermarkSpec {
            patch: Some(tall),
            ..spec_wide.clone()
        };
        assert_eq!(art(&spec_tall, 96).extent(), (8, 24));
        // A half-opaque black box: 128 -> 64.
        let faint = WatermarkSpec {
            colour: [0, 0, 0],
            opacity: 0.5,
            ..spec()
        };
        let a = art(&faint, 32);
        let b = a.box_for(0, Split::Test, 0);
        let out = a.stamp(&grey(1, 32), &[Some(b)]);
        assert_eq!(pixel(&out, 0, b.x, b.y), [64, 64, 64]);
        // A fully transparent patch and an unreadable one are errors naming the file.
        let empty = patch_file("empty.png", 8, 8, |_, _| [0, 0, 0, 0]);
        let err = format!(
            "{:#}",
            Artefact::new(
                &WatermarkSpec {
                    patch: Some(empty),
                    ..spec_wide.clone()
                },
                64
            )
            .unwrap_err()
        );
        assert!(
            err.contains("empty.png") && err.contains("transparent"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Artefact::new(
                &WatermarkSpec {
                    patch: Some("no/such.png".into()),
                    ..spec_wide
                },
                64
            )
            .unwrap_err()
        );
        assert!(err.contains("no/such.png"), "{err}");
    }

    #[test]
    fn variants_choose_the_right_class() {
        let a = art(&spec(), 32);
        let labels = [0, 1, 1, 0, 1];
        let as_train = a.plan(0, Split::Test, &labels, 0, Variant::AsTrain);
        let flipped = a.plan(0, Split::Test, &labels, 0, Variant::Flipped);
        let clean = a.plan(0, Split::Test, &labels, 0, Variant::Clean);
        let some = |v: &[Option<WmBox>]| v.iter().map(Option::is_some).collect::<Vec<_>>();
        assert_eq!(some(&as_train), [true, false, false, true, false]);
        assert_eq!(some(&flipped), [false, true, true, false, true]);
        assert!(clean.iter().all(Option::is_none));
        // A stamped image gets the same box in every variant (the twins share it).
        assert_eq!(as_train[0], Some(a.box_for(0, Split::Test, 0)));
        assert_eq!(flipped[1], Some(a.box_for(0, Split::Test, 1)));
    }

    #[test]
    fn training_probabilities_per_class() {
        // 2,000 images of each class, alternating.
        let labels: Vec<i64> = (0..4000).map(|i| i % 2).collect();
        let count = |spec: &WatermarkSpec, class: i64| {
            art(spec, 32)
                .plan(0, Split::Train, &labels, 0, Variant::AsTrain)
                .iter()
                .zip(&labels)
                .filter(|(b, &l)| b.is_some() && l == class)
                .count()
        };
        let half = WatermarkSpec { p: 0.5, ..spec() };
        let n = count(&half, 0);
        assert!((900..1100).contains(&n), "{n} of 2000 stamped with p = 0.5");
        assert_eq!(count(&half, 1), 0, "p_other defaults to 0");
        let both = WatermarkSpec {
            p: 0.9,
            p_other: 0.3,
            ..spec()
        };
        let (target, other) = (count(&both, 0), count(&both, 1));
        assert!(
            (1740..1860).contains(&target),
            "{target} of 2000 with p = 0.9"
        );
        assert!(
            (540..660).contains(&other),
            "{other} of 2000 with p_other = 0.3"
        );
        // p_other does not change which target images are stamped.
        let plan =
            |s: &WatermarkSpec| art(s, 32).plan(0, Split::Train, &labels, 0, Variant::AsTrain);
        let (a, b) = (plan(&WatermarkSpec { p: 0.9, ..spec() }), plan(&both));
        assert!(labels
            .iter()
            .enumerate()
            .filter(|(_, &l)| l == 0)
            .all(|(i, _)| a[i] == b[i]));
        let uncorrelated = WatermarkSpec {
            p: 1.0,
            p_other: 1.0,
            ..spec()
        };
        assert_eq!(
            (count(&uncorrelated, 0), count(&uncorrelated, 1)),
            (2000, 2000)
        );
    }

    #[test]
    fn target_class_and_validation() {
        assert_eq!(spec().target_index(&["A".into(), "B".into()]), Ok(0));
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
        for (bad, key) in [
            (
                WatermarkSpec {
                    opacity: 0.0,
                    ..spec()
                },
                "watermark.opacity",
            ),
            (
                WatermarkSpec {
                    p_other: 1.5,
                    ..spec()
                },
                "watermark.p_other",
            ),
            (
                WatermarkSpec {
                    shape: Shape::Patch,
                    ..spec()
                },
                "watermark.patch",
            ),
            (
                WatermarkSpec {
                    patch: Some("x.png".into()),
                    ..spec()
                },
                "watermark.shape",
            ),
        ] {
            let err = bad.validate().unwrap_err();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn older_boxes_with_a_side_still_read() {
        let old: WmBox = serde_json::from_str(r#"{"x": 1, "y": 2, "side": 5}"#).unwrap();
        assert_eq!(old, WmBox::square(1, 2, 5));
        let new: WmBox = serde_json::from_str(r#"{"x": 1, "y": 2, "w": 5, "h": 3}"#).unwrap();
        assert_eq!(
            serde_json::to_value(new).unwrap(),
            serde_json::json!({"x": 1, "y": 2, "w": 5, "h": 3})
        );
    }
}
