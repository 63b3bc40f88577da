use anyhow::Context;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use crate::cli::{DataCommand, DatasetArgs};
use crate::data::synthetic::SyntheticSpec;
use crate::data::transforms::AugmentSpec;
use crate::data::watermark::{self, WatermarkSpec};
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
        DataCommand::Show(a) => {
            let split: Split = serde_json::from_value(serde_json::Value::String(a.split.clone()))
                .map_err(|_| {
                anyhow::anyhow!("--split must be train, val or test, got '{}'", a.split)
            })?;
            let src = source(&a.dataset);
            let data = src.load(split, a.image_size, Cache::default_location().as_ref())?;
            anyhow::ensure!(!data.is_empty(), "the {split} split is empty");
            let mut order: Vec<usize> = (0..data.len()).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(a.seed));
            order.truncate(a.count.max(1));
            let index = Tensor::from_slice(&order.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let clean = data.images.index_select(0, &index);
            // Stamp every shown image (as-train for one class and flipped for the others is the same picture).
            let wm = WatermarkSpec::default();
            let boxes: Vec<_> = order
                .iter()
                .map(|&i| Some(watermark::box_for(&wm, a.seed, split, i, a.image_size)))
                .collect();
            let marked = watermark::stamp(&clean, &boxes, wm.colour);
            crate::data::show::write_show(&clean, &marked, &AugmentSpec::default(), a.seed, &a.out)
                .with_context(|| format!("writing {}", a.out.display()))?;
            println!(
                "wrote {} (rows: clean, watermarked, watermarked + augmented)",
                a.out.display()
            );
            Ok(())
        }
    }
}
