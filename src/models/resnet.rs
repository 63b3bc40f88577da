//! ResNet18 and ResNet50 (He et al. 2016) with torchvision's tensor names
//! (`conv1.weight`, `layer3.1.bn2.running_var`, `fc.weight` ...), so that
//! torchvision weights load and our checkpoints load in torchvision.
//! Bottlenecks stride in the 3x3 convolution (torchvision's "V1.5").
//!
//! Taps: `stem` (after the max-pool), `layer1`..`layer4`.
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    Basic,
    Bottleneck,
}

/// A ResNet preset: block type and blocks per stage.
#[derive(Debug, Clone, Copy)]
pub struct ResNetConfig {
    pub block: Block,
    pub layers: [usize; 4],
    /// Channels of the stem and first stage (64 in the standard models).
    pub width: i64,
}

impl ResNetConfig {
    pub fn resnet18(width: i64) -> Self {
        Self {
            block: Block::Basic,
            layers: [2, 2, 2, 2],
            width,
        }
    }
    pub fn resnet50(width: i64) -> Self {
        Self {
            block: Block::Bottleneck,
            layers: [3, 4, 6, 3],
            width,
        }
    }
    fn expansion(&self) -> i64 {
        match self.block {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
    /// Output channels of each tap.
    pub fn tap_channels(&self) -> Vec<(String, i64)> {
        let mut out = vec![("stem".to_string(), self.width)];
        for i in 0..4 {
            out.push((
                format!("layer{}", i + 1),
                self.width * (1 << i) * self.expansion(),
            ));
        }
        out
    }
    /// Downsampling factor of each tap relative to the input (undilated).
    pub fn tap_strides(&self) -> [i64; 5] {
        [4, 4, 8, 16, 32]
    }
}

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    nn::conv2d(
        p,
        cin,
        cout,
        k,
        nn::ConvConfig {
            stride,
            padding,
            bias: false,
            ..Default::default()
        },
    )
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// Stride, padding and dilation of one convolution. Kept beside the weights
/// (tch's `Conv2D` hides its own) so that a stage can be dilated after the
/// model is built, without new parameters.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    stride: i64,
    padding: i64,
    dilation: i64,
}

fn run_conv(x: &Tensor, c: &nn::Conv2D, g: Geometry) -> Tensor {
    x.conv2d(
        &c.ws,
        c.bs.as_ref(),
        [g.stride, g.stride],
        [g.padding, g.padding],
        [g.dilation, g.dilation],
        1,
    )
}

#[derive(Debug)]
struct ResidualBlock {
    convs: Vec<(nn::Conv2D, Geometry)>,
    bns: Vec<nn::BatchNorm>,
    downsample: Option<(nn::Conv2D, Geometry, nn::BatchNorm)>,
    /// Index in `convs` of the 3x3 convolution that strides (Bottleneck: the
    /// second, as torchvision's "V1.5").
    strided: usize,
}

impl ResidualBlock {
    fn new(p: nn::Path, block: Block, cin: i64, planes: i64, stride: i64, expansion: i64) -> Self {
        let cout = planes * expansion;
        let with = |c: nn::Conv2D, k: i64, stride: i64| {
            let g = Geometry {
                stride,
                padding: k / 2,
                dilation: 1,
            };
            (c, g)
        };
        let (convs, bns, strided) = match block {
            Block::Basic => (
                vec![
                    with(conv(&p / "conv1", cin, planes, 3, stride, 1), 3, stride),
                    with(conv(&p / "conv2", planes, planes, 3, 1, 1), 3, 1),
                ],
                vec![bn(&p / "bn1", planes), bn(&p / "bn2", planes)],
                0,
            ),
            Block::Bottleneck => (
                vec![
                    with(conv(&p / "conv1", cin, planes, 1, 1, 0), 1, 1),
                    with(conv(&p / "conv2", planes, planes, 3, stride, 1), 3, stride),
                    with(conv(&p / "conv3", planes, cout, 1, 1, 0), 1, 1),
                ],
                vec![
                    bn(&p / "bn1", planes),
                    bn(&p / "bn2", planes),
                    bn(&p / "bn3", cout),
                ],
                1,
            ),
        };
        let downsample = (stride != 1 || cin != cout).then(|| {
            let (c, g) = with(
                conv(&p / "downsample" / 0, cin, cout, 1, stride, 0),
                1,
                stride,
            );
            (c, g, bn(&p / "downsample" / 1, cout))
        });
        Self {
            convs,
            bns,
            downsample,
            strided,
        }
    }

