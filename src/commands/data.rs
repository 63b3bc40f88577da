use anyhow::Context;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use crate::cli::{DataCommand, DatasetArgs, ShowArgs};
use crate::config::{Experiment, RunSpec};
use crate::data::synthetic::SyntheticSpec;
use crate::data::transforms::AugmentSpec;
use crate::data::watermark::{Artefact, WatermarkSpec};
use crate::data::{cache::Cache, BadFiles, DatasetSource, Split};

fn source(args: &DatasetArgs) -> DatasetSource {
    DatasetSource {
        kind: args.dataset,
        root: args.root.clone(),
        bad_files: BadFiles::Skip,
        synthetic: SyntheticSpec::default(),
    }
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Fetch(a) => {
            let which = a.dataset;
            let done = crate::fetch::datasets::fetch_dataset(
                which,
                &a.root,
                &a.source.options(),
                a.max_unpacked,
            )?;
            if let Some((archive, sha256)) = &done.archive {
                println!(
                    "{}: {} (SHA-256 {sha256})",
                    which.as_str(),
                    archive.display()
                );
                if which.source().checksum == crate::fetch::Checksum::Unpinned {
                    println!(
                        "  no checksum is published for it: pin this copy with --sha256 {sha256}"
                    );
                }
            }
            println!(
                "{}: {} in {}; in an experiment: dataset.root: {}",
                which.as_str(),
                if done.unpacked {
                    "unpacked"
                } else {
                    "already there"
                },
                done.dataset_root.display(),
                done.dataset_root.display()
            );
            Ok(())
        }
        DataCommand::Synth(a) => {
            let spec = SyntheticSpec {
                seed: a.seed,
                train: a.train,
                test: a.test,
                size: a.size,
            };
            let n = crate::data::synthetic::write_folder(&spec, &a.out)?;
            println!(
                "wrote {n} images to {} (train/ and test/, classes NORMAL and PNEUMONIA)",
                a.out.display()
            );
            Ok(())
        }
        DataCommand::Stats(a) => {
            let stats = source(&a).stats()?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
                return Ok(());
            }
            for s in &stats {
                if !s.present {
                    println!("{:<6} absent", s.split.as_str());
                    continue;
                }
                let total: usize = s.count_per_class.iter().sum();
                println!("{:<6} {total} images", s.split.as_str());
                for (name, count) in s.class_names.iter().zip(&s.count_per_class) {
                    println!("         {name:<16} {count}");
                }
                for (size, count) in s.sizes_and_modes.iter().take(8) {
                    println!("         {size:<24} {count}");
                }
                if s.sizes_and_modes.len() > 8 {
                    println!("         ... {} more sizes", s.sizes_and_modes.len() - 8);
                }
                for path in &s.undecodable {
                    println!("         cannot read {path}");
                }
            }
            Ok(())
        }
        DataCommand::Show(a) => show(a),
    }
}

fn parse_split(split: &str) -> anyhow::Result<Split> {
    serde_json::from_value(serde_json::Value::String(split.to_string()))
        .map_err(|_| anyhow::anyhow!("--split must be train, val or test, got '{split}'"))
}

/// `data show`: samples clean, watermarked and augmented; or, with
/// `--experiment`, every artefact family of an experiment.
fn show(a: ShowArgs) -> anyhow::Result<()> {
    let split = parse_split(&a.split)?;
    if let Some(path) = &a.experiment {
        return show_families(path, &a, split);
    }
    let src = DatasetSource {
        kind: a
            .dataset
            .expect("clap requires --dataset without --experiment"),
        root: a.root.clone(),
        bad_files: BadFiles::Skip,
        synthetic: SyntheticSpec::default(),
    };
    let data = src.load(split, a.image_size, Cache::default_location().as_ref())?;
    anyhow::ensure!(!data.is_empty(), "the {split} split is empty");
    let order = sample_order(data.len(), a.count, a.seed);
    let clean = data.images.index_select(0, &index_tensor(&order));
    // Stamp every shown image (as-train for one class and flipped for the others is the same picture).
    let artefact = Artefact::new(&WatermarkSpec::default(), a.image_size)?;
    let boxes: Vec<_> = order
        .iter()
        .map(|&i| Some(artefact.placement_for(a.seed, split, i)))
        .collect();
    let marked = artefact.stamp(&clean, &boxes);
    crate::data::show::write_show(&clean, &marked, &AugmentSpec::default(), a.seed, &a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "wrote {} (rows: clean, watermarked, watermarked + augmented)",
        a.out.display()
    );
    Ok(())
}

fn sample_order(len: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order.truncate(count.max(1));
    order
}

fn index_tensor(order: &[usize]) -> Tensor {
    Tensor::from_slice(&order.iter().map(|&i| i as i64).collect::<Vec<_>>())
}

/// One row per distinct (dataset, watermark) among the runs trained with a
/// watermark, after a clean row of the first run's dataset.
fn show_families(path: &std::path::Path, a: &ShowArgs, split: Split) -> anyhow::Result<()> {
    let experiment = Experiment::load(path, &[])?;
    let runs = experiment.runs();
    let mut families: Vec<(&RunSpec, Vec<&str>)> = Vec::new();
    for r in runs.iter().filter(|r| r.watermark) {
        match families
            .iter_mut()
            .find(|(f, _)| f.watermark_spec == r.watermark_spec && f.dataset == r.dataset)
        {
            Some((_, ids)) => ids.push(&r.id),
            None => families.push((r, vec![&r.id])),
        }
    }
    anyhow::ensure!(
        !families.is_empty(),
        "{}: no run is trained with a watermark, so there is no artefact to show",
        path.display()
    );
    let size = runs[0].dataset.image_size;
    let cache = Cache::default_location();
    let mut rows = Vec::new();
    let mut legend = Vec::new();
    let first_data = runs[0].dataset.source().load(split, size, cache.as_ref())?;
    let order = sample_order(first_data.len(), a.count, a.seed);
    rows.push(first_data.images.index_select(0, &index_tensor(&order)));
    legend.push(format!("clean ({})", runs[0].dataset.kind.as_str()));
    for (spec, ids) in &families {
        let image_size = spec.dataset.image_size;
        let data = spec
            .dataset
            .source()
            .load(split, image_size, cache.as_ref())?;
        anyhow::ensure!(!data.is_empty(), "{}: the {split} split is empty", spec.id);
        let order: Vec<usize> = sample_order(data.len(), a.count, a.seed);
        let clean = data.images.index_select(0, &index_tensor(&order));
        let artefact = Artefact::new(&spec.watermark_spec, image_size)
            .with_context(|| format!("the watermark of {}", spec.id))?;
        let boxes: Vec<_> = order
            .iter()
            .map(|&i| Some(artefact.placement_for(a.seed, split, i)))
            .collect();
        rows.push(crate::data::resize_u8(
            &artefact.stamp(&clean, &boxes),
            size,
        ));
        let name = spec.variant.clone().unwrap_or_else(|| spec.regime());
        legend.push(format!(
            "{name} ({} run{})",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" }
        ));
    }
    let units: Vec<Tensor> = rows.iter().map(crate::data::loader::to_unit).collect();
    let zoom = (192 / size).clamp(1, 4);
    let img = crate::data::show::grid_image(&units, zoom);
    crate::io::write_png(&img, &a.out)?;
    println!("wrote {} (rows, top to bottom):", a.out.display());
    for (i, l) in legend.iter().enumerate() {
        println!("  {:>2}  {l}", i + 1);
    }
    Ok(())
}
