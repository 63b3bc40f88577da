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
    /// Downsampling factor of each tap relative to the input.
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

#[derive(Debug)]
struct ResidualBlock {
    convs: Vec<nn::Conv2D>,
    bns: Vec<nn::BatchNorm>,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl ResidualBlock {
    fn new(p: nn::Path, block: Block, cin: i64, planes: i64, stride: i64, expansion: i64) -> Self {
        let cout = planes * expansion;
        let (convs, bns) = match block {
            Block::Basic => (
                vec![
                    conv(&p / "conv1", cin, planes, 3, stride, 1),
                    conv(&p / "conv2", planes, planes, 3, 1, 1),
                ],
                vec![bn(&p / "bn1", planes), bn(&p / "bn2", planes)],
            ),
            Block::Bottleneck => (
                vec![
                    conv(&p / "conv1", cin, planes, 1, 1, 0),
                    conv(&p / "conv2", planes, planes, 3, stride, 1),
                    conv(&p / "conv3", planes, cout, 1, 1, 0),
                ],
                vec![
                    bn(&p / "bn1", planes),
                    bn(&p / "bn2", planes),
                    bn(&p / "bn3", cout),
                ],
            ),
        };
        let downsample = (stride != 1 || cin != cout).then(|| {
            (
                conv(&p / "downsample" / 0, cin, cout, 1, stride, 0),
                bn(&p / "downsample" / 1, cout),
            )
        });
        Self {
            convs,
            bns,
            downsample,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        let last = self.convs.len() - 1;
        for (i, (c, b)) in self.convs.iter().zip(&self.bns).enumerate() {
            y = y.apply(c).apply_t(b, train);
            if i < last {
                // In place, as torchvision's ReLU(inplace=True): batch norm's
                // backward does not need its output, and it saves a pass over memory.
                let _ = y.relu_();
            }
        }
        let shortcut = match &self.downsample {
            Some((c, b)) => x.apply(c).apply_t(b, train),
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
}

impl ModuleT for ResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        ResNet::forward_t(self, x, train)
    }
}
