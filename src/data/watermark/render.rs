//! Drawing artefacts: the local picture of one image's look (a square, an
//! RGBA patch or a text, scaled, rotated, blurred, dimmed or brightened), and
//! the global effects (a tint, a fixed noise texture, a border, a blur) and
//! JPEG re-encoding applied to a whole image. Real shortcuts vary image by
//! image (laterality markers differ in letter, font, size, rotation,
//! contrast and compression; Zech et al. 2018), so the look is drawn per
//! image by the plan and rendered here.
//!
//! Pictures are premultiplied while they are resampled or blurred, so that
//! transparent pixels do not bleed their (meaningless) colour into the edge.
use std::sync::OnceLock;

use ab_glyph::FontRef;
use image::{ImageBuffer, Rgba};

/// An RGBA picture in floats: colour 0..=255, alpha 0..=1, row-major.
#[derive(Debug, Clone)]
pub(crate) struct Picture {
    pub w: usize,
    pub h: usize,
    /// `[3][h][w]` colour, not premultiplied.
    pub rgb: Vec<f32>,
    /// `[h][w]` alpha.
    pub alpha: Vec<f32>,
}

type Premultiplied = ImageBuffer<Rgba<f32>, Vec<f32>>;

impl Picture {
    /// A filled `w` x `h` rectangle of `colour`.
    pub fn solid(w: usize, h: usize, colour: [u8; 3]) -> Self {
        let mut rgb = Vec::with_capacity(3 * w * h);
        for c in colour {
            rgb.extend(std::iter::repeat_n(c as f32, w * h));
        }
        Self {
            w,
            h,
            rgb,
            alpha: vec![1.0; w * h],
        }
    }

    /// From a premultiplied RGBA image with colour in 0..=1.
    fn from_premultiplied(img: &Premultiplied) -> Self {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (mut rgb, mut alpha) = (vec![0f32; 3 * w * h], vec![0f32; w * h]);
        for (i, px) in img.pixels().enumerate() {
            let a = px.0[3].clamp(0.0, 1.0);
            alpha[i] = a;
            for c in 0..3 {
                let v = if a > 0.0 { px.0[c] / a } else { 0.0 };
                rgb[c * w * h + i] = (v * 255.0).clamp(0.0, 255.0);
            }
        }
        Self { w, h, rgb, alpha }
    }

    fn premultiplied(&self) -> Premultiplied {
        let n = self.w * self.h;
        ImageBuffer::from_fn(self.w as u32, self.h as u32, |x, y| {
            let i = y as usize * self.w + x as usize;
            let a = self.alpha[i];
            Rgba([
                self.rgb[i] / 255.0 * a,
                self.rgb[n + i] / 255.0 * a,
                self.rgb[2 * n + i] / 255.0 * a,
                a,
            ])
        })
    }

    /// Scaled so that its longer side is `longer` pixels, keeping its aspect.
    pub fn scaled_to(&self, longer: usize) -> Self {
        let scale = longer as f64 / self.w.max(self.h) as f64;
        let w = ((self.w as f64 * scale).round() as u32).max(1);
        let h = ((self.h as f64 * scale).round() as u32).max(1);
        let scaled = image::imageops::resize(
            &self.premultiplied(),
            w,
            h,
            image::imageops::FilterType::Triangle,
        );
        Self::from_premultiplied(&scaled)
    }

    /// Turned by `degrees` (counter-clockwise) about its centre, on a canvas
    /// that holds the whole turned picture; bilinear.
    pub fn rotated(&self, degrees: f64) -> Self {
        if degrees.abs() < 1e-6 {
            return self.clone();
        }
        let (sin, cos) = degrees.to_radians().sin_cos();
        let (w, h) = (self.w as f64, self.h as f64);
        let nw = (w * cos.abs() + h * sin.abs()).ceil().max(1.0) as u32;
        let nh = (w * sin.abs() + h * cos.abs()).ceil().max(1.0) as u32;
        let src = self.premultiplied();
        let sample = |x: f64, y: f64, c: usize| -> f32 {
            // Bilinear over the source, transparent outside it.
            let (x0, y0) = (x.floor(), y.floor());
            let (fx, fy) = ((x - x0) as f32, (y - y0) as f32);
            let at = |xi: f64, yi: f64| -> f32 {
                if xi < 0.0 || yi < 0.0 || xi >= w || yi >= h {
                    0.0
                } else {
                    src.get_pixel(xi as u32, yi as u32).0[c]
                }
            };
            at(x0, y0) * (1.0 - fx) * (1.0 - fy)
                + at(x0 + 1.0, y0) * fx * (1.0 - fy)
                + at(x0, y0 + 1.0) * (1.0 - fx) * fy
                + at(x0 + 1.0, y0 + 1.0) * fx * fy
        };
        let (cx, cy) = (w / 2.0, h / 2.0);
        let (ncx, ncy) = (nw as f64 / 2.0, nh as f64 / 2.0);
        let turned = ImageBuffer::from_fn(nw, nh, |x, y| {
            // The source point that lands on this pixel's centre.
            let (dx, dy) = (x as f64 + 0.5 - ncx, y as f64 + 0.5 - ncy);
            let sx = cos * dx - sin * dy + cx - 0.5;
            let sy = sin * dx + cos * dy + cy - 0.5;
            Rgba([0, 1, 2, 3].map(|c| sample(sx, sy, c)))
        });
        Self::from_premultiplied(&turned)
    }

