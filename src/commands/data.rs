use anyhow::Context;
use tch::Tensor;

use crate::cli::{DataCommand, DatasetArgs, ShowArgs};
use crate::config::Experiment;
use crate::data::show::{sample_order, stamped_sample};
use crate::data::synthetic::SyntheticSpec;
use crate::data::transforms::AugmentSpec;
use crate::data::watermark::{Artefact, WatermarkSpec};
use crate::data::{cache::Cache, index_tensor, BadFiles, DatasetSource, Split};

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
        DataCommand::Fetch(a) => fetch(a),
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
        DataCommand::Stats(a) => stats(a),
        DataCommand::Show(a) => show(a),
    }
}

/// `data fetch`: download and unpack a dataset, and say how to use it.
fn fetch(a: crate::cli::FetchArgs) -> anyhow::Result<()> {
    let which = a.dataset;
    let done =
        crate::fetch::datasets::fetch_dataset(which, &a.root, &a.source.options(), a.max_unpacked)?;
    if let Some((archive, sha256)) = &done.archive {
        println!(
            "{}: {} (SHA-256 {sha256})",
            which.as_str(),
            archive.display()
        );
        if which.source().checksum == crate::fetch::Checksum::Unpinned {
            println!("  no checksum is published for it: pin this copy with --sha256 {sha256}");
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

/// `data stats`: counts per class, sizes and modes, unreadable files.
fn stats(a: DatasetArgs) -> anyhow::Result<()> {
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
    let artefact = Artefact::new(&WatermarkSpec::default(), a.image_size)?;
    let (clean, marked) = stamped_sample(&data.images, &artefact, &order, a.seed, split);
    crate::data::show::write_show(&clean, &marked, &AugmentSpec::default(), a.seed, &a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "wrote {} (rows: clean, watermarked, watermarked + augmented)",
        a.out.display()
    );
    Ok(())
}

/// One row per distinct (dataset, watermark) among the runs trained with a
/// watermark, after a clean row of the first run's dataset.
fn show_families(path: &std::path::Path, a: &ShowArgs, split: Split) -> anyhow::Result<()> {
    let experiment = Experiment::load(path, &[])?;
    let runs = experiment.runs();
    let families = experiment.artefact_families();
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
        let order = sample_order(data.len(), a.count, a.seed);
        let artefact = Artefact::new(&spec.watermark_spec, image_size)
            .with_context(|| format!("the watermark of {}", spec.id))?;
        let (_, marked) = stamped_sample(&data.images, &artefact, &order, a.seed, split);
        rows.push(crate::data::resize_u8(&marked, size));
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
