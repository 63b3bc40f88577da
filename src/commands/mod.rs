//! The bodies of the CLI's subcommands: each turns parsed arguments into
//! library calls and prints the result.
use anyhow::Context;
use tch::Device;

use crate::cli::ModelSource;
use crate::models::{self, Arch, Model};
use crate::run_folder::RunFolder;
pub mod audit;
pub mod bench;
pub mod data;
pub mod explain;
pub mod localize;
pub mod revise;
pub mod status;
pub mod train;

/// Builds the model a command names: a run folder (architecture and image
/// size from its run.yaml) or `--arch` with `--weights` (224 px by default).
/// `image_size` overrides the size the model is laid out for.
pub fn load_model(
    source: &ModelSource,
    image_size: Option<i64>,
    device: Device,
) -> anyhow::Result<(Model, Arch, i64)> {
    match (&source.run, &source.weights, source.arch) {
        (Some(dir), _, _) => {
            let folder = RunFolder::new(dir);
            let spec = folder.spec()?;
            anyhow::ensure!(
                folder.model().is_file(),
                "{}: no model.safetensors (is the run finished?)",
                dir.display()
            );
            let size = image_size.unwrap_or(spec.dataset.image_size);
            let model = models::from_weights(spec.model.arch, &folder.model(), size, device)
                .with_context(|| {
                    format!("{}: the weights do not match its run.yaml", dir.display())
                })?;
            Ok((model, spec.model.arch, size))
        }
        (None, Some(weights), arch) => {
            let size = image_size.unwrap_or(224);
            let text = weights.to_string_lossy();
            let (path, arch) = if crate::fetch::weights::is_name(&text) {
                let got = crate::fetch::weights::resolve(&text, None, &source.download.options())?;
                if let Some(a) = arch {
                    anyhow::ensure!(
                        a == got.arch,
                        "--weights {text} holds {} weights, not {a}",
                        got.arch
                    );
                }
                (got.path, got.arch)
            } else {
                let arch = arch.with_context(|| {
                    format!(
                        "--weights {}: name its architecture with --arch",
                        weights.display()
                    )
                })?;
                (weights.clone(), arch)
            };
            Ok((models::from_weights(arch, &path, size, device)?, arch, size))
        }
        _ => anyhow::bail!(
            "name the model with --run DIR, or with --weights (and --arch for a file)"
        ),
    }
}
