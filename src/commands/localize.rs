use tch::Device;

use crate::cli::LocalizeArgs;
use crate::localize::{self, dataset, Settings};

pub fn run(a: LocalizeArgs, device: Device) -> anyhow::Result<()> {
    // Images are not resized: the size only lays out ViT position embeddings,
    // which are interpolated to each image's patch grid.
    let (mut model, arch, _) = super::load_model(&a.model, None, device)?;
    let settings = Settings::for_protocol(a.choices(), &mut model, arch)?;
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
    let out = a.out.unwrap_or_else(|| localize::default_out(a.dataset));
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
        if settings.dilated {
            " (layer4 dilated)"
        } else {
            ""
        },
        settings.taps.join("+"),
        format!("{:?}", settings.protocol).to_lowercase(),
    );
    println!("{}", summary.table(&settings));
    println!(
        "{:.3} s per image; {} skipped; results in {} (per_image.jsonl, summary.json, examples/)",
        summary.seconds_per_image,
        summary.skipped.len(),
        out.display()
    );
    Ok(())
}
