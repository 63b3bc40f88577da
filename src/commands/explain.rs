use tch::Device;

use crate::cli::ExplainArgs;
use crate::nave::explain::{explain, ExplainSettings};

pub fn run(a: ExplainArgs, device: Device) -> anyhow::Result<()> {
    let (model, arch, image_size) = super::load_model(&a.model, a.image_size, device)?;
    let settings = ExplainSettings {
        taps: a.taps.clone().unwrap_or_else(|| arch.default_taps()),
        k: a.k,
        method: a.method,
        seed: a.seed,
        resolution: a.resolution,
        image_size,
    };
    let e = explain(
        &model,
        &a.image,
        &settings,
        &a.out,
        a.save_features.as_deref(),
        device,
    )?;
    println!(
        "{}: {} on {}, grid {}x{}, {} features, K = {}",
        a.image.display(),
        arch,
        settings.taps.join("+"),
        e.grid.0,
        e.grid.1,
        e.feature_dim,
        settings.k
    );
    for p in &e.written {
        println!("wrote {}", p.display());
    }
    Ok(())
}
