//! Pretrained weights by name (`torchvision:resnet50.IMAGENET1K_V2`,
//! `dino:vits16`, `dinov2:vitb14_reg`, `timm:vit_base_patch16_224.<tag>` ...),
//! downloaded once into the cache folder and checked: torchvision's files
//! against the SHA-256 prefix in their names; the others, for which no
//! checksum is published, against the SHA-256 recorded the first time (and
//! in every `run.yaml` that starts from them). The table is here and only
//! here.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::{cache_dir, fetch, Checksum, FetchOptions, Source};
use crate::models::Arch;

/// Prefixes of weight names (anything else is a file path).
const SCHEMES: [&str; 4] = ["torchvision:", "timm:", "dino:", "dinov2:"];

/// Whether `spec` is a weights name rather than a file path.
pub fn is_name(spec: &str) -> bool {
    SCHEMES.iter().any(|s| spec.starts_with(s))
}

/// A named checkpoint: its file and the architecture it fits.
#[derive(Debug, Clone)]
pub struct Named {
    pub arch: Arch,
    pub source: Source,
}

fn torchvision(arch: Arch, file: &str, sha_prefix: &str) -> Named {
    Named {
        arch,
        source: Source {
            url: format!("https://download.pytorch.org/models/{file}"),
            file_name: file.to_string(),
            checksum: Checksum::Sha256Prefix(sha_prefix.to_string()),
        },
    }
}

fn unpinned(arch: Arch, url: &str, file_name: &str) -> Named {
    Named {
        arch,
        source: Source {
            url: url.to_string(),
            file_name: file_name.to_string(),
            checksum: Checksum::Unpinned,
        },
    }
}

/// The names this version knows, for error messages.
pub const KNOWN: &str =
    "torchvision:resnet18, torchvision:resnet50[.IMAGENET1K_V1|.IMAGENET1K_V2], \
     dino:resnet50, dino:vits16, dino:vitb16, dinov2:vits14[_reg], dinov2:vitb14[_reg], \
     timm:vit_small_patch16_224.<tag>, timm:vit_base_patch16_224.<tag>";

/// Looks a name up. A bare torchvision name is its IMAGENET1K_V1 weights
/// (what `pretrained=True` gave, and what the paper's code loads).
pub fn lookup(name: &str) -> anyhow::Result<Named> {
    const DINO: &str = "https://dl.fbaipublicfiles.com/dino";
    const DINOV2: &str = "https://dl.fbaipublicfiles.com/dinov2";
    Ok(match name {
        "torchvision:resnet18" | "torchvision:resnet18.IMAGENET1K_V1" => {
            torchvision(Arch::Resnet18, "resnet18-f37072fd.pth", "f37072fd")
        }
        "torchvision:resnet50" | "torchvision:resnet50.IMAGENET1K_V1" => {
            torchvision(Arch::Resnet50, "resnet50-0676ba61.pth", "0676ba61")
        }
        "torchvision:resnet50.IMAGENET1K_V2" => {
            torchvision(Arch::Resnet50, "resnet50-11ad3fa6.pth", "11ad3fa6")
        }
        "dino:resnet50" => unpinned(
            Arch::Resnet50,
            &format!("{DINO}/dino_resnet50_pretrain/dino_resnet50_pretrain.pth"),
            "dino_resnet50_pretrain.pth",
        ),
        "dino:vits16" => unpinned(
            Arch::VitS16,
            &format!("{DINO}/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"),
            "dino_deitsmall16_pretrain.pth",
        ),
        "dino:vitb16" => unpinned(
            Arch::VitB16,
            &format!("{DINO}/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"),
            "dino_vitbase16_pretrain.pth",
        ),
        "dinov2:vitb14" => unpinned(
            Arch::VitB14,
            &format!("{DINOV2}/dinov2_vitb14/dinov2_vitb14_pretrain.pth"),
            "dinov2_vitb14_pretrain.pth",
        ),
        "dinov2:vitb14_reg" => unpinned(
            Arch::VitB14,
            &format!("{DINOV2}/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth"),
            "dinov2_vitb14_reg4_pretrain.pth",
        ),
        "dinov2:vits14" => unpinned(
            Arch::VitS14,
            &format!("{DINOV2}/dinov2_vits14/dinov2_vits14_pretrain.pth"),
            "dinov2_vits14_pretrain.pth",
        ),
        "dinov2:vits14_reg" => unpinned(
            Arch::VitS14,
            &format!("{DINOV2}/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth"),
            "dinov2_vits14_reg4_pretrain.pth",
        ),
        _ => {
            let timm = [
                ("timm:vit_small_patch16_224.", Arch::VitS16),
                ("timm:vit_base_patch16_224.", Arch::VitB16),
            ];
            if let Some((tag, prefix, arch)) = timm
                .iter()
                .find_map(|(p, a)| name.strip_prefix(p).map(|t| (t, p, *a)))
            {
                if tag.is_empty() || !tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    bail!("{name}: the tag after the model name is letters, digits and _");
                }
                let model = format!("{}{tag}", prefix.trim_start_matches("timm:"));
                unpinned(
                    arch,
                    &format!("https://huggingface.co/timm/{model}/resolve/main/model.safetensors"),
                    &format!("{model}.safetensors"),
                )
            } else {
                bail!("unknown weights name '{name}'; the names are {KNOWN}")
            }
        }
    })
}