    /// torchvision's `replace_stride_with_dilation` for one block: the
    /// strided 3x3 convolution (and the shortcut) stop striding, and the 3x3
    /// convolution is dilated by `dilation` (padding alike, so the grid size
    /// is kept).
    fn dilate(&mut self, dilation: i64) {
        let g = &mut self.convs[self.strided].1;
        g.stride = 1;
        g.dilation = dilation;
        g.padding = dilation;
        if let Some((_, g, _)) = &mut self.downsample {
            g.stride = 1;
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        let last = self.convs.len() - 1;
        for (i, ((c, g), b)) in self.convs.iter().zip(&self.bns).enumerate() {
            y = run_conv(&y, c, *g).apply_t(b, train);
            if i < last {
                // In place, as torchvision's ReLU(inplace=True): batch norm's
                // backward does not need its output, and it saves a pass over memory.
                let _ = y.relu_();
            }
        }
        let shortcut = match &self.downsample {
            Some((c, g, b)) => run_conv(x, c, *g).apply_t(b, train),
            None => x.shallow_clone(),
        };
        let _ = y.g_add_(&shortcut);
        let _ = y.relu_();
        y
    }
}

#[derive(Debug)]
pub struct ResNet {
    pub config: ResNetConfig,
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    layers: Vec<Vec<ResidualBlock>>,
    fc: nn::Linear,
    last_stage_dilated: bool,
}

impl ResNet {
    pub fn new(p: &nn::Path, config: ResNetConfig, num_classes: i64) -> Self {
        let w = config.width;
        let expansion = config.expansion();
        let conv1 = conv(p / "conv1", 3, w, 7, 2, 3);
        let bn1 = bn(p / "bn1", w);
        let mut cin = w;
        let mut layers = Vec::new();
        for (stage, &blocks) in config.layers.iter().enumerate() {
            let planes = w << stage;
            let stride = if stage == 0 { 1 } else { 2 };
            let lp = p / format!("layer{}", stage + 1);
            let mut stage_blocks = Vec::new();
            for b in 0..blocks {
                stage_blocks.push(ResidualBlock::new(
                    &lp / b,
                    config.block,
                    cin,
                    planes,
                    if b == 0 { stride } else { 1 },
                    expansion,
                ));
                cin = planes * expansion;
            }
            layers.push(stage_blocks);
        }
        let fc = nn::linear(p / "fc", cin, num_classes, Default::default());
        Self {
            config,
            conv1,
            bn1,
            layers,
            fc,
            last_stage_dilated: false,
        }
    }

    /// Runs the encoder and returns the requested taps (in the order asked)
    /// and, when `logits` is true, the classifier output. Stops after the last
    /// tap needed when no logits are wanted.
    pub fn forward_taps(
        &self,
        x: &Tensor,
        train: bool,
        taps: &[usize],
        logits: bool,
    ) -> (Vec<Tensor>, Option<Tensor>) {
        let mut found: Vec<Option<Tensor>> = (0..5).map(|_| None).collect();
        let deepest = taps.iter().copied().max().unwrap_or(0);
        // [B, w, H/4, W/4]
        let mut y = x
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        found[0] = Some(y.shallow_clone());
        for (i, stage) in self.layers.iter().enumerate() {
            if !logits && deepest <= i {
                break;
            }
            for block in stage {
                y = block.forward_t(&y, train);
            }
            found[i + 1] = Some(y.shallow_clone());
        }
        let out = taps
            .iter()
            .map(|&t| found[t].as_ref().expect("tap computed").shallow_clone())
            .collect();
        let logits = logits.then(|| y.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc));
        (out, logits)
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_taps(x, train, &[], true).1.expect("logits")
    }

    /// torchvision's `replace_stride_with_dilation=[False, False, True]`:
    /// layer4 keeps layer3's grid (stride 16 instead of 32). Its first block
    /// stops striding with its 3x3 convolution undilated; the later blocks'
    /// 3x3 convolutions are dilated by 2. The weights are unchanged.
    pub fn dilate_last_stage(&mut self) {
        for (b, block) in self.layers[3].iter_mut().enumerate() {
            block.dilate(if b == 0 { 1 } else { 2 });
        }
        self.last_stage_dilated = true;
    }

    /// Downsampling factor of each tap (`stem`, `layer1`..`layer4`).
    pub fn tap_strides(&self) -> [i64; 5] {
        let mut s = self.config.tap_strides();
        if self.last_stage_dilated {
            s[4] = 16;
        }
        s
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        ResNet::forward_t(self, x, train)
    }
}
