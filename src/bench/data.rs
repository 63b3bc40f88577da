//! `bench data`: loader and augmentation throughput.
use std::time::Instant;

use clap::Args;
use serde_json::json;
use tch::{Device, Kind};

use crate::data::loader::{epoch_batches, BatchSpec};
use crate::data::synthetic::{self, SyntheticSpec};
use crate::data::transforms::AugmentSpec;
use crate::data::Split;
use crate::ui::at_least_one;

#[derive(Debug, Args)]
pub struct BenchDataArgs {
    #[arg(value_parser = clap::value_parser!(i64).range(1..), long, default_value_t = 96)]
    pub image_size: i64,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Images in the (synthetic) split that is iterated.
    #[arg(value_parser = at_least_one, long, default_value_t = 2048)]
    pub images: usize,
    /// Epochs to time (after one warm-up epoch).
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
}

/// Images per second through the loader, without and with augmentation.
pub fn bench_data(a: &BenchDataArgs, device: Device) -> anyhow::Result<serde_json::Value> {
    let spec = SyntheticSpec {
        train: a.images,
        ..Default::default()
    };
    let data = synthetic::generate(&spec, Split::Train, a.image_size);
    let mut results = Vec::new();
    for augment in [false, true] {
        let batches = BatchSpec {
            batch_size: a.batch_size,
            shuffle: true,
            augment: augment.then(AugmentSpec::default),
            seed: 0,
            device,
            prefetch: 4,
        };
        // Warm-up epoch (allocations, CUDA context), then timed epochs.
        for b in epoch_batches(&data.images, &data.labels, &batches, 0) {
            let _ = b.images.sum(Kind::Float).double_value(&[]);
        }
        let start = Instant::now();
        let mut n = 0;
        for epoch in 1..=a.epochs {
            for b in epoch_batches(&data.images, &data.labels, &batches, epoch) {
                // Force the work to finish, as a consumer would.
                let _ = b.images.sum(Kind::Float).double_value(&[]);
                n += b.indices.len();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        results.push(json!({ "augment": augment, "images": n, "seconds": secs, "images_per_s": n as f64 / secs }));
    }
    Ok(json!({
        "bench": "data",
        "device": crate::device::device_name(device),
        "threads": tch::get_num_threads(),
        "image_size": a.image_size,
        "batch_size": a.batch_size,
        "results": results,
    }))
}
