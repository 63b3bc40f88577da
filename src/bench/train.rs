//! `bench train`: training steps per second of one architecture, for
//! comparison with PyTorch.
use std::time::Instant;

use clap::Args;
use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::sync;
use crate::config::{OptimizerKind, OptimizerSpec};
use crate::models::memory_format::{to_channels_last, MemoryFormat};
use crate::models::{Model, ModelSpec};
use crate::train::amp;
use crate::train::optim::Optimizer;

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    #[arg(long, value_enum, default_value = "resnet18")]
    pub arch: crate::models::Arch,
    /// Model width (default: the standard model).
    #[arg(value_parser = clap::value_parser!(i64).range(1..), long)]
    pub width: Option<i64>,
    #[arg(value_parser = clap::value_parser!(i64).range(1..), long, default_value_t = 96)]
    pub image_size: i64,
    #[arg(long, default_value_t = 64)]
    pub batch_size: i64,
    /// Timed steps (after 3 warm-up steps).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// bf16 autocast (CUDA only).
    #[arg(long)]
    pub mixed_precision: bool,
    /// Memory layout of the convolutions (auto: channels-last for ResNets under bf16 autocast on CUDA).
    #[arg(long, value_enum, default_value = "auto")]
    pub memory_format: crate::models::memory_format::MemoryFormat,
    /// Time forward and backward only (no optimiser step), to separate the two costs.
    #[arg(long)]
    pub no_optimizer: bool,
}

pub fn bench_train(a: &BenchTrainArgs, device: Device) -> anyhow::Result<serde_json::Value> {
    tch::manual_seed(0);
    let spec = ModelSpec::plain(a.arch, a.width);
    let model = Model::new(&spec, 10, a.image_size, device)?;
    let mut opt = Optimizer::new(
        OptimizerSpec {
            kind: OptimizerKind::Sgd,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 1e-4,
            betas: [0.9, 0.999],
        },
        model.trainable(),
    );
    let x = Tensor::randn(
        [a.batch_size, 3, a.image_size, a.image_size],
        (Kind::Float, device),
    );
    let y = Tensor::randint(10, [a.batch_size], (Kind::Int64, device));
    let amp_on = a.mixed_precision && device.is_cuda();
    let channels_last = a.memory_format.channels_last(a.arch, device, amp_on);
    let x = if channels_last {
        model.to_channels_last();
        to_channels_last(&x)
    } else {
        x
    };
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let step = |opt: &mut Optimizer| -> anyhow::Result<()> {
        let logits = amp::with_bf16(amp_on, || model.forward_t(&x, true))?.to_kind(Kind::Float);
        let loss = logits.cross_entropy_for_logits(&y);
        opt.zero_grad()?;
        loss.backward();
        if !a.no_optimizer {
            opt.step(0.01)?;
        }
        Ok(())
    };
    for _ in 0..3 {
        step(&mut opt)?;
    }
    sync(device);
    let start = Instant::now();
    for _ in 0..a.steps {
        step(&mut opt)?;
    }
    sync(device);
    let seconds = start.elapsed().as_secs_f64();
    Ok(json!({
        "bench": "train",
        "device": crate::device::device_name(device),
        "threads": tch::get_num_threads(),
        "arch": a.arch.as_str(),
        "width": a.width.unwrap_or(a.arch.default_width()),
        "image_size": a.image_size,
        "batch_size": a.batch_size,
        "mixed_precision": amp_on,
        "memory_format": MemoryFormat::describe(channels_last),
        "optimizer": !a.no_optimizer,
        "steps": a.steps,
        "seconds": seconds,
        "images_per_s": (a.steps as i64 * a.batch_size) as f64 / seconds,
    }))
}
