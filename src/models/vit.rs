//! ViT-S and ViT-B, patch 16 or 14 (Dosovitskiy et al. 2021) with timm's and DINO's
//! tensor names (`patch_embed.proj.weight`, `blocks.11.attn.qkv.weight`,
//! `cls_token`, `pos_embed`, `norm.weight`, `head.weight` ...).
//!
//! Position embeddings cover the CLS token and the patch grid they were
//! trained on; other image sizes interpolate the grid part bicubically.
//! Optional register tokens (`reg_token`, Darcet et al. 2024) join after CLS
//! without a position embedding, as in DINOv2 with registers.
//!
//! Taps: `block0`..`block11`, the patch tokens as a `[B, D, h, w]` grid (CLS
//! and registers dropped).
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, Copy)]
pub struct VitConfig {
    pub patch: i64,
    /// Embedding width (384 for ViT-S, 768 for ViT-B); heads are width / 64.
    pub dim: i64,
    pub depth: usize,
    pub heads: i64,
    pub registers: i64,
    /// LayerScale (`ls1.gamma`, `ls2.gamma` per block), as in DINOv2.
    pub layer_scale: bool,
    /// Image side the position embeddings are laid out for.
    pub image_size: i64,
}

impl VitConfig {
    /// Twelve blocks of `dim / 64` heads: ViT-S at 384, ViT-B at 768.
    pub fn new(patch: i64, dim: i64, registers: i64, image_size: i64) -> Self {
        Self {
            patch,
            dim,
            depth: 12,
            heads: (dim / 64).max(1),
            registers,
            layer_scale: false,
            image_size,
        }
    }
    pub fn tap_channels(&self) -> Vec<(String, i64)> {
        (0..self.depth)
            .map(|i| (format!("block{i}"), self.dim))
            .collect()
    }
}

const LN_EPS: f64 = 1e-6;

fn layer_norm(p: nn::Path, dim: i64) -> nn::LayerNorm {
    nn::layer_norm(
        p,
        vec![dim],
        nn::LayerNormConfig {
            eps: LN_EPS,
            ..Default::default()
        },
    )
}

#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    /// LayerScale factors of the attention and MLP branches.
    ls: Option<(Tensor, Tensor)>,
    heads: i64,
}

impl Block {
    fn new(p: nn::Path, dim: i64, heads: i64, layer_scale: bool) -> Self {
        let ls = layer_scale.then(|| {
            let init = nn::Init::Const(1e-5);
            (
                (&p / "ls1").var("gamma", &[dim], init),
                (&p / "ls2").var("gamma", &[dim], init),
            )
        });
        Self {
            norm1: layer_norm(&p / "norm1", dim),
            qkv: nn::linear(&p / "attn" / "qkv", dim, 3 * dim, Default::default()),
            proj: nn::linear(&p / "attn" / "proj", dim, dim, Default::default()),
            norm2: layer_norm(&p / "norm2", dim),
            fc1: nn::linear(&p / "mlp" / "fc1", dim, 4 * dim, Default::default()),
            fc2: nn::linear(&p / "mlp" / "fc2", 4 * dim, dim, Default::default()),
            ls,
            heads,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, d) = x.size3().expect("[B, N, D]");
        let h = self.heads;
        // [3, B, heads, N, D/heads]
        let qkv = x
            .apply(&self.norm1)
            .apply(&self.qkv)
            .view([b, n, 3, h, d / h])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let attn = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        let mut attn = attn.transpose(1, 2).reshape([b, n, d]).apply(&self.proj);
        let mut mlp_scale = None;
        if let Some((g1, g2)) = &self.ls {
            attn *= g1;
            mlp_scale = Some(g2);
        }
        let x = x + attn;
        let mut mlp = x
            .apply(&self.norm2)
            .apply(&self.fc1)
            .gelu("none")
            .apply(&self.fc2);
        if let Some(g2) = mlp_scale {
            mlp *= g2;
        }
        x + mlp
    }
}

