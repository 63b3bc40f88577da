use tch::Device;

use crate::cli::LocalizeArgs;
use crate::localize::{self, dataset, Protocol, Settings, Strategy};
use crate::models::Arch;

pub fn run(a: LocalizeArgs, device: Device) -> anyhow::Result<()> {
    // Images are not resized: the size only lays out ViT position embeddings,
    // which are interpolated to each image's patch grid.
    let (mut model, arch, _) = super::load_model(&a.model, None, device)?;
    // The authors' code dilates the ResNet50's last stage and pads every
    // image to 16; the paper's reading keeps torchvision's ResNet (stride 32).
    let dilated = a.protocol == Protocol::Author && model.dilate_last_stage();
    let (strategies, min_size) = match a.protocol {
        Protocol::Author => {
            anyhow::ensure!(
                a.strategy.is_none() && a.min_size.is_none(),
                "--strategy and --min-size belong to --protocol paper; the author protocol selects with the inner box, scores the outer box and keeps components of more than {} pixels",
                localize::author::MIN_PIXELS
            );
            (vec![Strategy::Author], localize::author::MIN_PIXELS)
        }
        Protocol::Paper => (
            a.strategy
                .clone()
                .unwrap_or_else(|| vec![Strategy::Inner, Strategy::Outer]),
            a.min_size.unwrap_or(localize::author::MIN_PIXELS),
        ),
    };
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
        protocol: a.protocol,
        taps: taps.clone(),
        ks: a.k.clone(),
        method: a.method,
        // The authors ran scikit-learn's KMeans with its defaults of the
        // time: the best of 10 k-means++ starts.
        n_init: a.n_init.unwrap_or(match a.protocol {
            Protocol::Author => 10,
            Protocol::Paper => 1,
        }),
        strategies: strategies.clone(),
        min_size,
        pad_multiple: match arch {
            Arch::VitS16 | Arch::VitS14 | Arch::VitB16 | Arch::VitB14 => {
                arch.patch_size().expect("a ViT")
            }
            // The deepest stage's stride: 16 dilated, 32 as torchvision builds it.
            Arch::Resnet18 | Arch::Resnet50 if dilated => 16,
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
        "{} — {} images, {arch}{} {} — CorLoc (%), {} protocol",
        a.dataset.as_str(),
        summary.images,
        if dilated { " (layer4 dilated)" } else { "" },
        taps.join("+"),
        format!("{:?}", a.protocol).to_lowercase(),
    );
    let header: Vec<String> = strategies
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
            let cols: Vec<String> = strategies
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