    /// Blurred with a Gaussian of `sigma` pixels, on a canvas grown by three
    /// sigmas so that the blur is not cut at the edge.
    pub fn blurred(&self, sigma: f64) -> Self {
        if sigma < 0.05 {
            return self.clone();
        }
        let pad = (3.0 * sigma).ceil() as u32;
        let src = self.premultiplied();
        let mut canvas = Premultiplied::new(src.width() + 2 * pad, src.height() + 2 * pad);
        image::imageops::replace(&mut canvas, &src, pad as i64, pad as i64);
        Self::from_premultiplied(&image::imageops::blur(&canvas, sigma as f32))
    }

    /// Alpha times `opacity`, colour plus `brightness` grey levels.
    pub fn toned(mut self, opacity: f64, brightness: f64) -> Self {
        for a in &mut self.alpha {
            *a = (*a * opacity as f32).clamp(0.0, 1.0);
        }
        if brightness != 0.0 {
            for v in &mut self.rgb {
                *v = (*v + brightness as f32).clamp(0.0, 255.0);
            }
        }
        self
    }
}

/// The fonts shipped with nave-lab (DejaVu, Bitstream Vera licence:
/// assets/fonts/LICENSE-DejaVu.txt), for text artefacts that name none.
pub(crate) fn builtin_fonts() -> &'static [Vec<u8>] {
    static FONTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FONTS.get_or_init(|| {
        vec![
            include_bytes!("../../../assets/fonts/DejaVuSans-Bold.ttf").to_vec(),
            include_bytes!("../../../assets/fonts/DejaVuSerif.ttf").to_vec(),
        ]
    })
}

/// `text` in `font`, `height` pixels tall, as a picture of `colour` whose
/// alpha is the glyphs' coverage (trimmed to the ink).
pub(crate) fn text_picture(
    text: &str,
    font: &[u8],
    height: usize,
    colour: [u8; 3],
) -> anyhow::Result<Picture> {
    let font = FontRef::try_from_slice(font)
        .map_err(|e| anyhow::anyhow!("watermark.fonts: not a TrueType or OpenType font ({e})"))?;
    let scale = height.max(1) as f32;
    let (tw, th) = imageproc::drawing::text_size(scale, &font, text);
    let pad = height as u32 / 4 + 2;
    let mut coverage = image::GrayImage::new(tw + 2 * pad, th + 2 * pad);
    imageproc::drawing::draw_text_mut(
        &mut coverage,
        image::Luma([255u8]),
        pad as i32,
        pad as i32,
        scale,
        &font,
        text,
    );
    // Trim to the ink: the picture's box is the text's own.
    let (w, h) = (coverage.width() as usize, coverage.height() as usize);
    let ink = |x: usize, y: usize| coverage.get_pixel(x as u32, y as u32).0[0] > 0;
    let rows: Vec<usize> = (0..h).filter(|&y| (0..w).any(|x| ink(x, y))).collect();
    let cols: Vec<usize> = (0..w).filter(|&x| (0..h).any(|y| ink(x, y))).collect();
    let (Some(&y0), Some(&y1), Some(&x0), Some(&x1)) =
        (rows.first(), rows.last(), cols.first(), cols.last())
    else {
        anyhow::bail!("watermark.texts: '{text}' draws no ink in this font");
    };
    let (pw, ph) = (x1 - x0 + 1, y1 - y0 + 1);
    let mut picture = Picture::solid(pw, ph, colour);
    for y in 0..ph {
        for x in 0..pw {
            picture.alpha[y * pw + x] =
                coverage.get_pixel((x0 + x) as u32, (y0 + y) as u32).0[0] as f32 / 255.0;
        }
    }
    Ok(picture)
}