#[derive(Debug)]
pub struct Vit {
    pub config: VitConfig,
    patch_embed: nn::Conv2D,
    cls_token: Tensor,
    reg_token: Option<Tensor>,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    head: nn::Linear,
}

impl Vit {
    pub fn new(p: &nn::Path, config: VitConfig, num_classes: i64) -> Self {
        let d = config.dim;
        let grid = config.image_size / config.patch;
        let patch_embed = nn::conv2d(
            p / "patch_embed" / "proj",
            3,
            d,
            config.patch,
            nn::ConvConfig {
                stride: config.patch,
                ..Default::default()
            },
        );
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let cls_token = p.var("cls_token", &[1, 1, d], init);
        let reg_token =
            (config.registers > 0).then(|| p.var("reg_token", &[1, config.registers, d], init));
        let pos_embed = p.var("pos_embed", &[1, 1 + grid * grid, d], init);
        let blocks = (0..config.depth)
            .map(|i| Block::new(p / "blocks" / i, d, config.heads, config.layer_scale))
            .collect();
        let norm = layer_norm(p / "norm", d);
        let head = nn::linear(p / "head", d, num_classes, Default::default());
        Self {
            config,
            patch_embed,
            cls_token,
            reg_token,
            pos_embed,
            blocks,
            norm,
            head,
        }
    }

    /// Position embeddings for an `h` x `w` patch grid: the stored grid
    /// resized bicubically when the sizes differ.
    fn pos_embed_for(&self, h: i64, w: i64) -> Tensor {
        let d = self.config.dim;
        let n = self.pos_embed.size()[1] - 1;
        let side = (n as f64).sqrt().round() as i64;
        if side * side == h * w && side == h {
            return self.pos_embed.shallow_clone();
        }
        let cls = self.pos_embed.narrow(1, 0, 1);
        let grid = self
            .pos_embed
            .narrow(1, 1, n)
            .reshape([1, side, side, d])
            .permute([0, 3, 1, 2]);
        let grid = grid
            .upsample_bicubic2d([h, w], false, None, None)
            .permute([0, 2, 3, 1])
            .reshape([1, h * w, d]);
        Tensor::cat(&[cls, grid], 1)
    }

    /// Runs the encoder; returns the requested block outputs as patch grids
    /// and, when asked, the logits (head on the normalised CLS token).
    pub fn forward_taps(
        &self,
        x: &Tensor,
        taps: &[usize],
        logits: bool,
    ) -> (Vec<Tensor>, Option<Tensor>) {
        let b = x.size()[0];
        let d = self.config.dim;
        // [B, D, h, w]
        let patches = x.apply(&self.patch_embed);
        let (h, w) = (patches.size()[2], patches.size()[3]);
        let tokens = patches.flatten(2, -1).transpose(1, 2);
        let cls = self.cls_token.expand([b, 1, d], true);
        let mut y = Tensor::cat(&[cls, tokens], 1) + self.pos_embed_for(h, w);
        let prefix = 1 + self.config.registers;
        if let Some(reg) = &self.reg_token {
            let reg = reg.expand([b, self.config.registers, d], true);
            y = Tensor::cat(&[y.narrow(1, 0, 1), reg, y.narrow(1, 1, h * w)], 1);
        }
        let deepest = taps.iter().copied().max().unwrap_or(0);
        let mut found: Vec<Option<Tensor>> = self.blocks.iter().map(|_| None).collect();
        for (i, block) in self.blocks.iter().enumerate() {
            if !logits && i > deepest {
                break;
            }
            y = block.forward(&y);
            if taps.contains(&i) {
                // [B, D, h, w]
                found[i] = Some(
                    y.narrow(1, prefix, h * w)
                        .transpose(1, 2)
                        .reshape([b, d, h, w]),
                );
            }
        }
        let out = taps
            .iter()
            .map(|&t| found[t].as_ref().expect("tap computed").shallow_clone())
            .collect();
        let logits = logits.then(|| y.apply(&self.norm).select(1, 0).apply(&self.head));
        (out, logits)
    }
}

impl ModuleT for Vit {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        self.forward_taps(x, &[], true).1.expect("logits")
    }
}
