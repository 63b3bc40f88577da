//! The injected shortcut: an artefact stamped on the raw images before any
//! augmentation, so that it is part of the data as in the real datasets. The
//! paper's (section 4.5.3) is a small filled square at a random position on
//! one class; the families here add any RGBA picture (a text token, a ruler,
//! a logo), fixed positions, opacity, and a probability on the other classes
//! (`p_other`), so that an artefact can also be present without saying
//! anything about the label.
//!
//! Real shortcuts are rarely one stamped copy: laterality markers and tags
//! vary in letter, font, size, rotation, contrast and compression, and some
//! artefacts are global (a scanner's tint or noise, a border, blur). So an
//! artefact may be a text drawn from a list of strings and fonts, may vary
//! image by image (`vary:` scale, rotation, opacity, brightness, blur, JPEG
//! re-encoding; `region:` a band it is placed in), or may be global (`tint`,
//! `noise`, `border`, `blur`: the whole image is its box). Drawing is in
//! [`render`].
//!
//! The placement of image `i` (its box and its look) is a pure function of
//! (seed, split, i): the clean and the watermarked twin of a probe image share
//! it, and the audit knows where the artefact is without reading pixels.
mod render;
pub use super::pixel_box::PixelBox;
use std::path::PathBuf;

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
    /// One of `texts` in one of `fonts`, `colour`, `size` its height.
    Text,
    /// Global: `colour` blended over the whole image at `strength`.
    Tint,
    /// Global: a fixed noise texture (`texture_seed`) added at `strength` grey levels.
    Noise,
    /// Global: a frame of `colour`, `size` of the image side wide.
    Border,
    /// Global: a Gaussian blur of `strength` pixels.
    Blur,
}

impl Shape {
    /// The name a YAML file gives it (every variant is one lower-case word).
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }

    /// Whether the artefact covers the whole image (no place of its own).
    pub fn is_global(self) -> bool {
        matches!(
            self,
            Shape::Tint | Shape::Noise | Shape::Border | Shape::Blur
        )
    }
}

/// Per-image variation, each a `[low, high]` range drawn uniformly for every
/// stamped image (`watermark.vary`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Variation {
    /// Times `size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<[f64; 2]>,
    /// Degrees, counter-clockwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<[f64; 2]>,
    /// Times `opacity` (a global artefact: times `strength`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opacity: Option<[f64; 2]>,
    /// Grey levels added to the artefact's colour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brightness: Option<[f64; 2]>,
    /// Gaussian blur of the artefact, sigma in pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blur: Option<[f64; 2]>,
    /// JPEG quality (1-100) the stamped image is re-encoded at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jpeg: Option<[f64; 2]>,
}

impl Variation {
    fn is_none(&self) -> bool {
        *self == Variation::default()
    }

