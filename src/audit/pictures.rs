//! The audit's pictures: per probe the overlay, average-colour image and
//! label map of a run, and per regime the average-colour map over its runs.
use std::path::Path;

use image::RgbImage;
use tch::{Device, Tensor};

use super::measures::Grid;
use crate::nave::colour;

pub(super) fn rgb_image(images: &Tensor, i: i64) -> RgbImage {
    let s = images.size()[2];
    let hwc = images
        .get(i)
        .permute([1, 2, 0])
        .contiguous()
        .to_device(Device::Cpu);
    RgbImage::from_raw(
        s as u32,
        s as u32,
        Vec::<u8>::try_from(hwc.flatten(0, -1)).expect("u8 image"),
    )
    .expect("size")
}

/// Writes one probe view's pictures, `p{p}_{tag}_{kind}.png`: the overlay,
/// the average-colour image, the label map (grey cluster indices) and the
/// same map in the palette, for probe `p`, image `i` of `images`. Returns
/// the average-colour image.
pub(super) fn write_probe_pictures(
    grid: &Grid,
    labels: &[i64],
    images: &Tensor,
    (i, p): (usize, usize),
    tag: &str,
    run_dir: &Path,
) -> anyhow::Result<RgbImage> {
    let up = grid.upsample(labels);
    let img = rgb_image(images, i as i64);
    let avg = colour::average_colour(&img, &up);
    let name = |kind: &str| run_dir.join(format!("p{p:03}_{tag}_{kind}.png"));
    crate::io::write_png(&colour::overlay(&img, &up), &name("overlay"))?;
    crate::io::write_png(&avg, &name("avg"))?;
    let (w, h) = (grid.w as u32, grid.h as u32);
    crate::io::write_png(&colour::label_image(labels, w, h), &name("labels"))?;
    // The same map in the palette, as the report shows it.
    crate::io::write_png(&colour::label_picture(labels, w, h), &name("labels_colour"))?;
    Ok(avg)
}

/// The pictures of one run's first probes, and their average-colour images
/// collected over the repeats.
pub(super) struct ProbePictures {
    pictured: usize,
    /// Per pictured probe, clean ones then watermarked: one image per repeat.
    averages: Vec<Vec<RgbImage>>,
}

impl ProbePictures {
    pub fn new(pictured: usize) -> Self {
        Self {
            pictured,
            averages: vec![Vec::new(); 2 * pictured],
        }
    }

    /// Adds one clustering of the probes (`both`: clean then watermarked
    /// images); the first repeat's overlays and label maps are written too.
    pub fn add(
        &mut self,
        grid: &Grid,
        labels: &[Vec<i64>],
        both: &Tensor,
        write: bool,
        run_dir: &Path,
    ) -> anyhow::Result<()> {
        let n = labels.len() / 2;
        for p in 0..self.pictured {
            for (v, tag) in [(0usize, "clean"), (1, "wm")] {
                let i = v * n + p;
                let avg = if write {
                    write_probe_pictures(grid, &labels[i], both, (i, p), tag, run_dir)?
                } else {
                    let img = rgb_image(both, i as i64);
                    colour::average_colour(&img, &grid.upsample(&labels[i]))
                };
                self.averages[v * self.pictured + p].push(avg);
            }
        }
        Ok(())
    }

    /// Per pictured probe, the (clean, watermarked) average over the repeats;
    /// with more than one repeat it is written too (`pNNN_{tag}_avg_repeats.png`),
    /// so that a cached run gives the regime maps a fresh one does.
    pub fn finish(&self, run_dir: &Path) -> anyhow::Result<Vec<(RgbImage, RgbImage)>> {
        let pairs = self.averages();
        let repeats = self.averages.first().map_or(0, Vec::len);
        if repeats > 1 {
            for (p, (clean, marked)) in pairs.iter().enumerate() {
                crate::io::write_png(
                    clean,
                    &run_dir.join(format!("p{p:03}_clean_avg_repeats.png")),
                )?;
                crate::io::write_png(marked, &run_dir.join(format!("p{p:03}_wm_avg_repeats.png")))?;
            }
        }
        Ok(pairs)
    }

    /// Per pictured probe, the (clean, watermarked) average over the repeats.
    fn averages(&self) -> Vec<(RgbImage, RgbImage)> {
        let mean = |v: &Vec<RgbImage>| colour::mean_image(v).expect("at least one repeat");
        let (clean, marked) = self.averages.split_at(self.pictured);
        clean
            .iter()
            .map(mean)
            .zip(marked.iter().map(mean))
            .collect()
    }
}

/// A cached run's average-colour images (over its repeats), read back from its folder.
pub(super) fn load_averages(
    run_dir: &Path,
    pictured: usize,
) -> Result<Vec<(RgbImage, RgbImage)>, String> {
    let load = |p: usize, tag: &str| {
        let over_repeats = run_dir.join(format!("p{p:03}_{tag}_avg_repeats.png"));
        let path = if over_repeats.is_file() {
            over_repeats
        } else {
            run_dir.join(format!("p{p:03}_{tag}_avg.png"))
        };
        crate::data::image_file::decode_rgb(&path)
    };
    (0..pictured)
        .map(|p| Ok((load(p, "clean")?, load(p, "wm")?)))
        .collect()
}

/// A regime's average-colour map per probe: the mean over its runs (seeds).
pub(super) fn write_regime_maps(
    dir: &Path,
    per_run: &[Vec<(RgbImage, RgbImage)>],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let pictured = per_run.iter().map(Vec::len).min().unwrap_or(0);
    for p in 0..pictured {
        for (tag, pick) in [("clean", 0usize), ("wm", 1)] {
            let imgs: Vec<RgbImage> = per_run
                .iter()
                .map(|pairs| {
                    if pick == 0 {
                        pairs[p].0.clone()
                    } else {
                        pairs[p].1.clone()
                    }
                })
                .collect();
            let mean = colour::mean_image(&imgs).expect("one run at least");
            crate::io::write_png(&mean, &dir.join(format!("p{p:03}_{tag}_avgmap.png")))?;
        }
    }
    Ok(())
}
