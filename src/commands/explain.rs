use anyhow::Context;
use tch::Device;

use crate::cli::ExplainArgs;
use crate::config::RunSpec;
use crate::models::{self, Model};
use crate::nave::explain::{explain, ExplainSettings};
use crate::train::checkpoint::RunFolder;

pub fn run(a: ExplainArgs, device: Device) -> anyhow::Result<()> {
    let (model, arch, image_size): (Model, models::Arch, i64) = match (&a.run, &a.weights) {
        (Some(dir), _) => {
            let folder = RunFolder::new(dir);
            let spec = RunSpec::read(&folder.run_yaml())?;
            anyhow::ensure!(
                folder.model().is_file(),
                "{}: no model.safetensors (is the run finished?)",
                dir.display()
            );
            let size = a.image_size.unwrap_or(spec.dataset.image_size);
            let m = models::from_weights(spec.model.arch, &folder.model(), size, device)
                .with_context(|| {
                    format!("{}: the weights do not match its run.yaml", dir.display())
                })?;
            (m, spec.model.arch, size)
        }
        (None, Some(w)) => {
            let arch = a.arch.expect("clap requires --arch with --weights");
            let size = a.image_size.unwrap_or(224);
            (models::from_weights(arch, w, size, device)?, arch, size)
        }
        (None, None) => unreachable!("clap requires --run or --weights"),
    };
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
