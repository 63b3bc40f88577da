//! The one image decoder: every image file nave-lab reads (a dataset's
//! folders, `explain`'s input, a localisation benchmark's pictures) is
//! decoded here, by its content rather than its extension (datasets carry
//! PNGs named `.jpg`), as RGB (grey replicated to three channels, alpha
//! dropped), under the `image` crate's default allocation limit (512 MiB), so
//! that a hostile header cannot ask for more.
use std::path::Path;

use image::{imageops::FilterType, ImageDecoder, ImageReader, RgbImage};

/// The file as RGB, or why it does not decode (without its path: callers
/// name the file in their own words).
pub fn decode_rgb(path: &Path) -> Result<RgbImage, String> {
    let image = reader(path)?.decode().map_err(|e| e.to_string())?;
    Ok(image.to_rgb8())
}

/// The file opened, its format guessed from its first bytes.
fn reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>, String> {
    ImageReader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())
}

/// The file as RGB, resized to `size` x `size` (bilinear, as the datasets
/// are read) unless it is that size already.
pub fn decode_rgb_square(path: &Path, size: u32) -> Result<RgbImage, String> {
    let rgb = decode_rgb(path)?;
    Ok(if rgb.dimensions() == (size, size) {
        rgb
    } else {
        image::imageops::resize(&rgb, size, size, FilterType::Triangle)
    })
}

/// The file's width, height and colour mode (`Rgb8`, `L8` ...) from its
/// header, without decoding the pixels; or why it cannot be read.
pub fn header(path: &Path) -> Result<(u32, u32, String), String> {
    let decoder = reader(path)?.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    Ok((w, h, format!("{:?}", decoder.color_type())))
}

/// How an image becomes the model's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// Resized to the side, the aspect not kept (how nave-lab reads its
    /// datasets).
    #[default]
    Stretch,
    /// The shorter side resized to `shorter` (aspect kept), then the centre
    /// cropped to the side: torchvision's `Resize(shorter)` then
    /// `CenterCrop(side)`.
    CentreCrop { shorter: u32 },
}

/// The file as RGB, `side` x `side`, fitted as `fit` says (bilinear).
pub fn decode_rgb_fitted(path: &Path, side: u32, fit: Fit) -> Result<RgbImage, String> {
    match fit {
        Fit::Stretch => decode_rgb_square(path, side),
        Fit::CentreCrop { shorter } => {
            let rgb = decode_rgb(path)?;
            let (w, h) = rgb.dimensions();
            let scale = shorter as f64 / w.min(h).max(1) as f64;
            let (nw, nh) = (
                ((w as f64 * scale).round() as u32).max(side),
                ((h as f64 * scale).round() as u32).max(side),
            );
            let resized = image::imageops::resize(&rgb, nw, nh, FilterType::Triangle);
            let (x, y) = ((nw - side) / 2, (nh - side) / 2);
            Ok(image::imageops::crop_imm(&resized, x, y, side, side).to_image())
        }
    }
}

/// [`decode_rgb`] with an error that names the file.
pub fn open_rgb(path: &Path) -> anyhow::Result<RgbImage> {
    decode_rgb(path).map_err(|why| anyhow::anyhow!("cannot decode image {}: {why}", path.display()))
}

/// [`decode_rgb_square`] with an error that names the file.
pub fn open_rgb_square(path: &Path, size: u32) -> anyhow::Result<RgbImage> {
    decode_rgb_square(path, size)
        .map_err(|why| anyhow::anyhow!("cannot decode image {}: {why}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grey_png_named_jpg_decodes_as_rgb_and_garbage_is_named() {
        let dir = std::env::temp_dir().join(format!("nave-image-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let grey = image::GrayImage::from_fn(6, 4, |x, _| image::Luma([(x * 40) as u8]));
        let path = dir.join("grey.jpg");
        grey.save_with_format(&path, image::ImageFormat::Png)
            .unwrap();
        let rgb = open_rgb(&path).unwrap();
        assert_eq!(rgb.dimensions(), (6, 4));
        assert_eq!(rgb.get_pixel(2, 1).0, [80, 80, 80]);
        let square = open_rgb_square(&path, 8).unwrap();
        assert_eq!(square.dimensions(), (8, 8));
        // Shorter side 4 -> 8 (width 12), then the centre 8 x 8: columns 2..10
        // of the 12, so the grey ramp's middle.
        let cropped = decode_rgb_fitted(&path, 8, Fit::CentreCrop { shorter: 8 }).unwrap();
        assert_eq!(cropped.dimensions(), (8, 8));
        let stretched = decode_rgb_fitted(&path, 8, Fit::Stretch).unwrap();
        assert!(cropped.get_pixel(0, 4).0[0] > stretched.get_pixel(0, 4).0[0]);
        assert!(cropped.get_pixel(7, 4).0[0] < stretched.get_pixel(7, 4).0[0]);

        let junk = dir.join("junk.png");
        std::fs::write(&junk, b"not an image").unwrap();
        let err = open_rgb(&junk).unwrap_err().to_string();
        assert!(err.contains("junk.png"), "{err}");
        assert!(decode_rgb(&junk).unwrap_err().len() > 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
