//! Batches for training and evaluation: shuffled per epoch from the run's
//! seed, augmented (train only), normalised with ImageNet statistics, and
//! prepared on a background thread so that the model never waits on them.
use std::sync::mpsc;
use std::thread;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use super::synthetic::mix_seed;
use super::transforms::{AugmentSpec, Augmenter};
use super::{IMAGENET_MEAN, IMAGENET_STD};

/// A batch ready for the model.
pub struct Batch {
    /// `[B, 3, S, S]` float, normalised, on the training device.
    pub images: Tensor,
    /// `[B]` int64 class indices on the training device.
    pub labels: Tensor,
    /// Positions of the images in the split.
    pub indices: Vec<i64>,
}

/// How one pass over a split is drawn.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    pub batch_size: usize,
    /// Shuffle the order each epoch (training); evaluation keeps the split's order.
    pub shuffle: bool,
    pub augment: Option<AugmentSpec>,
    pub seed: u64,
    pub device: Device,
    /// How many batches are prepared ahead of the consumer.
    pub prefetch: usize,
}

/// ImageNet mean and standard deviation as `[1, 3, 1, 1]` tensors on `device`.
fn imagenet_stats(device: Device) -> (Tensor, Tensor) {
    let stat = |v: &[f64; 3]| {
        Tensor::from_slice(v)
            .view([1, 3, 1, 1])
            .to_kind(Kind::Float)
            .to_device(device)
    };
    (stat(&IMAGENET_MEAN), stat(&IMAGENET_STD))
}

/// uint8 `[B, 3, S, S]` (any device) -> normalised float on the same device.
pub fn normalize_u8(images: &Tensor) -> Tensor {
    normalize_unit(to_unit(images))
}

/// uint8 -> float in [0, 1].
pub fn to_unit(images: &Tensor) -> Tensor {
    images.to_kind(Kind::Float) / 255.0
}

/// Float in [0, 1] -> normalised with ImageNet's statistics.
pub fn normalize_unit(images: Tensor) -> Tensor {
    let (mean, std) = imagenet_stats(images.device());
    (images - mean) / std
}

/// The order of one epoch: a permutation drawn from (seed, epoch), so that a
/// resumed run replays exactly the epochs it did not finish.
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<i64> {
    let mut order: Vec<i64> = (0..n as i64).collect();
    if shuffle {
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(seed, 0x5348, epoch as u64));
        order.shuffle(&mut rng);
    }
    order
}

/// Iterates over the batches of one epoch. `images` is the split's uint8
/// tensor (watermarks already stamped), `labels` its class indices.
pub fn epoch_batches(
    images: &Tensor,
    labels: &[i64],
    spec: &BatchSpec,
    epoch: usize,
) -> impl Iterator<Item = Batch> {
    let order = epoch_order(labels.len(), spec.seed, epoch, spec.shuffle);
    let images = images.shallow_clone();
    let labels = Tensor::from_slice(labels);
    let spec = spec.clone();
    let (tx, rx) = mpsc::sync_channel::<Batch>(spec.prefetch.max(1));
    let worker = thread::spawn(move || {
        let mut augmenter = spec
            .augment
            .clone()
            .map(|a| Augmenter::new(a, mix_seed(spec.seed, 0x4155, epoch as u64)));
        for chunk in order.chunks(spec.batch_size.max(1)) {
            let index = Tensor::from_slice(chunk);
            let x = images.index_select(0, &index).to_device(spec.device);
            let mut x = to_unit(&x);
            if let Some(aug) = augmenter.as_mut() {
                x = aug.apply(&x);
            }
            let batch = Batch {
                images: normalize_unit(x),
                labels: labels.index_select(0, &index).to_device(spec.device),
                indices: chunk.to_vec(),
            };
            if tx.send(batch).is_err() {
                return; // the consumer stopped early
            }
        }
    });
    BatchIter {
        rx,
        worker: Some(worker),
    }
}

struct BatchIter {
    rx: mpsc::Receiver<Batch>,
    worker: Option<thread::JoinHandle<()>>,
}

impl Iterator for BatchIter {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        match self.rx.recv() {
            Ok(b) => Some(b),
            Err(_) => {
                if let Some(w) = self.worker.take() {
                    if let Err(panic) = w.join() {
                        std::panic::resume_unwind(panic);
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_permutations_that_repeat_with_the_seed() {
        let a = epoch_order(100, 1, 0, true);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 1, 0, true));
        assert_ne!(a, epoch_order(100, 1, 1, true));
        assert_ne!(a, epoch_order(100, 2, 0, true));
        assert_eq!(epoch_order(5, 1, 0, false), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn batches_cover_the_split_once_and_are_normalised() {
        let n = 10;
        let images = Tensor::full([n, 3, 8, 8], 255, (Kind::Uint8, Device::Cpu));
        let labels: Vec<i64> = (0..n).map(|i| i % 2).collect();
        let spec = BatchSpec {
            batch_size: 4,
            shuffle: true,
            augment: None,
            seed: 0,
            device: Device::Cpu,
            prefetch: 2,
        };
        let batches: Vec<Batch> = epoch_batches(&images, &labels, &spec, 0).collect();
        assert_eq!(
            batches.iter().map(|b| b.indices.len()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let mut seen: Vec<i64> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        // White pixels normalise to (1 - mean) / std per channel.
        for c in 0..3 {
            let v = batches[0].images.double_value(&[0, c, 0, 0]);
            let expected = (1.0 - IMAGENET_MEAN[c as usize]) / IMAGENET_STD[c as usize];
            assert!((v - expected).abs() < 1e-5);
        }
        // Labels travel with their images.
        for b in &batches {
            let got: Vec<i64> = Vec::try_from(&b.labels).unwrap();
            assert_eq!(got, b.indices.iter().map(|i| i % 2).collect::<Vec<_>>());
        }
    }
}
