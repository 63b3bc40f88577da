//! The architectures, built from one [`ModelSpec`], each exposing named taps
//! (the intermediate activations NAVE clusters).
pub mod memory_format;
pub mod pth;
pub mod resnet;
pub mod vit;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use resnet::{ResNet, ResNetConfig};
use vit::{Vit, VitConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    // The command line spells them as the YAML does.
    #[value(name = "resnet18")]
    Resnet18,
    #[value(name = "resnet50")]
    Resnet50,
    /// ViT-S/16
    #[value(name = "vit_s16")]
    VitS16,
    /// ViT-S/14 (DINOv2's patch size)
    #[value(name = "vit_s14")]
    VitS14,
    /// ViT-B/16 (768 wide, 12 heads)
    #[value(name = "vit_b16")]
    VitB16,
    /// ViT-B/14 (DINOv2's ViT-B)
    #[value(name = "vit_b14")]
    VitB14,
}

/// The coarsest clustering grid (a side, in cells) on which the blind
/// verdict's "not flagged" is trusted: coarser, an artefact of a few pixels
/// shares its cell with most of its surroundings.
pub const MIN_TRUSTED_GRID: i64 = 8;

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Resnet18 => "resnet18",
            Arch::Resnet50 => "resnet50",
            Arch::VitS16 => "vit_s16",
            Arch::VitS14 => "vit_s14",
            Arch::VitB16 => "vit_b16",
            Arch::VitB14 => "vit_b14",
        }
    }

    pub fn is_vit(self) -> bool {
        self.patch_size().is_some()
    }

    /// A ViT's patch side; None for the ResNets.
    pub fn patch_size(self) -> Option<i64> {
        match self {
            Arch::VitS16 | Arch::VitB16 => Some(16),
            Arch::VitS14 | Arch::VitB14 => Some(14),
            Arch::Resnet18 | Arch::Resnet50 => None,
        }
    }

    /// Standard width: ResNet stem channels, ViT embedding width (heads
    /// are width / 64 and depth 12 for both ViT sizes).
    pub fn default_width(self) -> i64 {
        match self {
            Arch::VitS16 | Arch::VitS14 => 384,
            Arch::VitB16 | Arch::VitB14 => 768,
            Arch::Resnet18 | Arch::Resnet50 => 64,
        }
    }

    /// The taps NAVE uses when none are named: the paper's Clever Hans study
    /// uses the last two residual stages; for ViT the last block.
    /// The audit's default taps for images of `image_size` px: for a
    /// ResNet, the deepest pair of stages whose finer one still gives a
    /// clustering grid of at least [`MIN_TRUSTED_GRID`] a side (the paper's
    /// layer3 + layer4 from 128 px up, 14x14 at 224; layer2 + layer3 from
    /// 64 px; layer1 + layer2 below); for a ViT the last block (its patch grid
    /// is what it is, and the audit says when it is too coarse).
    pub fn audit_taps(self, image_size: i64) -> Vec<String> {
        if self.is_vit() {
            return self.default_taps();
        }
        let pair = if image_size / 16 >= MIN_TRUSTED_GRID {
            ["layer3", "layer4"]
        } else if image_size / 8 >= MIN_TRUSTED_GRID {
            ["layer2", "layer3"]
        } else {
            ["layer1", "layer2"]
        };
        pair.map(String::from).to_vec()
    }

    pub fn default_taps(self) -> Vec<String> {
        if self.is_vit() {
            vec!["block11".into()]
        } else {
            vec!["layer3".into(), "layer4".into()]
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `model:` in the experiment YAML (arch comes from the grid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub arch: Arch,
    /// Base channels (ResNet) or embedding width (ViT); None = the standard model.
    #[serde(default)]
    pub width: Option<i64>,
    /// Pretrained weights to start from: a file (safetensors or .pth with
    /// torchvision/timm names) or a name (`torchvision:resnet50`, see
    /// `fetch::weights`).
    #[serde(default)]
    pub init: Option<std::path::PathBuf>,
    /// The SHA-256 of the named weights `init` resolved to, recorded when the
    /// run starts so that a resumed run starts from the very same file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_sha256: Option<String>,
    /// ViT register tokens.
    #[serde(default)]
    pub registers: i64,
    /// ViT LayerScale (DINOv2); set from the weights by `from_weights`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub layer_scale: bool,
}

impl ModelSpec {
    /// An architecture at `width` (None: the standard model), randomly
    /// initialised, without registers or LayerScale.
    pub fn plain(arch: Arch, width: Option<i64>) -> Self {
        Self {
            arch,
            width,
            init: None,
            init_sha256: None,
            registers: 0,
            layer_scale: false,
        }
    }
}

#[derive(Debug)]
enum Net {
    ResNet(ResNet),
    Vit(Vit),
}

/// A model with its variables.
pub struct Model {
    pub arch: Arch,
    pub vs: nn::VarStore,
    net: Net,
    tap_names: Vec<(String, i64)>,
    /// For a model trained with other input statistics than ImageNet's:
    /// the per-channel scale and shift `[1, 3, 1, 1]` that turn an
    /// ImageNet-normalised batch into what it was trained on.
    input_affine: Option<(Tensor, Tensor)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown tap '{name}' for {arch}; its taps are {available}")]
    UnknownTap {
        name: String,
        arch: Arch,
        available: String,
    },
    #[error("{path}: no tensor named {name} (the {arch} model needs it; are these weights for another architecture or width?)")]
    MissingTensor {
        path: String,
        name: String,
        arch: Arch,
    },
    #[error("{path}: tensor {name} has shape {found:?}, the {arch} model expects {expected:?}")]
    ShapeMismatch {
        path: String,
        name: String,
        found: Vec<i64>,
        expected: Vec<i64>,
        arch: Arch,
    },
}

impl Model {
    pub fn new(
        spec: &ModelSpec,
        num_classes: i64,
        image_size: i64,
        device: Device,
    ) -> anyhow::Result<Self> {
        let width = spec.width.unwrap_or(spec.arch.default_width());
        if width < 1 || (spec.arch.is_vit() && width % 64 != 0 && width >= 64) {
            bail!(
                "model.width {width} is not valid for {} (ViT widths are multiples of 64)",
                spec.arch
            );
        }
        // A width read off a file from outside must not make this allocate
        // without bound: four times the standard model is far beyond any
        // published checkpoint of these architectures.
        let widest = 4 * spec.arch.default_width();
        if width > widest || !(0..=64).contains(&spec.registers) || num_classes < 1 {
            bail!(
                "a {} of width {width} with {} register(s) and {num_classes} class(es) is not built: \
                 widths go up to {widest}, registers up to 64, and there is at least one class",
                spec.arch,
                spec.registers
            );
        }
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (net, tap_names) = match spec.arch {
            Arch::Resnet18 | Arch::Resnet50 => {
                let config = if spec.arch == Arch::Resnet18 {
                    ResNetConfig::resnet18(width)
                } else {
                    ResNetConfig::resnet50(width)
                };
                (
                    Net::ResNet(ResNet::new(&root, config, num_classes)),
                    config.tap_channels(),
                )
            }
            Arch::VitS16 | Arch::VitS14 | Arch::VitB16 | Arch::VitB14 => {
                let patch = spec.arch.patch_size().expect("a ViT");
                if image_size % patch != 0 {
                    bail!("dataset.image_size {image_size} is not a multiple of {}'s patch size {patch}", spec.arch);
                }
                let config = VitConfig {
                    layer_scale: spec.layer_scale,
                    ..VitConfig::new(patch, width, spec.registers, image_size)
                };
                (
                    Net::Vit(Vit::new(&root, config, num_classes)),
                    config.tap_channels(),
                )
            }
        };
        Ok(Self {
            arch: spec.arch,
            vs,
            net,
            tap_names,
            input_affine: None,
        })
    }

    /// The classifier's outputs (its head's rows).
    pub fn num_classes(&self) -> i64 {
        let head = if self.arch.is_vit() {
            "head.weight"
        } else {
            "fc.weight"
        };
        self.vs.variables().get(head).map_or(0, |t| t.size()[0])
    }

    /// Declares the mean and standard deviation the model was trained with
    /// (per RGB channel, on [0, 1] pixels). Every caller feeds ImageNet-
    /// normalised batches; the model maps them to its own statistics first.
    pub fn set_input_statistics(&mut self, mean: [f64; 3], std: [f64; 3]) -> anyhow::Result<()> {
        anyhow::ensure!(
            std.iter().all(|s| s.is_finite() && *s > 0.0) && mean.iter().all(|m| m.is_finite()),
            "--std must be positive and --mean finite (got mean {mean:?}, std {std:?})"
        );
        let (m_in, s_in) = (crate::data::IMAGENET_MEAN, crate::data::IMAGENET_STD);
        if (mean, std) == (m_in, s_in) {
            self.input_affine = None;
            return Ok(());
        }
        // x = (p - m_in) / s_in  ->  (p - m) / s = x * (s_in / s) + (m_in - m) / s
        let scale: Vec<f32> = (0..3).map(|c| (s_in[c] / std[c]) as f32).collect();
        let shift: Vec<f32> = (0..3)
            .map(|c| ((m_in[c] - mean[c]) / std[c]) as f32)
            .collect();
        let device = self.vs.device();
        let column = |v: &[f32]| Tensor::from_slice(v).view([1, 3, 1, 1]).to_device(device);
        self.input_affine = Some((column(&scale), column(&shift)));
        Ok(())
    }

    /// The batch as the model's own input statistics want it.
    fn model_input(&self, x: &Tensor) -> Tensor {
        match &self.input_affine {
            Some((scale, shift)) => x * scale.to_kind(x.kind()) + shift.to_kind(x.kind()),
            None => x.shallow_clone(),
        }
    }

    /// Dilates a ResNet50's last stage as the authors' localisation code
    /// builds it (`replace_stride_with_dilation=[False, False, True]`): layer4
    /// on layer3's stride-16 grid. Returns false, changing nothing, for
    /// models torchvision cannot dilate (ResNet18's basic blocks, ViTs).
    pub fn dilate_last_stage(&mut self) -> bool {
        match &mut self.net {
            Net::ResNet(m) if m.config.block == resnet::Block::Bottleneck => {
                m.dilate_last_stage();
                true
            }
            _ => false,
        }
    }

    /// Names and channel counts of every tap.
    pub fn taps(&self) -> &[(String, i64)] {
        &self.tap_names
    }

    pub fn tap_index(&self, name: &str) -> Result<usize, ModelError> {
        self.tap_names
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| ModelError::UnknownTap {
                name: name.to_string(),
                arch: self.arch,
                available: self
                    .tap_names
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = &self.model_input(x);
        match &self.net {
            Net::ResNet(m) => m.forward_t(x, train),
            Net::Vit(m) => m.forward_t(x, train),
        }
    }

    /// The named taps (eval mode), each `[B, C, h, w]`.
    pub fn forward_taps(&self, x: &Tensor, names: &[String]) -> Result<Vec<Tensor>, ModelError> {
        let idx: Vec<usize> = names
            .iter()
            .map(|n| self.tap_index(n))
            .collect::<Result<_, _>>()?;
        let x = &self.model_input(x);
        Ok(match &self.net {
            Net::ResNet(m) => m.forward_taps(x, false, &idx, false).0,
            Net::Vit(m) => m.forward_taps(x, &idx, false).0,
        })
    }

    /// The parameters the optimiser updates, by name (sorted, for a stable order).
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// Name of the classifier's weight and bias (re-initialised when the class count differs).
    fn head_prefix(&self) -> &'static str {
        if self.arch.is_vit() {
            "head."
        } else {
            "fc."
        }
    }

    /// Every tensor as PyTorch's `state_dict` names it: our variables plus
    /// BatchNorm's `num_batches_tracked`, which torchvision's strict loading expects.
    pub fn state_dict(&self, batches_tracked: i64) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| {
                // NCHW on disk whatever the layout in memory (channels-last).
                let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
                (n, t)
            })
            .collect();
        let bn_prefixes: HashSet<String> = out
            .iter()
            .filter_map(|(n, _)| n.strip_suffix(".running_var").map(str::to_string))
            .collect();
        for prefix in bn_prefixes {
            out.push((
                format!("{prefix}.num_batches_tracked"),
                Tensor::from(batches_tracked),
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The tensors as torchvision and timm lay them out. A ViT with register
    /// tokens is written as timm's register models are (`no_embed_class`):
    /// position embeddings for the patches only, the CLS token's own
    /// embedding folded into `cls_token` (the two are only ever summed), so
    /// that `timm.VisionTransformer(reg_tokens=R, no_embed_class=True)` loads
    /// it strictly. Reading it back gives the same function.
    pub fn exported(&self, batches_tracked: i64) -> Vec<(String, Tensor)> {
        let mut out = self.state_dict(batches_tracked);
        let has_registers = out.iter().any(|(n, _)| n == "reg_token");
        if has_registers {
            let pos = out
                .iter()
                .find(|(n, _)| n == "pos_embed")
                .map(|(_, t)| t.shallow_clone())
                .expect("a ViT has pos_embed");
            let rows = pos.size()[1];
            for (name, t) in out.iter_mut() {
                if name == "cls_token" {
                    *t = &*t + pos.narrow(1, 0, 1);
                } else if name == "pos_embed" {
                    *t = pos.narrow(1, 1, rows - 1).contiguous();
                }
            }
        }
        out
    }

    /// Writes [`Model::exported`] as safetensors.
    pub fn save(&self, path: &Path, batches_tracked: i64) -> anyhow::Result<()> {
        let tensors = self.exported(batches_tracked);
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        crate::io::write_atomic_with(path, |tmp| {
            Tensor::write_safetensors(&refs, tmp)
                .with_context(|| format!("writing {}", tmp.display()))
        })
    }

    /// Loads weights by name. `strict`: every variable must be present with its
    /// shape. Non-strict (pretrained `init`): a classifier head of another shape
    /// is skipped (and reported); anything else missing is still an error.
    /// Returns the names that were skipped.
    pub fn load(&mut self, path: &Path, strict: bool) -> anyhow::Result<Vec<String>> {
        let shown = path.display().to_string();
        let loaded = read_weights(path)?;
        let loaded: HashMap<String, Tensor> = loaded.into_iter().collect();
        let mut skipped = Vec::new();
        let head = self.head_prefix();
        let _guard = tch::no_grad_guard();
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        // Tensors of the file that no variable takes: silently ignoring them
        // would explain another model than the file's (e.g. LayerScale).
        let known: HashSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        let unexpected: Vec<&String> = loaded
            .keys()
            .filter(|n| {
                // Buffers PyTorch saves that have no variable here, and timm's
                // other name for the register tokens.
                let ignorable = n.ends_with("num_batches_tracked")
                    || *n == "mask_token"
                    || (*n == "register_tokens" && known.contains("reg_token"));
                !known.contains(n.as_str()) && !ignorable
            })
            .filter(|n| strict || !n.starts_with(head))
            .collect();
        if !unexpected.is_empty() {
            let mut names: Vec<&str> = unexpected.iter().map(|s| s.as_str()).collect();
            names.sort();
            let listed = names.iter().take(6).copied().collect::<Vec<_>>().join(", ");
            anyhow::bail!("{shown}: {} tensor(s) that the {} model has no place for, e.g. {listed} (weights of another architecture or variant?)", names.len(), self.arch);
        }
        for (name, mut var) in vars {
            // DINOv2 names its registers register_tokens, timm reg_token.
            let src = loaded.get(&name).or_else(|| {
                if name == "reg_token" {
                    loaded.get("register_tokens")
                } else {
                    None
                }
            });
            let Some(src) = src else {
                if !strict && name.starts_with(head) {
                    skipped.push(name);
                    continue;
                }
                return Err(ModelError::MissingTensor {
                    path: shown,
                    name,
                    arch: self.arch,
                }
                .into());
            };
            let mut src = src.shallow_clone();
            if name == "pos_embed"
                && src.size() != var.size()
                && src.dim() == 3
                && src.size()[0] == 1
            {
                src = resample_pos_embed(&src, &var.size());
            }
            if src.size() != var.size() {
                if !strict && name.starts_with(head) {
                    skipped.push(name);
                    continue;
                }
                return Err(ModelError::ShapeMismatch {
                    path: shown,
                    name,
                    found: src.size(),
                    expected: var.size(),
                    arch: self.arch,
                }
                .into());
            }
            var.copy_(&src.to_kind(var.kind()));
        }
        Ok(skipped)
    }
}

/// Dictionary keys a checkpoint may keep its weights under, tried in order
/// (training scripts save {"state_dict": ...}, DINO {"teacher": ...}).
const CHECKPOINT_WRAPPERS: [&str; 4] = ["state_dict", "model", "teacher", "student"];
/// Name prefixes stripped, in order: DataParallel's and DINO's.
const CHECKPOINT_PREFIXES: [&str; 2] = ["module.", "backbone."];

/// The named tensors of a weights file: safetensors, or a PyTorch
/// checkpoint (`.pth`, `.pt`: torch.save's zip format, read in Rust by
/// `pth`, no Python). A checkpoint's weights are taken from under
/// `state_dict`, `model`, `teacher` or `student` when it has such an entry,
/// and the prefixes `module.` and `backbone.` are stripped.
pub fn read_weights(path: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if !matches!(extension.as_str(), "pth" | "pt") {
        return Tensor::read_safetensors(path)
            .with_context(|| format!("reading weights {}", path.display()));
    }
    let entries = pth::read(path)?;
    let wrapper = CHECKPOINT_WRAPPERS
        .iter()
        .find(|w| entries.iter().any(|(n, _)| n.starts_with(&format!("{w}/"))));
    let level: Vec<(String, Tensor)> = entries
        .iter()
        .filter_map(|(name, t)| {
            let rest = match wrapper {
                Some(w) => name.strip_prefix(&format!("{w}/"))?,
                None => name.as_str(),
            };
            // Deeper dictionaries (an optimiser's state) are not weights.
            (!rest.contains('/')).then(|| (rest.to_string(), t.shallow_clone()))
        })
        .collect();
    if level.is_empty() {
        let mut keys: Vec<&str> = entries
            .iter()
            .map(|(n, _)| n.split('/').next().unwrap_or_default())
            .collect();
        keys.dedup();
        anyhow::bail!(
            "{}: no state dict of tensors found (entries: {}); nave-lab reads the weights at the top level or under {}",
            path.display(),
            keys.iter().take(10).copied().collect::<Vec<_>>().join(", "),
            CHECKPOINT_WRAPPERS.join(", ")
        );
    }
    Ok(level
        .into_iter()
        .map(|(mut name, t)| {
            for prefix in CHECKPOINT_PREFIXES {
                if let Some(rest) = name.strip_prefix(prefix) {
                    name = rest.to_string();
                }
            }
            (name, t.contiguous())
        })
        .collect())
}

/// Builds a model whose shape (classes, width, registers) is read off a
/// weights file with torchvision/timm names, and loads it (strict).
pub fn from_weights(
    arch: Arch,
    path: &Path,
    image_size: i64,
    device: Device,
) -> anyhow::Result<Model> {
    let tensors: HashMap<String, Tensor> = read_weights(path)?.into_iter().collect();
    let dim = |name: &str, axis: usize| -> anyhow::Result<i64> {
        let t = tensors.get(name).ok_or_else(|| ModelError::MissingTensor {
            path: path.display().to_string(),
            name: name.to_string(),
            arch,
        })?;
        t.size().get(axis).copied().with_context(|| {
            format!(
                "{}: {name} has shape {:?}, not the {arch} model's",
                path.display(),
                t.size()
            )
        })
    };
    // Self-supervised checkpoints (DINO) have no classifier: a 1-class head, unused by NAVE.
    let (head, width_tensor, width_axis) = if arch.is_vit() {
        ("head.weight", "cls_token", 2)
    } else {
        ("fc.weight", "conv1.weight", 0)
    };
    let has_head = tensors.contains_key(head);
    let classes = if has_head { dim(head, 0)? } else { 1 };
    let registers = if tensors.contains_key("reg_token") {
        dim("reg_token", 1)?
    } else if tensors.contains_key("register_tokens") {
        dim("register_tokens", 1)?
    } else {
        0
    };
    let spec = ModelSpec {
        arch,
        width: Some(dim(width_tensor, width_axis)?),
        init: None,
        init_sha256: None,
        registers,
        layer_scale: tensors.contains_key("blocks.0.ls1.gamma"),
    };
    let mut model = Model::new(&spec, classes, image_size, device)?;
    // Strict when the file has a classifier; without one, the head stays as initialised.
    model.load(path, has_head)?;
    Ok(model)
}

/// `[1, 1 + n*n, D]` -> `[1, 1 + m*m, D]`: the patch grid resized bicubically
/// (pretrained ViTs at 224 used on other image sizes).
fn resample_pos_embed(src: &Tensor, target: &[i64]) -> Tensor {
    let d = src.size()[2];
    let m = target[1] - 1;
    // Patch-only position embeddings (timm's no_embed_class): CLS gets none, a zero row.
    let total = src.size()[1];
    let side = (total as f64).sqrt().round() as i64;
    let src = if side * side == total {
        Tensor::cat(
            &[
                Tensor::zeros([1, 1, d], (src.kind(), src.device())),
                src.shallow_clone(),
            ],
            1,
        )
    } else {
        src.shallow_clone()
    };
    let src = &src;
    let n = src.size()[1] - 1;
    let (from, to) = ((n as f64).sqrt() as i64, (m as f64).sqrt() as i64);
    if from < 1 || to < 1 || from * from != n || to * to != m {
        return src.shallow_clone();
    }
    let grid = src
        .narrow(1, 1, n)
        .reshape([1, from, from, d])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float);
    let grid = grid
        .upsample_bicubic2d([to, to], false, None, None)
        .permute([0, 2, 3, 1])
        .reshape([1, m, d]);
    Tensor::cat(&[src.narrow(1, 0, 1).to_kind(Kind::Float), grid], 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(arch: Arch, width: i64) -> ModelSpec {
        ModelSpec::plain(arch, Some(width))
    }

    #[test]
    fn resnet_tap_shapes() {
        let m = Model::new(&spec(Arch::Resnet18, 8), 3, 64, Device::Cpu).unwrap();
        let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let names: Vec<String> = ["stem", "layer1", "layer2", "layer3", "layer4"]
            .map(String::from)
            .to_vec();
        let taps = m.forward_taps(&x, &names).unwrap();
        let shapes: Vec<Vec<i64>> = taps.iter().map(|t| t.size()).collect();
        assert_eq!(
            shapes,
            vec![
                vec![2, 8, 16, 16],
                vec![2, 8, 16, 16],
                vec![2, 16, 8, 8],
                vec![2, 32, 4, 4],
                vec![2, 64, 2, 2]
            ]
        );
        assert_eq!(m.forward_t(&x, false).size(), vec![2, 3]);
        assert!(!bool::try_from(m.forward_t(&x, false).isnan().any()).unwrap());
        let r50 = Model::new(&spec(Arch::Resnet50, 8), 2, 64, Device::Cpu).unwrap();
        let taps = r50
            .forward_taps(&x, &["layer3".to_string(), "layer4".to_string()])
            .unwrap();
        assert_eq!(taps[0].size(), vec![2, 128, 4, 4]);
        assert_eq!(taps[1].size(), vec![2, 256, 2, 2]);
    }

    #[test]
    fn vit_tap_shapes_with_registers_and_other_sizes() {
        let s = ModelSpec {
            registers: 4,
            ..ModelSpec::plain(Arch::VitS16, Some(64))
        };
        let m = Model::new(&s, 2, 64, Device::Cpu).unwrap();
        let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let taps = m
            .forward_taps(&x, &["block0".to_string(), "block11".to_string()])
            .unwrap();
        assert_eq!(taps[1].size(), vec![2, 64, 4, 4]);
        // Another image size interpolates the position embeddings.
        let x = Tensor::randn([1, 3, 96, 96], (Kind::Float, Device::Cpu));
        assert_eq!(
            m.forward_taps(&x, &["block11".to_string()]).unwrap()[0].size(),
            vec![1, 64, 6, 6]
        );
        assert_eq!(m.forward_t(&x, false).size(), vec![1, 2]);
    }

    #[test]
    fn unknown_tap_lists_the_valid_ones() {
        let m = Model::new(&spec(Arch::Resnet18, 4), 2, 32, Device::Cpu).unwrap();
        let err = m.tap_index("layer9").unwrap_err().to_string();
        assert!(
            err.contains("layer9") && err.contains("layer1, layer2"),
            "{err}"
        );
    }

    #[test]
    fn save_and_load_round_trip_with_torchvision_names() {
        let dir = std::env::temp_dir().join(format!("nave-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.safetensors");
        let m = Model::new(&spec(Arch::Resnet18, 4), 2, 32, Device::Cpu).unwrap();
        m.save(&path, 7).unwrap();
        let names: Vec<String> = Tensor::read_safetensors(&path)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for expected in [
            "conv1.weight",
            "bn1.running_var",
            "layer2.0.downsample.0.weight",
            "layer3.1.bn2.num_batches_tracked",
            "fc.bias",
        ] {
            assert!(names.iter().any(|n| n == expected), "missing {expected}");
        }
        let mut other = Model::new(&spec(Arch::Resnet18, 4), 2, 32, Device::Cpu).unwrap();
        other.load(&path, true).unwrap();
        let x = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert!(m
            .forward_t(&x, false)
            .allclose(&other.forward_t(&x, false), 1e-6, 1e-6, false));
        // Another class count: strict fails naming the tensor, init skips the head.
        let mut three = Model::new(&spec(Arch::Resnet18, 4), 3, 32, Device::Cpu).unwrap();
        let err = three.load(&path, true).unwrap_err().to_string();
        assert!(err.contains("fc.") && err.contains("shape"), "{err}");
        assert_eq!(
            three.load(&path, false).unwrap(),
            vec!["fc.bias".to_string(), "fc.weight".to_string()]
        );
        // Another width is an error naming the tensor.
        let mut wide = Model::new(&spec(Arch::Resnet18, 8), 2, 32, Device::Cpu).unwrap();
        let err = wide.load(&path, false).unwrap_err().to_string();
        assert!(
            err.contains("bn1.bias") && err.contains("m.safetensors"),
            "{err}"
        );
    }

    #[test]
    fn unexpected_tensors_are_an_error_not_silently_ignored() {
        let dir = std::env::temp_dir().join(format!("nave-model-extra-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A ViT with LayerScale: its gammas have no place in a ViT without.
        let with_ls = ModelSpec {
            layer_scale: true,
            ..ModelSpec::plain(Arch::VitS16, Some(64))
        };
        let m = Model::new(&with_ls, 2, 32, Device::Cpu).unwrap();
        let path = dir.join("ls.safetensors");
        m.save(&path, 0).unwrap();
        let mut plain = Model::new(
            &ModelSpec {
                layer_scale: false,
                ..with_ls.clone()
            },
            2,
            32,
            Device::Cpu,
        )
        .unwrap();
        let err = plain.load(&path, true).unwrap_err().to_string();
        assert!(
            err.contains("ls1.gamma") && err.contains("no place"),
            "{err}"
        );
        // from_weights reads the variant off the file.
        let rebuilt = from_weights(Arch::VitS16, &path, 32, Device::Cpu).unwrap();
        let x = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert!(m
            .forward_t(&x, false)
            .allclose(&rebuilt.forward_t(&x, false), 1e-6, 1e-6, false));
    }
}