/// An RGBA file as a picture (colour not premultiplied).
pub(crate) fn file_picture(path: &std::path::Path) -> anyhow::Result<Picture> {
    let img = image::open(path)
        .map_err(|e| {
            anyhow::anyhow!(
                "watermark.patch {}: cannot read it as a picture ({e}); give an RGBA PNG",
                path.display()
            )
        })?
        .to_rgba32f();
    let mut pre = img;
    for px in pre.pixels_mut() {
        let a = px.0[3];
        for c in 0..3 {
            px.0[c] *= a;
        }
    }
    Ok(Picture::from_premultiplied(&pre))
}

/// A whole image `[3][s][s]` in floats 0..=255, for the global effects.
pub(crate) struct Canvas {
    pub s: usize,
    pub px: Vec<f32>,
}

impl Canvas {
    /// Blends `colour` over the whole image at `weight`.
    pub fn tint(&mut self, colour: [u8; 3], weight: f64) {
        let n = self.s * self.s;
        for c in 0..3 {
            for v in &mut self.px[c * n..(c + 1) * n] {
                *v = *v * (1.0 - weight as f32) + colour[c] as f32 * weight as f32;
            }
        }
    }

    /// Adds `amplitude` times a fixed texture in [-1, 1] (the same on every
    /// image, as a detector's fixed-pattern noise is), grey.
    pub fn add_texture(&mut self, texture: &[f32], amplitude: f64) {
        let n = self.s * self.s;
        for c in 0..3 {
            for (v, t) in self.px[c * n..(c + 1) * n].iter_mut().zip(texture) {
                *v += t * amplitude as f32;
            }
        }
    }

    /// A frame `width` pixels wide of `colour`, blended at `opacity`.
    pub fn frame(&mut self, width: usize, colour: [u8; 3], opacity: f64) {
        let (s, n) = (self.s, self.s * self.s);
        for y in 0..s {
            for x in 0..s {
                let edge = x.min(y).min(s - 1 - x).min(s - 1 - y);
                if edge < width {
                    for c in 0..3 {
                        let v = &mut self.px[c * n + y * s + x];
                        *v = *v * (1.0 - opacity as f32) + colour[c] as f32 * opacity as f32;
                    }
                }
            }
        }
    }

    /// A Gaussian blur of `sigma` pixels over the whole image (edges clamped
    /// as the `image` crate does).
    pub fn blur(&mut self, sigma: f64) {
        if sigma < 0.05 {
            return;
        }
        let (s, n) = (self.s, self.s * self.s);
        let img: ImageBuffer<image::Rgb<f32>, Vec<f32>> =
            ImageBuffer::from_fn(s as u32, s as u32, |x, y| {
                let i = y as usize * s + x as usize;
                image::Rgb([self.px[i], self.px[n + i], self.px[2 * n + i]])
            });
        let blurred = image::imageops::blur(&img, sigma as f32);
        for (i, px) in blurred.pixels().enumerate() {
            for c in 0..3 {
                self.px[c * n + i] = px.0[c];
            }
        }
    }
}

/// A fixed noise texture of side `s`, values in [-1, 1], from `seed`:
/// white noise smoothed over about a pixel, rescaled, so that it survives
/// the resizing of augmentation a little.
pub(crate) fn noise_texture(seed: u64, s: usize) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x4E4F_4953_4500);
    let raw: Vec<f32> = (0..s * s).map(|_| rng.gen_range(-1.0f32..=1.0)).collect();
    let mut canvas = Canvas {
        s,
        px: [raw.clone(), raw.clone(), raw].concat(),
    };
    canvas.blur(0.7);
    let grey = canvas.px[..s * s].to_vec();
    let peak = grey.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    grey.iter().map(|v| v / peak).collect()
}

/// `rgb` (`[3][s][s]` u8, planar) encoded as a JPEG at `quality` and decoded
/// again: the compression a re-saved image carries.
pub(crate) fn jpeg_roundtrip(rgb: &[u8], s: usize, quality: u8) -> anyhow::Result<Vec<u8>> {
    let n = s * s;
    let interleaved = image::RgbImage::from_fn(s as u32, s as u32, |x, y| {
        let i = y as usize * s + x as usize;
        image::Rgb([rgb[i], rgb[n + i], rgb[2 * n + i]])
    });
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality.clamp(1, 100))
        .encode_image(&interleaved)?;
    let back = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)?.to_rgb8();
    let mut out = vec![0u8; 3 * n];
    for (i, px) in back.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = px.0[c];
        }
    }
    Ok(out)
}
