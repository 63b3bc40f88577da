//! Where the model looks: the part of each image its prediction of the
//! image's class is most sensitive to, as a grid mask, a candidate beside
//! the clusters.
//!
//! A clustering candidate is a concept the features share; an object whose
//! copies differ (a laterality marker's letter, size, angle and contrast on
//! radiographs) can fall into clusters with the anatomy around it, so that
//! no cluster is the object and no transplant moves the model. The model's
//! own gradient finds it without asking the features to agree: on each
//! image, the cells where gradient x input of the class's log-probability
//! is largest. The candidate faces the same transplant as a cluster's
//! segments, but is weighed by `sharpness` rather than stereotypy (see
//! `Candidate::scored`): tissue the model reads moves it when pasted too,
//! and is no sharper than the same place in the other classes' images.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::loader::normalize_u8;
use crate::data::PixelBox;
use crate::models::Model;

/// A cell joins the region when its sensitivity is at least this share of
/// the image's most sensitive cell's.
const SHARE_OF_PEAK: f64 = 0.25;

/// Images per backward pass.
const BATCH: i64 = 32;

/// Images whose sharpness maps are computed at once (bounds their memory).
const PRESENCE_BATCH: i64 = 64;

/// The mean |gradient x input| of log P(`class`) per cell of `grid`, summed
/// over channels, of uint8 `images`: `[B, h * w]` on the CPU.
fn cell_sensitivity(
    model: &Model,
    images: &Tensor,
    class: usize,
    device: Device,
    grid: (usize, usize),
) -> Tensor {
    tch::with_grad(|| {
        let x = normalize_u8(&images.to_device(device)).set_requires_grad(true);
        let log_p = model
            .forward_t(&x, false)
            .to_kind(Kind::Float)
            .log_softmax(-1, Kind::Float)
            .select(1, class as i64)
            .sum(Kind::Float);
        let grad = Tensor::run_backward(&[log_p], &[&x], false, false)
            .pop()
            .expect("the input's gradient");
        (grad * x.detach())
            .abs()
            .sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
            .adaptive_avg_pool2d([grid.0 as i64, grid.1 as i64])
            .flatten(1, -1)
            .to_device(Device::Cpu)
    })
}

/// Per image of `images` (uint8 `[B, 3, S, S]`), the 4-connected cells of
/// `grid` around its most sensitive cell whose sensitivity (mean |gradient x
/// input| of log P(`class`), summed over channels) is at least
/// `SHARE_OF_PEAK` of that cell's; at most `max_cells` of them, the most
/// sensitive first.
pub fn sensitive_regions(
    model: &Model,
    images: &Tensor,
    class: usize,
    device: Device,
    grid: (usize, usize),
    max_cells: usize,
) -> Vec<Vec<bool>> {
    let (h, w) = grid;
    let n = images.size()[0];
    if n == 0 {
        return Vec::new();
    }
    let mut maps = Vec::new();
    // In batches, so that the graph kept for the gradient stays small.
    for start in (0..n).step_by(BATCH as usize) {
        let batch = images.narrow(0, start, BATCH.min(n - start));
        maps.push(cell_sensitivity(model, &batch, class, device, grid));
    }
    let maps: Vec<f32> =
        Vec::try_from(Tensor::cat(&maps, 0).flatten(0, -1)).expect("float sensitivities");
    maps.chunks(h * w)
        .map(|cells| peak_region(cells, h, w, max_cells))
        .collect()
}

/// Where the model looks, as a verdict keeps it: what finds the region
/// again on any image with the same model (the suspect region on the
/// probes, the places `revise` neutralises in the training images).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookedAt {
    /// The class whose prediction the region moves, by its index.
    pub class: usize,
    /// The grid of the detector's features (rows, columns).
    pub grid: (usize, usize),
    /// The most cells a region may take.
    pub max_cells: usize,
}

