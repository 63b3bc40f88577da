//! NAVE on one image file (`nave-lab explain`).
//!
//! Preprocessing: the image is decoded, converted to RGB (grayscale
//! replicated), resized to `image_size` x `image_size` (triangle filter, no
//! crop) and normalised with ImageNet's mean and standard deviation, as in
//! training.
use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use crate::config::ClusterMethod;
use crate::data::loader::normalize_u8;
use crate::models::Model;
use crate::nave::{colour, extract};

pub struct ExplainSettings {
    pub taps: Vec<String>,
    pub k: usize,
    pub method: ClusterMethod,
    pub seed: u64,
    pub resolution: Option<i64>,
    pub image_size: i64,
}

pub struct Explanation {
    pub grid: (i64, i64),
    pub feature_dim: i64,
    pub written: Vec<PathBuf>,
}

/// Explains `image` with `model`; writes `<out>` (overlay), `<stem>_avg.png`,
/// `<stem>_labels.png` (cluster index per grid cell) and `<stem>_labels_up.png`
/// (upsampled to the image), and the feature matrix when `save_features` is set.
pub fn explain(
    model: &Model,
    image_path: &Path,
    s: &ExplainSettings,
    out: &Path,
    save_features: Option<&Path>,
    device: Device,
) -> anyhow::Result<Explanation> {
    for t in &s.taps {
        model.tap_index(t)?;
    }
    let img = crate::data::image_file::open_rgb_square(image_path, s.image_size as u32)?;
    let size = s.image_size;
    // [1, 3, S, S] uint8 -> normalised
    let x = Tensor::from_slice(img.as_raw())
        .view([1, size, size, 3])
        .permute([0, 3, 1, 2])
        .to_device(device);
    let feats = extract::features(model, &normalize_u8(&x), &s.taps, s.resolution, 1)?; // [1, D, h, w]
    let (_, d, h, w) = feats.size4()?;
    let rows = extract::to_rows(&feats); // [h*w, D]
    let labels = crate::nave::cluster(&rows, s.method, s.k, s.seed, 1e-4, 300)?;
    let labels: Vec<i64> = Vec::try_from(labels.to_device(Device::Cpu))?;
    let up = colour::upsample_labels(&labels, h as usize, w as usize, size as usize);
    let stem = out.with_extension("");
    let stem = stem.to_string_lossy();
    // The files written, in order: the overlay, the average-colour image, the
    // labels on the grid and upsampled to the image.
    let overlay = colour::overlay(&img, &up);
    let avg = colour::average_colour(&img, &up);
    let grid = colour::label_image(&labels, w as u32, h as u32);
    let grid_up = colour::label_image(&up, size as u32, size as u32);
    let mut written = vec![
        out.to_path_buf(),
        PathBuf::from(format!("{stem}_avg.png")),
        PathBuf::from(format!("{stem}_labels.png")),
        PathBuf::from(format!("{stem}_labels_up.png")),
    ];
    crate::io::write_png(&overlay, &written[0])?;
    crate::io::write_png(&avg, &written[1])?;
    crate::io::write_png(&grid, &written[2])?;
    crate::io::write_png(&grid_up, &written[3])?;
    if let Some(path) = save_features {
        let v: Vec<f32> = Vec::try_from(rows.to_device(Device::Cpu).contiguous().flatten(0, -1))?;
        crate::io::write_npy_f32(path, &[(h * w) as usize, d as usize], &v)?;
        written.push(path.to_path_buf());
    }
    Ok(Explanation {
        grid: (h, w),
        feature_dim: d,
        written,
    })
}
