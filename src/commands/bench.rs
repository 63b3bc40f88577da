//! `nave-lab bench ...`: speed measurements printed as JSON (see `crate::bench`).
use tch::Device;

use crate::bench;
use crate::cli::{BenchCommand, BenchDetectArgs};

pub fn run(cmd: BenchCommand, device: Device) -> anyhow::Result<()> {
    let out_file = match &cmd {
        BenchCommand::Detect(a) => a.out.clone(),
        BenchCommand::Revise(a) => a.out.clone(),
        _ => None,
    };
    let out = match cmd {
        BenchCommand::Data(a) => bench::data::bench_data(&a, device)?,
        BenchCommand::Kmeans(a) => bench::kmeans::bench_kmeans(&a, device)?,
        BenchCommand::Train(a) => bench::train::bench_train(&a, device)?,
        BenchCommand::Detect(a) => bench_detect(&a, device)?,
        BenchCommand::Revise(a) => bench::revise::bench_revise(&a)?,
    };
    if let Some(path) = out_file {
        crate::io::write_json(&path, &out)?;
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn bench_detect(a: &BenchDetectArgs, device: Device) -> anyhow::Result<serde_json::Value> {
    crate::audit::zoo_bench::bench_detect(
        &crate::audit::zoo_bench::BenchDetect {
            dir: &a.dir,
            probes: a.probes,
            split: &crate::detect::splits::SplitRequest {
                file: a.splits.clone(),
                tune_seeds: a.tune_seeds.clone(),
                held_out: a.held_out.clone(),
                exploratory: a.exploratory,
            },
            families: &a.families,
            seeds: &a.seeds,
            max_fpr: a.max_fpr,
            baseline: !a.no_baseline,
            jobs: a.jobs,
        },
        device,
    )
}