    fn validate(&self) -> Result<(), String> {
        let ranges = [
            ("scale", self.scale, 0.01, 10.0),
            ("rotation", self.rotation, -360.0, 360.0),
            ("opacity", self.opacity, 0.0, 1.0),
            ("brightness", self.brightness, -255.0, 255.0),
            ("blur", self.blur, 0.0, 20.0),
            ("jpeg", self.jpeg, 1.0, 100.0),
        ];
        for (key, range, lowest, highest) in ranges {
            if let Some([lo, hi]) = range {
                if !(lo <= hi && lo >= lowest && hi <= highest) {
                    return Err(format!(
                        "watermark.vary.{key} must be [low, high] with {lowest} <= low <= high <= {highest}, got [{lo}, {hi}]"
                    ));
                }
            }
        }
        if self.scale.is_some_and(|[lo, _]| lo <= 0.0)
            || self.opacity.is_some_and(|[lo, _]| lo <= 0.0)
        {
            return Err("watermark.vary.scale and vary.opacity must stay above 0".into());
        }
        Ok(())
    }
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
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
    /// Per-image variation of the look.
    #[serde(skip_serializing_if = "Variation::is_none")]
    pub vary: Variation,
    /// A band the artefact's box lies in, as fractions of the image side:
    /// `[x0, y0, x1, y1]` (e.g. `[0, 0, 1, 0.25]`: somewhere along the top).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<[f64; 4]>,
    /// Shape text: the strings, one drawn per image.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub texts: Vec<String>,
    /// Shape text: TrueType/OpenType files, one drawn per image; default the
    /// two shipped DejaVu fonts (sans bold, serif).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fonts: Vec<PathBuf>,
    /// Global shapes: the tint's weight (0-1), the noise's amplitude in
    /// grey levels, the blur's sigma in pixels.
    #[serde(skip_serializing_if = "is_zero")]
    pub strength: f64,
    /// Shape noise: which fixed texture.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub texture_seed: u64,
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
            vary: Variation::default(),
            region: None,
            texts: Vec::new(),
            fonts: Vec::new(),
            strength: 0.0,
            texture_seed: 0,
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
            (shape, Some(p)) if shape != Shape::Patch => {
                return Err(format!(
                    "watermark.patch is {} but watermark.shape is {shape:?}; set shape: patch to stamp the picture",
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
        self.vary.validate()?;
        if let Some([x0, y0, x1, y1]) = self.region {
            if !(0.0 <= x0 && x0 < x1 && x1 <= 1.0 && 0.0 <= y0 && y0 < y1 && y1 <= 1.0) {
                return Err(format!(
                    "watermark.region must be [x0, y0, x1, y1] fractions with x0 < x1 and y0 < y1 in [0, 1], got [{x0}, {y0}, {x1}, {y1}]"
                ));
            }
            if self.position == Position::Fixed {
                return Err("watermark.region places a random position; it does not combine with position: fixed".into());
            }
        }
        match self.shape {
            Shape::Text if self.texts.is_empty() || self.texts.iter().any(|t| t.trim().is_empty()) => {
                return Err("watermark.shape is text but watermark.texts lists no text (e.g. texts: [R, L])".into())
            }
            Shape::Text => {}
            _ if !self.texts.is_empty() || !self.fonts.is_empty() => {
                return Err("watermark.texts and watermark.fonts are only used with shape: text".into())
            }
            _ => {}
        }
        if self.shape.is_global() {
            if self.region.is_some() || self.position == Position::Fixed {
                return Err(format!(
                    "watermark.shape {} is global (the whole image); region and position do not apply",
                    self.shape.name()
                ));
            }
            let (lo, hi) = match self.shape {
                Shape::Tint => (0.0, 1.0),
                Shape::Noise => (0.0, 128.0),
                Shape::Blur => (0.0, 20.0),
                _ => (-1.0, f64::INFINITY),
            };
            if self.shape != Shape::Border && !(self.strength > lo && self.strength <= hi) {
                return Err(format!(
                    "watermark.strength must be in ({lo}, {hi}] for shape {}, got {}",
                    self.shape.name(),
                    self.strength
                ));
            }
        } else if self.strength != 0.0 {
            return Err(
                "watermark.strength is only used with the global shapes (tint, noise, blur)".into(),
            );
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

/// How one image's artefact looks: the draws of `vary` (identity when the
/// spec varies nothing) and, for texts, which string and font.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Look {
    pub scale: f64,
    pub rotation: f64,
    pub opacity: f64,
    pub brightness: f64,
    pub blur: f64,
    /// 0: not re-encoded.
    pub jpeg: u8,
    pub text: usize,
    pub font: usize,
}

impl Look {
    /// No variation: the spec's artefact as it is.
    pub const PLAIN: Look = Look {
        scale: 1.0,
        rotation: 0.0,
        opacity: 1.0,
        brightness: 0.0,
        blur: 0.0,
        jpeg: 0,
        text: 0,
        font: 0,
    };
}

/// Where one image's artefact goes and how it looks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// The stamped picture's whole extent (a global artefact: the image).
    pub placed: PixelBox,
    /// Its visible pixels' box (the alpha mask's), found when the picture
    /// was drawn to place it, so that nothing draws it again to measure it.
    pub visible: PixelBox,
    pub look: Look,
}

/// An artefact for one image size: the picture `stamp` blends in (rendered
/// once when every image shares it, per image when it varies) and the boxes
/// it may take.
#[derive(Debug)]
pub struct Artefact {
    spec: WatermarkSpec,
    image_size: i64,
    /// The picture of the plain look: extent, `[3, h, w]` colour 0..=255,
    /// `[1, h, w]` weight (alpha times opacity), and where the weight is
    /// non-zero relative to the extent. A global artefact has none.
    plain: Option<Rendered>,
    /// The source of a patch (read once) or the fonts of a text.
    source: Source,
    /// Shape noise: the fixed texture.
    texture: Vec<f32>,
    /// An opaque square: stamped by filling, so the pixels are exact.
    solid: bool,
}

#[derive(Debug)]
enum Source {
    Square,
    Picture(render::Picture),
    Fonts(Vec<Vec<u8>>),
    Global,
}

/// A picture ready to blend.
#[derive(Debug)]
struct Rendered {
    w: i64,
    h: i64,
    rgb: Tensor,
    weight: Tensor,
    mask: PixelBox,
}

impl Clone for Rendered {
    fn clone(&self) -> Self {
        Self {
            w: self.w,
            h: self.h,
            rgb: self.rgb.shallow_clone(),
            weight: self.weight.shallow_clone(),
            mask: self.mask,
        }
    }
}

impl Rendered {
    fn of(picture: &render::Picture, what: &dyn Fn() -> String) -> anyhow::Result<Self> {
        let (w, h) = (picture.w as i64, picture.h as i64);
        let rgb = Tensor::from_slice(&picture.rgb).view([3, h, w]);
        let weight = Tensor::from_slice(&picture.alpha).view([1, h, w]);
        let mask = nonzero_box(&weight).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: every pixel is transparent at {w}x{h} px; nothing would be stamped",
                what()
            )
        })?;
        Ok(Self {
            w,
            h,
            rgb,
            weight,
            mask,
        })
    }
}

