//! `nave-lab bench ...`: speed measurements printed as JSON (never asserted in tests).
use std::time::Instant;

use serde_json::json;
use tch::Device;

use crate::cli::{BenchCommand, BenchDataArgs};
use crate::data::loader::{epoch_batches, BatchSpec};
use crate::data::synthetic::{self, SyntheticSpec};
use crate::data::transforms::AugmentSpec;
use crate::data::Split;

pub fn run(cmd: BenchCommand, device: Device) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Data(a) => bench_data(&a, device),
    }
}

fn bench_data(a: &BenchDataArgs, device: Device) -> anyhow::Result<()> {
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
            let _ = b.images.sum(tch::Kind::Float).double_value(&[]);
        }
        let start = Instant::now();
        let mut n = 0;
        for epoch in 1..=a.epochs {
            for b in epoch_batches(&data.images, &data.labels, &batches, epoch) {
                // Force the work to finish, as a consumer would.
                let _ = b.images.sum(tch::Kind::Float).double_value(&[]);
                n += b.indices.len();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        results.push(json!({ "augment": augment, "images": n, "seconds": secs, "images_per_s": n as f64 / secs }));
    }
    let out = json!({
        "bench": "data",
        "device": crate::device::device_name(device),
        "threads": tch::get_num_threads(),
        "image_size": a.image_size,
        "batch_size": a.batch_size,
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
