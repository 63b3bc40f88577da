//! The Clever Hans measures of one run: cluster the probes' features, then
//! per probe how well a segment isolates the artefact's box (raw and against
//! what the clustering grid allows) and how much the artefact regroups the
//! rest of the image.
use tch::{Device, Tensor};

use super::AuditSettings;
use crate::config::Scope;
use crate::data::PixelBox;
use crate::nave::{self, colour, extract};

/// The clustering grid over the image: `h x w` cells, and the grid cell of
/// every pixel (a segment is a union of cells).
pub(super) struct Grid {
    pub h: usize,
    pub w: usize,
    pub size: usize,
    pub cell_of_pixel: Vec<i64>,
}

impl Grid {
    pub fn of(feats: &Tensor, size: i64) -> anyhow::Result<Self> {
        let (_, _, h, w) = feats.size4()?;
        let (h, w, size) = (h as usize, w as usize, size as usize);
        let cell_of_pixel =
            colour::upsample_labels(&(0..(h * w) as i64).collect::<Vec<_>>(), h, w, size);
        Ok(Self {
            h,
            w,
            size,
            cell_of_pixel,
        })
    }

    /// A label per cell, as a label per pixel (nearest neighbour, as NAVE upsamples).
    pub fn upsample(&self, labels: &[i64]) -> Vec<i64> {
        colour::upsample_labels(labels, self.h, self.w, self.size)
    }
}

/// One clustering of the probes' features `[2N, D, h, w]` (clean probes,
/// then watermarked): a label list of h*w cells per image.
pub(super) fn cluster_probes(
    feats: &Tensor,
    settings: &AuditSettings,
    seed: u64,
) -> anyhow::Result<Vec<Vec<i64>>> {
    let (n2, _, h, w) = feats.size4()?;
    let cluster = |rows: &Tensor| {
        nave::cluster(
            rows,
            settings.method,
            settings.k,
            seed,
            settings.tol,
            settings.max_iter,
        )
        .map(|l| l.to_device(Device::Cpu))
    };
    match settings.scope {
        Scope::Set => {
            let l = cluster(&extract::to_rows(feats))?.view([n2, h * w]);
            Ok((0..n2)
                .map(|i| Vec::<i64>::try_from(l.get(i)).expect("labels"))
                .collect())
        }
        Scope::Image => (0..n2)
            .map(|i| {
                let labels = cluster(&extract::to_rows(&feats.narrow(0, i, 1)))?;
                Ok(Vec::<i64>::try_from(labels).expect("labels"))
            })
            .collect(),
    }
}

/// Sums of the measures over probes and repeats.
#[derive(Default)]
pub(super) struct Tally {
    iou: f64,
    fair: f64,
    recall: f64,
    precision: f64,
    shift: f64,
    count: usize,
}

/// Means of the measures.
pub(super) struct Means {
    pub iou: f64,
    pub fair: f64,
    pub recall: f64,
    pub precision: f64,
    pub shift: f64,
}

impl Tally {
    /// Adds one clustering of N probes (`labels`: clean ones, then
    /// watermarked) with the artefact's visible box on each.
    pub fn add(&mut self, grid: &Grid, labels: &[Vec<i64>], boxes: &[PixelBox]) {
        let n = boxes.len();
        for (p, b) in boxes.iter().enumerate() {
            let clean = grid.upsample(&labels[p]);
            let marked = grid.upsample(&labels[n + p]);
            let iso =
                crate::audit::isolation::isolation(&marked, &grid.cell_of_pixel, grid.size, b);
            self.iou += iso.iou;
            self.fair += iso.fair;
            self.recall += iso.recall;
            self.precision += iso.precision;
            self.shift += crate::audit::isolation::wm_shift(
                &clean,
                &marked,
                grid.size,
                b,
                (b.w.max(b.h) / 2).max(1),
            );
            self.count += 1;
        }
    }

    pub fn means(&self) -> Means {
        let n = self.count.max(1) as f64;
        Means {
            iou: self.iou / n,
            fair: self.fair / n,
            recall: self.recall / n,
            precision: self.precision / n,
            shift: self.shift / n,
        }
    }
}