impl Artefact {
    pub fn new(spec: &WatermarkSpec, image_size: i64) -> anyhow::Result<Self> {
        spec.validate().map_err(anyhow::Error::msg)?;
        let source = match spec.shape {
            Shape::Box => Source::Square,
            Shape::Patch => Source::Picture(render::file_picture(
                spec.patch
                    .as_deref()
                    .expect("validated: a patch has its file"),
            )?),
            Shape::Text => Source::Fonts(if spec.fonts.is_empty() {
                render::builtin_fonts().to_vec()
            } else {
                spec.fonts
                    .iter()
                    .map(|f| {
                        std::fs::read(f).map_err(|e| {
                            anyhow::anyhow!("watermark.fonts: cannot read {} ({e})", f.display())
                        })
                    })
                    .collect::<anyhow::Result<_>>()?
            }),
            _ => Source::Global,
        };
        let texture = if spec.shape == Shape::Noise {
            render::noise_texture(spec.texture_seed, image_size as usize)
        } else {
            Vec::new()
        };
        let mut artefact = Self {
            spec: spec.clone(),
            image_size,
            plain: None,
            source,
            texture,
            solid: spec.shape == Shape::Box && spec.opacity >= 1.0 && spec.vary.is_none(),
        };
        if !spec.shape.is_global() {
            // Every text and font is drawn here at the faintest, smallest,
            // most blurred look the ranges allow, so that one that draws
            // nothing is an error now rather than in the middle of training.
            let low = |r: Option<[f64; 2]>, plain: f64| r.map_or(plain, |[lo, _]| lo);
            let high = |r: Option<[f64; 2]>, plain: f64| r.map_or(plain, |[_, hi]| hi);
            let v = &spec.vary;
            let faintest = Look {
                scale: low(v.scale, 1.0),
                opacity: low(v.opacity, 1.0),
                blur: high(v.blur, 0.0),
                ..Look::PLAIN
            };
            let fonts = match &artefact.source {
                Source::Fonts(f) => f.len(),
                _ => 1,
            };
            for text in 0..spec.texts.len().max(1) {
                for font in 0..fonts {
                    artefact.render(&Look {
                        text,
                        font,
                        ..faintest
                    })?;
                }
            }
            artefact.plain = Some(artefact.render(&Look::PLAIN)?);
        }
        Ok(artefact)
    }

    pub fn spec(&self) -> &WatermarkSpec {
        &self.spec
    }

    /// Whether the artefact covers the whole image.
    pub fn is_global(&self) -> bool {
        self.spec.shape.is_global()
    }