/// Named weights on disk.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub path: PathBuf,
    pub arch: Arch,
    pub sha256: String,
}

/// The SHA-256 first recorded for an unpinned file in the cache.
fn recorded(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".sha256");
    PathBuf::from(p)
}

/// The SHA-256 pinned beside a cached file, if its sidecar holds one.
fn pinned(sidecar: &Path) -> Option<String> {
    let text = std::fs::read_to_string(sidecar).ok()?;
    let sha = text.trim().to_ascii_lowercase();
    (sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit())).then_some(sha)
}

/// Downloads (once) and checks the named weights. `expected` is a SHA-256
/// recorded earlier (a run's `model.init_sha256`): the file must still be it.
///
/// Nothing in the cache is used unchecked: a torchvision file must match
/// the digits its name publishes (whatever `--sha256` says), and any other
/// file the SHA-256 pinned for it — by `--sha256`, by a run's record, or by
/// its first download from the public source. A file found in the cache
/// without a pin (placed by hand) is refused until `--sha256` pins it, and a
/// mirror's copy of a file nobody publishes a checksum for is not fetched
/// without `--sha256`: whatever a mirror serves would otherwise be pinned.
pub fn resolve(
    name: &str,
    expected: Option<&str>,
    opts: &FetchOptions,
) -> anyhow::Result<Resolved> {
    let named = lookup(name)?;
    let dir = cache_dir().join("weights");
    let path = dir.join(&named.source.file_name);
    let sidecar = recorded(&path);
    let pin = pinned(&sidecar);
    let wanted = opts
        .sha256
        .clone()
        .or_else(|| expected.map(str::to_ascii_lowercase))
        .or_else(|| pin.clone());
    let unpinned = named.source.checksum == Checksum::Unpinned;
    if unpinned && wanted.is_none() {
        if path.exists() {
            let (sha, _) = super::digests(&path)?;
            bail!(
                "weights {name}: {} is in the cache without a pinned SHA-256 (placed there by hand?), so nothing \
                 vouches for it. If you trust this copy, pin it with --sha256 {sha}; otherwise remove it \
                 (and {}) to download it again",
                path.display(),
                sidecar.display()
            );
        }
        if let Some(mirror) = &opts.mirror {
            bail!(
                "weights {name}: no checksum is published for {}, so a copy from the mirror {mirror} cannot be \
                 checked; give its SHA-256 with --sha256 (or fetch it once from its public source)",
                named.source.file_name
            );
        }
    }
    let mut source = named.source.clone();
    if let Some(w) = &wanted {
        source.checksum = Checksum::Sha256(w.clone());
    }
    let got = fetch(&source, &dir, opts).with_context(|| format!("weights {name}"))?;
    if let Checksum::Sha256Prefix(prefix) = &named.source.checksum {
        if !got.sha256.starts_with(prefix.as_str()) {
            let _ = std::fs::remove_file(&got.path);
            bail!(
                "weights {name}: {} has SHA-256 {}, but torchvision publishes this file as one starting with {prefix}; \
                 it was removed",
                got.path.display(),
                got.sha256
            );
        }
    }
    if unpinned && pin.as_deref() != Some(got.sha256.as_str()) {
        crate::io::write_atomic(&sidecar, format!("{}\n", got.sha256).as_bytes())?;
        crate::info!(
            "{name}: {} (SHA-256 {}; no checksum is published, this one is now pinned in {})",
            got.path.display(),
            got.sha256,
            sidecar.display()
        );
    }
    Ok(Resolved {
        path: got.path,
        arch: named.arch,
        sha256: got.sha256,
    })
}

/// A `--weights` / `model.init` value on disk: a name is resolved, a path
/// is taken as it is.
pub fn local_path(spec: &Path, expected: Option<&str>) -> anyhow::Result<PathBuf> {
    let text = spec.to_string_lossy();
    if is_name(&text) {
        Ok(resolve(&text, expected, &FetchOptions::new(None, None))?.path)
    } else {
        Ok(spec.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert!(is_name("torchvision:resnet18") && !is_name("weights/r18.pth"));
        let r = lookup("torchvision:resnet50.IMAGENET1K_V2").unwrap();
        assert_eq!(r.arch, Arch::Resnet50);
        assert_eq!(r.source.file_name, "resnet50-11ad3fa6.pth");
        assert_eq!(r.source.checksum, Checksum::Sha256Prefix("11ad3fa6".into()));
        let t = lookup("timm:vit_small_patch16_224.augreg_in21k_ft_in1k").unwrap();
        assert_eq!(
            t.source.file_name,
            "vit_small_patch16_224.augreg_in21k_ft_in1k.safetensors"
        );
        let err = lookup("torchvision:resnet101").unwrap_err().to_string();
        assert!(
            err.contains("resnet101") && err.contains("dinov2:vitb14[_reg]"),
            "{err}"
        );
        assert!(lookup("timm:vit_small_patch16_224.../x").is_err());
        let b = lookup("timm:vit_base_patch16_224.augreg2_in21k_ft_in1k").unwrap();
        assert_eq!(b.arch, Arch::VitB16);
        assert_eq!(
            b.source.file_name,
            "vit_base_patch16_224.augreg2_in21k_ft_in1k.safetensors"
        );
        assert_eq!(lookup("dinov2:vitb14_reg").unwrap().arch, Arch::VitB14);
    }
}