impl LookedAt {
    /// Refuses a `LookedAt` read from a file that does not fit images of
    /// `image_size` px and `classes` classes (a grid finer than the pixels,
    /// a class that is not there): it would ask for any amount of memory.
    pub fn check(&self, image_size: i64, classes: usize) -> anyhow::Result<()> {
        let (h, w) = self.grid;
        let side = image_size.max(0) as usize;
        anyhow::ensure!(
            (1..=side).contains(&h) && (1..=side).contains(&w),
            "where the model looks: a grid of {h} x {w} cells does not fit {image_size} px images"
        );
        anyhow::ensure!(
            (1..=h * w).contains(&self.max_cells),
            "where the model looks: {} cells at most, on a grid of {} cells",
            self.max_cells,
            h * w
        );
        anyhow::ensure!(
            self.class < classes,
            "where the model looks: class {} of {classes}",
            self.class
        );
        Ok(())
    }

    /// On each of `images` (uint8 `[B, 3, S, S]`), the box of the largest
    /// group of cells of its region; None where the prediction is not
    /// sensitive to the image at all.
    pub fn boxes(&self, model: &Model, images: &Tensor, device: Device) -> Vec<Option<PixelBox>> {
        let (h, w) = self.grid;
        let size = images.size()[2] as usize;
        sensitive_regions(model, images, self.class, device, self.grid, self.max_cells)
            .iter()
            .map(|mask| super::largest_component_box(mask, h, w, size))
            .collect()
    }

    /// On each of `images` (uint8 `[B, 3, S, S]`), where the model looks
    /// (`boxes`) and how sharp the sharpest stroke there is: the highest
    /// value of the image's sharpness map (`sharpness::sharpness_maps`, on
    /// the image's own scale) inside the box; 0 where there is no box. A
    /// marker the model reads is a stroke sharper than the image around it;
    /// where the model looks on an image without one, it reads tissue no
    /// sharper than the rest of that image.
    pub fn presence(
        &self,
        model: &Model,
        images: &Tensor,
        device: Device,
    ) -> Vec<(Option<PixelBox>, f64)> {
        let boxes = self.boxes(model, images, device);
        let _guard = tch::no_grad_guard();
        let n = images.size()[0];
        let mut out = Vec::with_capacity(boxes.len());
        for start in (0..n).step_by(PRESENCE_BATCH as usize) {
            let batch = images.narrow(0, start, PRESENCE_BATCH.min(n - start));
            let maps = super::sharpness::sharpness_maps(&super::template::high_pass(&batch));
            for (i, found) in boxes[start as usize..start as usize + batch.size()[0] as usize]
                .iter()
                .enumerate()
            {
                let sharpest = found.map_or(0.0, |b| {
                    maps.get(i as i64)
                        .narrow(0, b.y, b.h)
                        .narrow(1, b.x, b.w)
                        .max()
                        .double_value(&[])
                });
                out.push((*found, sharpest));
            }
        }
        out
    }
}