    /// The local picture of `look`.
    fn render(&self, look: &Look) -> anyhow::Result<Rendered> {
        let longer = ((self.spec.side_pixels(self.image_size) as f64 * look.scale).round()
            as usize)
            .clamp(1, self.image_size as usize);
        let picture = match &self.source {
            Source::Square => render::Picture::solid(longer, longer, self.spec.colour),
            Source::Picture(p) => p.scaled_to(longer),
            Source::Fonts(fonts) => render::text_picture(
                &self.spec.texts[look.text % self.spec.texts.len()],
                &fonts[look.font % fonts.len()],
                longer,
                self.spec.colour,
            )?,
            Source::Global => anyhow::bail!("a global artefact has no picture"),
        };
        let picture = picture
            .rotated(look.rotation)
            .blurred(look.blur)
            .toned(self.spec.opacity * look.opacity, look.brightness);
        // A turned or grown picture may not fit the image: scaled down until it does.
        let picture = if picture.w.max(picture.h) > self.image_size as usize {
            picture.scaled_to(self.image_size as usize)
        } else {
            picture
        };
        Rendered::of(&picture, &|| match &self.spec.patch {
            Some(p) => format!("watermark.patch {}", p.display()),
            None => "the watermark".to_string(),
        })
    }

    /// The picture of a placement's look (the shared one when it is plain).
    fn picture(&self, look: &Look) -> std::borrow::Cow<'_, Rendered> {
        match &self.plain {
            Some(plain) if *look == Look::PLAIN => std::borrow::Cow::Borrowed(plain),
            // Every text and font was drawn at its faintest in Artefact::new;
            // should a look in between still draw nothing, the plain one stands in.
            _ => match (self.render(look), &self.plain) {
                (Ok(r), _) => std::borrow::Cow::Owned(r),
                (Err(_), Some(plain)) => std::borrow::Cow::Borrowed(plain),
                (Err(e), None) => unreachable!("a global artefact has no picture: {e}"),
            },
        }
    }

    /// Width and height of the plain stamped picture (a global artefact: the image).
    pub fn extent(&self) -> (i64, i64) {
        match &self.plain {
            Some(p) => (p.w, p.h),
            None => (self.image_size, self.image_size),
        }
    }

    /// The look of image `index` of `split`: plain unless the spec varies it.
    fn look_for(&self, seed: u64, split: Split, index: usize) -> Look {
        let v = &self.spec.vary;
        let texts = self.spec.texts.len().max(1);
        let fonts = match &self.source {
            Source::Fonts(f) => f.len().max(1),
            _ => 1,
        };
        if v.is_none() && texts == 1 && fonts == 1 {
            return Look::PLAIN;
        }
        // Tag 0x56 ("V"), apart from the positions' stream: a spec that adds
        // variation keeps the positions it had. Every value is drawn, used or
        // not, so that adding one range does not change the others.
        let mut rng =
            ChaCha8Rng::seed_from_u64(mix_seed(seed, 0x56_00 + split.seed_tag(), index as u64));
        let mut draw = |range: Option<[f64; 2]>, plain: f64| {
            let u: f64 = rng.gen();
            range.map_or(plain, |[lo, hi]| lo + u * (hi - lo))
        };
        let scale = draw(v.scale, 1.0);
        let rotation = draw(v.rotation, 0.0);
        let opacity = draw(v.opacity, 1.0);
        let brightness = draw(v.brightness, 0.0);
        let blur = draw(v.blur, 0.0);
        let jpeg = draw(v.jpeg, 0.0).round() as u8;
        let text = (draw(Some([0.0, texts as f64]), 0.0) as usize).min(texts - 1);
        let font = (draw(Some([0.0, fonts as f64]), 0.0) as usize).min(fonts - 1);
        Look {
            scale,
            rotation,
            opacity,
            brightness,
            blur,
            jpeg,
            text,
            font,
        }
    }

    /// Where image `index` of `split` gets the artefact when it is stamped,
    /// and how it looks there (its whole extent, and the box of its visible part).
    pub fn placement_for(&self, seed: u64, split: Split, index: usize) -> Placement {
        let look = self.look_for(seed, split, index);
        if self.is_global() {
            let whole = PixelBox::square(0, 0, self.image_size);
            return Placement {
                placed: whole,
                visible: whole,
                look,
            };
        }
        let (w, h, mask) = {
            let r = self.picture(&look);
            (r.w, r.h, r.mask)
        };
        let (max_x, max_y) = (self.image_size - w, self.image_size - h);
        let placed = match (self.spec.position, self.spec.at) {
            (Position::Fixed, Some([ax, ay])) => PixelBox {
                x: (ax * max_x as f64).round() as i64,
                y: (ay * max_y as f64).round() as i64,
                w,
                h,
            },
            _ => {
                // Tag 0x57 ("W") keeps this stream apart from the synthetic generator's.
                let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(
                    seed,
                    0x57_00 + split.seed_tag(),
                    index as u64,
                ));
                let ((x_lo, x_hi), (y_lo, y_hi)) = match self.spec.region {
                    None => ((0, max_x), (0, max_y)),
                    Some([x0, y0, x1, y1]) => {
                        let s = self.image_size as f64;
                        let band = |lo: f64, hi: f64, extent: i64, max: i64| {
                            let lo = ((lo * s).round() as i64).clamp(0, max);
                            let hi = ((hi * s).round() as i64 - extent).clamp(lo, max);
                            (lo, hi)
                        };
                        (band(x0, x1, w, max_x), band(y0, y1, h, max_y))
                    }
                };
                let x = rng.gen_range(x_lo..=x_hi);
                let y = rng.gen_range(y_lo..=y_hi);
                PixelBox { x, y, w, h }
            }
        };
        let visible = PixelBox {
            x: placed.x + mask.x,
            y: placed.y + mask.y,
            w: mask.w,
            h: mask.h,
        };
        Placement {
            placed,
            visible,
            look,
        }
    }

    /// Where image `index` of `split` gets the artefact (its extent).
    pub fn box_for(&self, seed: u64, split: Split, index: usize) -> PixelBox {
        self.placement_for(seed, split, index).placed
    }

    /// The placement of every image of a split (None: not stamped). Training
    /// images of the target class are stamped with probability p, those of
    /// the other classes with p_other; evaluation variants stamp with
    /// probability 1 so that each measures one thing.
    pub fn plan(
        &self,
        seed: u64,
        split: Split,
        labels: &[i64],
        target: i64,
        variant: Variant,
    ) -> Vec<Option<Placement>> {
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
                stamp.then(|| self.placement_for(seed, split, i))
            })
            .collect()
    }

    /// Stamps the artefact at `placements` onto `[N, 3, S, S]` uint8 images,
    /// returning a new tensor.
    pub fn stamp(&self, images: &Tensor, placements: &[Option<Placement>]) -> Tensor {
        let out = images.copy();
        for (i, p) in placements.iter().enumerate() {
            let Some(p) = p else { continue };
            let mut image = out.get(i as i64); // [3, S, S]
            if self.is_global() {
                self.apply_global(&mut image, &p.look);
            } else {
                self.blend(&image, p);
            }
            if p.look.jpeg > 0 {
                let s = self.image_size as usize;
                let bytes: Vec<u8> = Vec::try_from(image.flatten(0, -1)).expect("uint8 image");
                let again = render::jpeg_roundtrip(&bytes, s, p.look.jpeg)
                    .expect("an image of this size encodes and decodes as JPEG");
                image.copy_(&Tensor::from_slice(&again).view([3, s as i64, s as i64]));
            }
        }
        out
    }

    /// A local artefact blended into `image` (`[3, S, S]` uint8) in place.
    fn blend(&self, image: &Tensor, at: &Placement) {
        let b = at.placed;
        let mut region = image.narrow(1, b.y, b.h).narrow(2, b.x, b.w); // [3, h, w]
        if self.solid {
            for (c, &value) in self.spec.colour.iter().enumerate() {
                let _ = region.get(c as i64).fill_(value as i64);
            }
            return;
        }
        let picture = self.picture(&at.look);
        let keep: Tensor = picture.weight.ones_like() - &picture.weight;
        let kept: Tensor = region.to_kind(Kind::Float) * &keep;
        let ink: Tensor = &picture.rgb * &picture.weight;
        let blended = (kept + ink).round().clamp(0.0, 255.0).to_kind(Kind::Uint8);
        region.copy_(&blended);
    }

    /// A global artefact applied to `image` (`[3, S, S]` uint8) in place.
    fn apply_global(&self, image: &mut Tensor, look: &Look) {
        let s = self.image_size as usize;
        let px: Vec<f32> =
            Vec::try_from(image.flatten(0, -1).to_kind(Kind::Float)).expect("an image");
        let mut canvas = render::Canvas { s, px };
        let spec = &self.spec;
        let weight = spec.opacity * look.opacity;
        match spec.shape {
            Shape::Tint => canvas.tint(spec.colour, spec.strength * weight),
            Shape::Noise => canvas.add_texture(&self.texture, spec.strength * weight),
            Shape::Border => {
                let width = spec.side_pixels(self.image_size) as f64 * look.scale;
                canvas.frame((width.round() as usize).max(1), spec.colour, weight);
            }
            Shape::Blur => canvas.blur(spec.strength * look.scale),
            _ => unreachable!("local shapes are blended"),
        }
        if look.brightness != 0.0 {
            for v in &mut canvas.px {
                *v += look.brightness as f32;
            }
        }
        let out = Tensor::from_slice(&canvas.px)
            .view([3, s as i64, s as i64])
            .round()
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8);
        image.copy_(&out);
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

