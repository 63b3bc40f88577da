//! Which training files carry the found object: every image scored by the
//! detector's own match (the recurring object's best high-pass correlation
//! anywhere in it, `template::best_matches`), and cut where the detector
//! cuts (halfway between the object's correlation within its class and in
//! the other classes), so that the data can be cleaned file by file.
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{template, RecurringObject};
use crate::data::PixelBox;

/// A recurring object as the detector matches it, in a form audit.json
/// keeps: its high-pass template, the object's box inside it, and the cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectMatch {
    /// `[h, w]`, row-major.
    pub template: Vec<f32>,
    pub h: i64,
    pub w: i64,
    /// The object's box inside the template.
    pub inner: PixelBox,
    /// An image whose best correlation is at least this shows the object.
    pub cut: f64,
}

impl ObjectMatch {
    pub(super) fn of(o: &RecurringObject) -> Self {
        let (_, h, w) = o.template.size3().expect("[1, h, w] template");
        let template = Vec::try_from(o.template.to_kind(Kind::Float).flatten(0, -1))
            .expect("a float template");
        Self {
            template,
            h,
            w,
            inner: o.inner,
            cut: o.halfway,
        }
    }

    /// For tests: the 12 x 12 high-pass window at (`x`, `y`) of the first of
    /// `images`, around an 8 x 8 object 2 px in, matched at `cut`.
    #[cfg(test)]
    pub(crate) fn cut_from_first(images: &Tensor, x: i64, y: i64, cut: f64) -> Self {
        let high = template::high_pass(&images.narrow(0, 0, 1));
        let t = high
            .get(0)
            .get(0)
            .narrow(0, y, 12)
            .narrow(1, x, 12)
            .contiguous();
        Self {
            template: Vec::try_from(t.flatten(0, -1)).expect("a float template"),
            h: 12,
            w: 12,
            inner: PixelBox::square(2, 2, 8),
            cut,
        }
    }

    fn tensor(&self) -> anyhow::Result<Tensor> {
        anyhow::ensure!(
            self.h > 0 && self.w > 0 && self.template.len() as i64 == self.h * self.w,
            "a template of {} values is not {} x {}",
            self.template.len(),
            self.h,
            self.w
        );
        Ok(Tensor::from_slice(&self.template).view([1, self.h, self.w]))
    }
}

/// One training image's score for the object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Carrier {
    /// The image's position in the training set.
    pub index: usize,
    /// The object's best correlation in it (-1 to 1).
    pub correlation: f64,
    /// Where it matches best: the object's box there.
    pub region: PixelBox,
    /// At or above the detector's cut.
    pub carries: bool,
}

/// Images scored per batch (bounds the correlation maps' memory).
const BATCH: i64 = 64;

/// Every image of `images` (uint8 `[N, 3, S, S]`) scored for the object, in
/// the images' order.
pub fn score(object: &ObjectMatch, images: &Tensor) -> anyhow::Result<Vec<Carrier>> {
    let _guard = tch::no_grad_guard();
    let template = object.tensor()?;
    let size = images.size()[2];
    anyhow::ensure!(
        object.h <= size && object.w <= size,
        "the object's template ({} x {}) is larger than the images ({size} px)",
        object.h,
        object.w
    );
    let n = images.size()[0];
    let mut out = Vec::with_capacity(n as usize);
    let mut start = 0;
    while start < n {
        let len = BATCH.min(n - start);
        let high = template::high_pass(&images.narrow(0, start, len));
        for (i, (window, r)) in template::best_matches(&template, &high)
            .into_iter()
            .enumerate()
        {
            out.push(Carrier {
                index: start as usize + i,
                correlation: r,
                region: object.inner.shifted(window.x, window.y),
                carries: r >= object.cut,
            });
        }
        start += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bright cross stamped on some of a set of noisy images is found on
    /// those, where it is, and not on the others.
    #[test]
    fn the_stamped_images_score_above_the_cut_and_the_region_is_where_the_cross_is() {
        tch::manual_seed(0);
        let (n, size) = (12i64, 32i64);
        let images = (Tensor::rand([n, 3, size, size], (Kind::Float, tch::Device::Cpu)) * 60.0
            + 80.0)
            .to_kind(Kind::Uint8);
        let cross = |img: &Tensor, x: i64, y: i64| {
            let _ = img.narrow(1, y + 3, 2).narrow(2, x, 8).fill_(250);
            let _ = img.narrow(1, y, 8).narrow(2, x + 3, 2).fill_(250);
        };
        let stamped: Vec<i64> = vec![0, 2, 5, 7, 9];
        for (k, &i) in stamped.iter().enumerate() {
            cross(&images.get(i), 4 + 3 * k as i64, 6 + 2 * k as i64);
        }
        // The template: the high-pass cross, cut from the first image with a margin.
        let object = ObjectMatch::cut_from_first(&images, 2, 4, 0.6);
        let scored = score(&object, &images).unwrap();
        assert_eq!(scored.len(), n as usize);
        for c in &scored {
            assert_eq!(c.carries, stamped.contains(&(c.index as i64)), "{c:?}");
        }
        let third = &scored[5];
        assert_eq!(
            (third.region.x, third.region.y),
            (4 + 6, 6 + 4),
            "{third:?}"
        );
    }
}
