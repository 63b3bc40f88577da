//! Taps -> the NAVE feature matrix (DESIGN.md "NAVE, precisely", steps 1-4).
use tch::{Kind, Tensor};

use crate::models::Model;

/// Small constant added to the per-pixel norm so that an all-zero channel
/// vector (a dead ReLU region) gives zeros, not NaN.
pub const NORM_EPS: f64 = 1e-8;

/// Combines tap activations (`[B, C_i, h_i, w_i]` each) into one feature map
/// `[B, sum C_i, h, w]`: each tap is resized bicubically to the grid of the
/// finest tap (or `resolution` x `resolution`), L2-normalised per pixel, and
/// weighted by (1 + C_0) / (1 + C_i), tap 0 being the finest.
///
/// The taps are taken from the finest grid to the coarsest (in the order
/// given among equal grids), whatever order they are listed in: the
/// authors' code walks the network's layers in order, so its first tap is
/// the shallowest, and `layer4,layer3` must mean what `layer3,layer4` does.
pub fn combine(taps: &[Tensor], resolution: Option<i64>) -> Tensor {
    let mut ordered: Vec<&Tensor> = taps.iter().collect();
    ordered.sort_by_key(|t| {
        let s = t.size();
        std::cmp::Reverse(s[2] * s[3])
    });
    let first = ordered[0].size();
    let (h, w) = match resolution {
        Some(r) => (r, r),
        None => (first[2], first[3]),
    };
    let c0 = first[1] as f64;
    let parts: Vec<Tensor> = ordered
        .into_iter()
        .map(|t| {
            let t = t.to_kind(Kind::Float);
            let s = t.size();
            let resized = if s[2] == h && s[3] == w {
                t
            } else {
                t.upsample_bicubic2d([h, w], false, None, None)
            };
            let norm = resized.norm_scalaropt_dim(2, [1i64].as_slice(), true) + NORM_EPS;
            let weight = (1.0 + c0) / (1.0 + s[1] as f64);
            resized / norm * weight
        })
        .collect();
    Tensor::cat(&parts, 1)
}

/// `[B, D, h, w]` -> `[B*h*w, D]`, rows in (image, row, column) order.
pub fn to_rows(features: &Tensor) -> Tensor {
    let d = features.size()[1];
    features.permute([0, 2, 3, 1]).reshape([-1, d])
}

/// Runs the model on normalised images in batches and returns the combined
/// feature map `[N, D, h, w]` on the model's device.
pub fn features(
    model: &Model,
    images: &Tensor,
    taps: &[String],
    resolution: Option<i64>,
    batch_size: i64,
) -> anyhow::Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let n = images.size()[0];
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let len = batch_size.min(n - start);
        let acts = model.forward_taps(&images.narrow(0, start, len), taps)?;
        out.push(combine(&acts, resolution));
        start += len;
    }
    Ok(Tensor::cat(&out, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finest_tap_sets_the_grid_whatever_the_order() {
        let coarse = Tensor::from_slice(&[1.0f32, 2.0, 2.0]).view([1, 3, 1, 1]);
        let fine =
            Tensor::from_slice(&[3.0f32, 0.0, 4.0, 0.0, 1.0, 1.0, 2.0, 2.0]).view([1, 2, 2, 2]);
        let listed = combine(&[fine.shallow_clone(), coarse.shallow_clone()], None);
        let reversed = combine(&[coarse, fine], None);
        assert_eq!(
            reversed.size(),
            vec![1, 5, 2, 2],
            "the fine grid, the fine tap first"
        );
        assert!(listed.equal(&reversed));
    }

    #[test]
    fn normalisation_and_layer_weights_by_hand() {
        // Tap 0: 2 channels on a 1x2 grid; tap 1: 3 channels on a 1x1 grid (resized to 1x2).
        let t0 = Tensor::from_slice(&[3.0f32, 0.0, 4.0, 0.0]).view([1, 2, 1, 2]);
        let t1 = Tensor::from_slice(&[1.0f32, 2.0, 2.0]).view([1, 3, 1, 1]);
        let f = combine(&[t0, t1], None);
        assert_eq!(f.size(), vec![1, 5, 1, 2]);
        let rows = to_rows(&f);
        // Pixel 0: tap 0 = (3, 4) / 5, weight 1; tap 1 = (1, 2, 2) / 3, weight (1+2)/(1+3) = 0.75.
        let expected0 = [0.6, 0.8, 0.25, 0.5, 0.5];
        for (j, e) in expected0.iter().enumerate() {
            assert!(
                (rows.double_value(&[0, j as i64]) - e).abs() < 1e-5,
                "pixel 0 col {j}"
            );
        }
        // Pixel 1: tap 0 is all zeros: zeros, not NaN. Tap 1 is constant under bicubic resize.
        for j in 0..2 {
            assert_eq!(rows.double_value(&[1, j]), 0.0);
        }
        assert!((rows.double_value(&[1, 2]) - 0.25).abs() < 1e-5);
        assert!(!bool::try_from(rows.isnan().any()).unwrap());
    }

    #[test]
    fn resolution_sets_the_grid() {
        let t0 = Tensor::ones([2, 4, 3, 3], (Kind::Float, tch::Device::Cpu));
        let f = combine(&[t0], Some(6));
        assert_eq!(f.size(), vec![2, 4, 6, 6]);
        assert_eq!(to_rows(&f).size(), vec![72, 4]);
    }
}