/// Bounding box of the weights that change a pixel (at least half a grey level).
fn nonzero_box(weight: &Tensor) -> Option<PixelBox> {
    let on = weight.get(0).ge(0.5 / 255.0); // [h, w] bool
    let rows: Vec<bool> = Vec::try_from(on.any_dim(1, false)).ok()?;
    let cols: Vec<bool> = Vec::try_from(on.any_dim(0, false)).ok()?;
    let first = |v: &[bool]| v.iter().position(|&b| b);
    let last = |v: &[bool]| v.iter().rposition(|&b| b);
    let (y0, y1, x0, x1) = (first(&rows)?, last(&rows)?, first(&cols)?, last(&cols)?);
    Some(PixelBox::spanning(x0, y0, x1, y1))
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
            |seed| -> Vec<PixelBox> { (0..20).map(|i| a.box_for(seed, Split::Train, i)).collect() };
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
                PixelBox::square(48, 0, 16)
            );
        }
        assert_eq!(
            art(&fixed([0.0, 1.0]), 64).box_for(0, Split::Test, 3),
            PixelBox::square(0, 48, 16)
        );
        assert_eq!(
            art(&fixed([0.5, 0.5]), 64).box_for(0, Split::Test, 3),
            PixelBox::square(24, 24, 16)
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
                    let inside = b.is_some_and(|b| b.placed.contains(x, y));
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
        let at = a.placement_for(0, Split::Test, 5);
        let (placed, mask) = (at.placed, at.visible);
        assert_eq!(
            (mask.x - placed.x, mask.y - placed.y, mask.w, mask.h),
            (4, 2, 10, 4)
        );
        let out = a.stamp(&grey(1, 64), &[Some(at)]);
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
        let at = a.placement_for(0, Split::Test, 0);
        let out = a.stamp(&grey(1, 32), &[Some(at)]);
        let b = at.placed;
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
        let some = |v: &[Option<Placement>]| v.iter().map(Option::is_some).collect::<Vec<_>>();
        assert_eq!(some(&as_train), [true, false, false, true, false]);
        assert_eq!(some(&flipped), [false, true, true, false, true]);
        assert!(clean.iter().all(Option::is_none));
        // A stamped image gets the same box in every variant (the twins share it).
        assert_eq!(as_train[0], Some(a.placement_for(0, Split::Test, 0)));
        assert_eq!(flipped[1], Some(a.placement_for(0, Split::Test, 1)));
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
        let old: PixelBox = serde_json::from_str(r#"{"x": 1, "y": 2, "side": 5}"#).unwrap();
        assert_eq!(old, PixelBox::square(1, 2, 5));
        let new: PixelBox = serde_json::from_str(r#"{"x": 1, "y": 2, "w": 5, "h": 3}"#).unwrap();
        assert_eq!(
            serde_json::to_value(new).unwrap(),
            serde_json::json!({"x": 1, "y": 2, "w": 5, "h": 3})
        );
    }

    /// A varied spec, with every range.
    fn varied() -> WatermarkSpec {
        WatermarkSpec {
            shape: Shape::Text,
            texts: vec!["R".into(), "L".into()],
            colour: [250, 250, 250],
            size: 0.2,
            vary: Variation {
                scale: Some([0.7, 1.3]),
                rotation: Some([-20.0, 20.0]),
                opacity: Some([0.6, 1.0]),
                brightness: Some([-40.0, 0.0]),
                blur: Some([0.0, 1.0]),
                jpeg: None,
            },
            region: Some([0.0, 0.0, 1.0, 0.3]),
            ..WatermarkSpec::default()
        }
    }

    #[test]
    fn a_varied_text_changes_look_and_place_per_image_inside_its_band() {
        let a = art(&varied(), 64);
        let placements: Vec<Placement> = (0..200)
            .map(|i| a.placement_for(5, Split::Train, i))
            .collect();
        // Seeded: the same placements again, others with another seed.
        assert_eq!(
            placements,
            (0..200)
                .map(|i| a.placement_for(5, Split::Train, i))
                .collect::<Vec<_>>()
        );
        assert_ne!(placements[0], a.placement_for(6, Split::Train, 0));
        let sizes: std::collections::BTreeSet<(i64, i64)> = placements
            .iter()
            .map(|p| (p.placed.w, p.placed.h))
            .collect();
        assert!(sizes.len() > 10, "extents vary: {sizes:?}");
        let texts: std::collections::BTreeSet<usize> =
            placements.iter().map(|p| p.look.text).collect();
        let fonts: std::collections::BTreeSet<usize> =
            placements.iter().map(|p| p.look.font).collect();
        assert_eq!(
            (texts.len(), fonts.len()),
            (2, 2),
            "both letters, both shipped fonts"
        );
        for p in &placements {
            let b = p.placed;
            assert!(
                b.x >= 0 && b.x + b.w <= 64 && b.y >= 0 && b.y + b.h <= 64,
                "{b:?}"
            );
            // The band is the top 30%: the box starts in it and ends by its
            // bottom edge when it fits.
            assert!(
                b.y + b.h <= (0.3f64 * 64.0).round() as i64 || b.y == 0,
                "{b:?}"
            );
            assert!(
                (0.7..=1.3).contains(&p.look.scale) && (-20.0..=20.0).contains(&p.look.rotation)
            );
        }
        // The pixels: ink inside the mask box, nothing outside the placed box.
        let images = grey(8, 64);
        let some: Vec<Option<Placement>> = placements[..8].iter().copied().map(Some).collect();
        let out = a.stamp(&images, &some);
        for (i, p) in placements[..8].iter().enumerate() {
            let mask = p.visible;
            let diff = (out.get(i as i64).to_kind(Kind::Int64) - 128).abs();
            let changed: Vec<i64> =
                Vec::try_from(diff.sum_dim_intlist(0, false, Kind::Int64).flatten(0, -1)).unwrap();
            let mut inside = 0;
            for (k, &d) in changed.iter().enumerate() {
                let (x, y) = ((k % 64) as i64, (k / 64) as i64);
                if d > 0 {
                    assert!(
                        p.placed.contains(x, y),
                        "image {i}: a changed pixel at ({x},{y}) outside {:?}",
                        p.placed
                    );
                    inside += mask.contains(x, y) as usize;
                }
            }
            assert!(inside > 0, "image {i}: no ink in its mask box");
        }
        // A plain spec keeps exactly the positions it had: variation draws
        // from a stream of its own.
        let plain = art(&spec(), 64);
        let with_vary = art(
            &WatermarkSpec {
                vary: Variation {
                    opacity: Some([0.5, 1.0]),
                    ..Variation::default()
                },
                ..spec()
            },
            64,
        );
        for i in 0..50 {
            assert_eq!(
                plain.box_for(1, Split::Test, i),
                with_vary.box_for(1, Split::Test, i)
            );
        }
    }

    #[test]
    fn jpeg_re_encoding_touches_the_whole_stamped_image_only() {
        let spec = WatermarkSpec {
            vary: Variation {
                jpeg: Some([20.0, 20.0]),
                ..Variation::default()
            },
            ..spec()
        };
        let a = art(&spec, 32);
        // A textured image: JPEG at quality 20 changes it away from the box too.
        let images = Tensor::arange(3 * 32 * 32, (Kind::Int64, tch::Device::Cpu))
            .remainder(251)
            .to_kind(Kind::Uint8)
            .view([1, 3, 32, 32]);
        let at = a.placement_for(0, Split::Test, 0);
        assert_eq!(at.look.jpeg, 20);
        let out = a.stamp(&images, &[Some(at)]);
        let far = (0..32)
            .flat_map(|y| (0..32).map(move |x| (x, y)))
            .find(|&(x, y)| !at.placed.dilated(8).contains(x, y));
        let (x, y) = far.unwrap();
        assert_ne!(pixel(&out, 0, x, y), pixel(&images, 0, x, y), "re-encoded");
        assert_eq!(
            a.stamp(&images, &[None]).equal(&images),
            true,
            "unstamped images untouched"
        );
    }

    #[test]
    fn global_artefacts_change_the_whole_image_as_specified() {
        let global = |shape, strength, size, colour| WatermarkSpec {
            shape,
            strength,
            size,
            colour,
            ..WatermarkSpec::default()
        };
        let images = grey(2, 16);
        let stamp = |spec: &WatermarkSpec, images: &Tensor| {
            let a = art(spec, 16);
            assert!(a.is_global());
            let at = a.placement_for(0, Split::Test, 0);
            assert_eq!(
                (at.placed, at.visible),
                (PixelBox::square(0, 0, 16), PixelBox::square(0, 0, 16))
            );
            a.stamp(images, &[Some(at), None])
        };
        // Tint: 128 * 0.75 + colour * 0.25 everywhere.
        let out = stamp(&global(Shape::Tint, 0.25, 0.12, [255, 0, 0]), &images);
        for (x, y) in [(0, 0), (7, 9), (15, 15)] {
            assert_eq!(pixel(&out, 0, x, y), [160, 96, 96]);
            assert_eq!(
                pixel(&out, 1, x, y),
                [128, 128, 128],
                "the second image is not stamped"
            );
        }
        // Border: a frame of round(0.125 * 16) = 2 px, the inside untouched.
        let out = stamp(&global(Shape::Border, 0.0, 0.125, [0, 0, 0]), &images);
        assert_eq!(pixel(&out, 0, 1, 8), [0, 0, 0]);
        assert_eq!(pixel(&out, 0, 14, 14), [0, 0, 0]);
        assert_eq!(pixel(&out, 0, 2, 2), [128, 128, 128]);
        // Noise: the same texture added to every image it stamps.
        let noise = global(Shape::Noise, 20.0, 0.12, [0, 0, 0]);
        let a = art(&noise, 16);
        let both = a.plan(0, Split::Test, &[0, 0], 0, Variant::AsTrain);
        let flat = grey(2, 16);
        let out = a.stamp(&flat, &both).to_kind(Kind::Int64) - 128;
        assert!(out.get(0).equal(&out.get(1)), "one fixed texture");
        let spread = out.get(0).abs().max().int64_value(&[]);
        assert!((10..=20).contains(&spread), "amplitude {spread}");
        // Blur: a single bright pixel spreads, the total stays.
        let dot = Tensor::zeros([1, 3, 16, 16], (Kind::Uint8, tch::Device::Cpu));
        let _ = dot.get(0).narrow(1, 8, 1).narrow(2, 8, 1).fill_(255);
        let out = stamp(
            &global(Shape::Blur, 1.0, 0.12, [0, 0, 0]),
            &Tensor::cat(&[&dot, &dot], 0),
        );
        assert!(pixel(&out, 0, 8, 8)[0] < 255 && pixel(&out, 0, 9, 8)[0] > 0);
        // Validation names the key.
        for (spec, key) in [
            (global(Shape::Tint, 0.0, 0.12, [0, 0, 0]), "strength"),
            (global(Shape::Tint, 1.5, 0.12, [0, 0, 0]), "strength"),
            (
                WatermarkSpec {
                    region: Some([0.0, 0.0, 1.0, 0.2]),
                    ..global(Shape::Noise, 5.0, 0.1, [0, 0, 0])
                },
                "global",
            ),
            (
                WatermarkSpec {
                    shape: Shape::Text,
                    ..WatermarkSpec::default()
                },
                "texts",
            ),
            (
                WatermarkSpec {
                    vary: Variation {
                        scale: Some([1.2, 0.8]),
                        ..Variation::default()
                    },
                    ..spec()
                },
                "vary.scale",
            ),
            (
                WatermarkSpec {
                    region: Some([0.5, 0.0, 0.4, 1.0]),
                    ..spec()
                },
                "region",
            ),
        ] {
            let err = spec.validate().unwrap_err();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn plain_specs_write_the_run_yaml_they_wrote_before() {
        // New fields at their defaults are not written, so run folders of
        // earlier versions compare equal.
        let text = yaml_serde::to_string(&spec()).unwrap();
        for key in [
            "vary",
            "region",
            "texts",
            "fonts",
            "strength",
            "texture_seed",
        ] {
            assert!(!text.contains(key), "{key} in\n{text}");
        }
        let back: WatermarkSpec =
            yaml_serde::from_str(&yaml_serde::to_string(&varied()).unwrap()).unwrap();
        assert_eq!(back, varied());
    }
}
