use tch::Device;

use crate::cli::LocalizeArgs;
use crate::localize::{self, dataset, Settings};
use crate::models::Arch;

pub fn run(a: LocalizeArgs, device: Device) -> anyhow::Result<()> {
    // Images are not resized: the size only lays out ViT position embeddings,
    // which are interpolated to each image's patch grid.
    let (model, arch, _) = super::load_model(&a.model, None, device)?;
    let taps = a.taps.clone().unwrap_or_else(|| arch.default_taps());
    for t in &taps {
        model.tap_index(t)?;
    }
    anyhow::ensure!(
        !a.k.is_empty() && a.k.iter().all(|&k| k >= 1),
        "-k needs positive numbers of clusters"
    );
    let loaded = dataset::load(a.dataset, &a.root, a.no_hard)?;
    let mut items = loaded.items;
    if let Some(n) = a.limit {
        items.truncate(n);
    }
    anyhow::ensure!(
        !items.is_empty(),
        "{}: no image with objects to evaluate",
        a.root.display()
    );
    if !loaded.without_objects.is_empty() {
        crate::info!(
            "{} image(s) without objects skipped",
            loaded.without_objects.len()
        );
    }
    let settings = Settings {
        taps: taps.clone(),
        ks: a.k.clone(),
        method: a.method,
        strategies: a.strategy.clone(),
        min_size: a.min_size,
        pad_multiple: match arch {
            Arch::VitS16 => 16,
            Arch::VitS14 => 14,
            // The ResNets' deepest stage has stride 32.
            Arch::Resnet18 | Arch::Resnet50 => 32,
        },
        slic: a.slic,
        seed: a.seed,
        examples: a.examples,
    };
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| localize::default_out(a.dataset));
    let summary = localize::evaluate(
        &model,
        &items,
        loaded.without_objects,
        &settings,
        &out,
        device,
    )?;
    println!(
        "{} — {} images, {arch} {} — AP@50 (%)",
        a.dataset.as_str(),
        summary.images,
        taps.join("+")
    );
    let header: Vec<String> = a
        .strategy
        .iter()
        .map(|s| format!("{s:?}").to_lowercase())
        .collect();
    println!(
        "{:<14} {:>4}  {}",
        "segments",
        "K",
        header
            .iter()
            .map(|h| format!("{h:>7}"))
            .collect::<Vec<_>>()
            .join("")
    );
    let sources: std::collections::BTreeSet<String> =
        summary.scores.keys().map(|k| k.0.clone()).collect();
    for src in &sources {
        for &k in &a.k {
            let cols: Vec<String> = a
                .strategy
                .iter()
                .map(|&st| format!("{:>7.1}", summary.percent(&(src.clone(), k, st))))
                .collect();
            println!("{src:<14} {k:>4}  {}", cols.join(""));
        }
    }
    println!(
        "{:.3} s per image; {} skipped; results in {} (per_image.jsonl, summary.json, examples/)",
        summary.seconds_per_image,
        summary.skipped.len(),
        out.display()
    );
    Ok(())
}