/// The cells around the peak of `cells` (`h x w`) at least `SHARE_OF_PEAK`
/// of it, grown from the peak through 4-neighbours, most sensitive first,
/// up to `max_cells`.
fn peak_region(cells: &[f32], h: usize, w: usize, max_cells: usize) -> Vec<bool> {
    let mut region = vec![false; h * w];
    let Some((peak, &top)) = cells.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) else {
        return region;
    };
    if top <= 0.0 || max_cells == 0 {
        return region;
    }
    let floor = top as f64 * SHARE_OF_PEAK;
    region[peak] = true;
    let mut taken = 1;
    // Grow by the most sensitive neighbour of the region, one cell at a time.
    while taken < max_cells {
        let next = (0..h * w)
            .filter(|&i| !region[i] && cells[i] as f64 >= floor)
            .filter(|&i| {
                let (y, x) = (i / w, i % w);
                (y > 0 && region[i - w])
                    || (y + 1 < h && region[i + w])
                    || (x > 0 && region[i - 1])
                    || (x + 1 < w && region[i + 1])
            })
            .max_by(|&a, &b| cells[a].total_cmp(&cells[b]));
        let Some(i) = next else { break };
        region[i] = true;
        taken += 1;
    }
    region
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, ModelSpec};

    /// Images at ImageNet's mean grey everywhere (about 0 once normalised,
    /// so gradient x input is about 0 there whatever the gradient) but for
    /// a patch of noise, placed in another cell of the 4 x 4 grid in each
    /// image: the region is that cell, wherever the patch moves.
    #[test]
    fn the_region_is_where_the_input_moves_the_model() {
        tch::manual_seed(5);
        let model = Model::new(
            &ModelSpec::plain(Arch::Resnet18, Some(8)),
            2,
            32,
            Device::Cpu,
        )
        .unwrap();
        let mean = Tensor::from_slice(&[124u8, 116, 104]).view([1, 3, 1, 1]);
        let images = mean.repeat([3, 1, 32, 32]);
        let places = [(0, 0), (2, 3), (3, 1)]; // (row, column) of 8 px cells
        for (i, &(row, col)) in places.iter().enumerate() {
            let noise = Tensor::randint(256, [3, 8, 8], (Kind::Uint8, Device::Cpu));
            images
                .get(i as i64)
                .narrow(1, row * 8, 8)
                .narrow(2, col * 8, 8)
                .copy_(&noise);
        }
        let regions = sensitive_regions(&model, &images, 1, Device::Cpu, (4, 4), 1);
        for (region, &(row, col)) in regions.iter().zip(&places) {
            let on: Vec<usize> = (0..16).filter(|&c| region[c]).collect();
            assert_eq!(on, vec![(row * 4 + col) as usize]);
        }
        assert!(
            sensitive_regions(&model, &images.narrow(0, 0, 0), 1, Device::Cpu, (4, 4), 1)
                .is_empty()
        );
    }

    #[test]
    fn the_region_grows_from_the_peak_through_neighbours_above_a_quarter_of_it() {
        // 4 x 4; the peak at (1, 1), a strong cell at (3, 3) not connected,
        // (0, 0) and (0, 2) below a quarter of the peak.
        #[rustfmt::skip]
        let cells = [
            0.1, 0.6, 0.1, 0.0,
            0.7, 1.0, 0.4, 0.0,
            0.0, 0.55, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.9,
        ];
        let region = peak_region(&cells, 4, 4, 16);
        let on: Vec<usize> = (0..16).filter(|&i| region[i]).collect();
        assert_eq!(on, vec![1, 4, 5, 6, 9]);
        // Capped: the peak and its two most sensitive neighbours.
        let region = peak_region(&cells, 4, 4, 3);
        let on: Vec<usize> = (0..16).filter(|&i| region[i]).collect();
        assert_eq!(on, vec![1, 4, 5]);
        assert!(!peak_region(&[0.0; 4], 2, 2, 4).iter().any(|&c| c));
    }

    #[test]
    fn a_looked_at_from_a_file_that_does_not_fit_the_images_is_refused() {
        let ok = LookedAt {
            class: 1,
            grid: (8, 8),
            max_cells: 7,
        };
        ok.check(64, 2).unwrap();
        let refused = |l: LookedAt| l.check(64, 2).unwrap_err().to_string();
        let huge = LookedAt {
            grid: (1 << 40, 8),
            ..ok
        };
        assert!(refused(huge).contains("does not fit 64 px"));
        assert!(refused(LookedAt { grid: (0, 8), ..ok }).contains("does not fit"));
        assert!(refused(LookedAt {
            max_cells: 65,
            ..ok
        })
        .contains("65 cells at most"));
        assert!(refused(LookedAt { max_cells: 0, ..ok }).contains("0 cells at most"));
        assert!(refused(LookedAt { class: 2, ..ok }).contains("class 2 of 2"));
    }
}
