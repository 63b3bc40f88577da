//! Channels-last (NHWC) memory for the convolutional nets.
//!
//! cuDNN's fast bf16 convolutions (tensor cores) read and write NHWC; given
//! NCHW tensors it transposes around every convolution, which is why bf16
//! autocast alone barely speeds up a ResNet. Channels-last changes only the
//! strides: shapes, names and numbers stay those of the NCHW model (up to
//! float rounding), and checkpoints are written NCHW as before.
use tch::{Device, Tensor};

use super::{Arch, Model};

/// How a run lays out its convolution tensors (`--memory-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MemoryFormat {
    /// Channels-last for ResNets under bf16 autocast on CUDA, where it pays;
    /// NCHW otherwise.
    #[default]
    Auto,
    /// Channels-last for ResNets wherever they run (a ViT has one
    /// convolution, its patch embedding, and stays as it is).
    ChannelsLast,
    /// NCHW everywhere.
    Contiguous,
}

impl MemoryFormat {
    /// Whether a model of `arch` on `device`, with or without bf16 autocast,
    /// runs channels-last.
    pub fn channels_last(self, arch: Arch, device: Device, autocast: bool) -> bool {
        let convolutional = !arch.is_vit();
        match self {
            Self::Auto => convolutional && device.is_cuda() && autocast,
            Self::ChannelsLast => convolutional,
            Self::Contiguous => false,
        }
    }

    /// The word a log line or a bench's JSON uses.
    pub fn describe(channels_last: bool) -> &'static str {
        if channels_last {
            "channels-last"
        } else {
            "NCHW"
        }
    }
}

/// `x` (4-D) with channels-last strides: the same values, NHWC in memory. A
/// tensor that already is is returned as is (a shallow clone).
pub fn to_channels_last(x: &Tensor) -> Tensor {
    let size = x.size();
    let [_, c, h, w] = size[..] else {
        panic!("to_channels_last needs a 4-D tensor, got shape {size:?}");
    };
    let strides = [h * w * c, 1, w * c, c];
    if x.stride() == strides {
        return x.shallow_clone();
    }
    let out = Tensor::empty_strided(&size, strides, (x.kind(), x.device()));
    let mut out_mut = out.shallow_clone();
    tch::no_grad(|| out_mut.copy_(x));
    out
}

impl Model {
    /// Re-lays every 4-D variable (convolution weights) channels-last, in
    /// place: the optimiser's handles and the taps see the same tensors.
    pub fn to_channels_last(&self) {
        for (_, mut var) in self.vs.variables() {
            if var.dim() == 4 {
                let relaid = to_channels_last(&var);
                tch::no_grad(|| var.set_data(&relaid));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelSpec;
    use tch::Kind;

    fn spec(arch: Arch) -> ModelSpec {
        ModelSpec {
            arch,
            width: Some(8),
            init: None,
            init_sha256: None,
            registers: 0,
            layer_scale: false,
        }
    }

    #[test]
    fn channels_last_keeps_values_and_changes_strides() {
        let x = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let y = to_channels_last(&x);
        assert_eq!(y.size(), x.size());
        assert_eq!(y.stride(), vec![60, 1, 15, 3]);
        assert!(!y.is_contiguous());
        assert_eq!(f64::try_from((&y - &x).abs().max()).unwrap(), 0.0);
        // Already channels-last: nothing copied.
        let z = to_channels_last(&y);
        assert_eq!(z.data_ptr(), y.data_ptr());
    }

    #[test]
    fn auto_is_channels_last_only_for_resnets_under_cuda_autocast() {
        let cuda = Device::Cuda(0);
        assert!(MemoryFormat::Auto.channels_last(Arch::Resnet50, cuda, true));
        assert!(!MemoryFormat::Auto.channels_last(Arch::Resnet50, cuda, false));
        assert!(!MemoryFormat::Auto.channels_last(Arch::Resnet50, Device::Cpu, false));
        assert!(!MemoryFormat::Auto.channels_last(Arch::VitS16, cuda, true));
        assert!(MemoryFormat::ChannelsLast.channels_last(Arch::Resnet18, Device::Cpu, false));
        assert!(!MemoryFormat::ChannelsLast.channels_last(Arch::VitS16, Device::Cpu, false));
        assert!(!MemoryFormat::Contiguous.channels_last(Arch::Resnet50, cuda, true));
    }

    /// The same model, NCHW and channels-last: the same logits and the same
    /// gradients (up to rounding), and a state dict that saves (safetensors
    /// refuses non-contiguous tensors).
    const BATCH: i64 = 16;
    #[test]
    fn a_channels_last_resnet_computes_what_the_nchw_one_does() {
        tch::manual_seed(3);
        let nchw = Model::new(&spec(Arch::Resnet18), 2, 32, Device::Cpu).unwrap();
        let nhwc = Model::new(&spec(Arch::Resnet18), 2, 32, Device::Cpu).unwrap();
        let source = nchw.vs.variables();
        for (name, mut b) in nhwc.vs.variables() {
            tch::no_grad(|| b.copy_(&source[&name]));
        }
        nhwc.to_channels_last();
        let conv = nhwc
            .vs
            .variables()
            .into_iter()
            .find(|(n, _)| n == "conv1.weight")
            .unwrap()
            .1;
        assert!(!conv.is_contiguous(), "conv1.weight was not re-laid");
        assert!(
            conv.requires_grad(),
            "set_data must keep the parameter trainable"
        );

        let x = Tensor::randn([BATCH, 3, 32, 32], (Kind::Float, Device::Cpu));
        let a = nchw.forward_t(&x, true);
        let b = nhwc.forward_t(&to_channels_last(&x), true);
        let diff = f64::try_from((&a - &b).abs().max()).unwrap();
        assert!(diff < 1e-4, "logits differ by {diff}");
        a.sum(Kind::Float).backward();
        b.sum(Kind::Float).backward();
        let grad = |m: &Model| {
            m.vs.variables()
                .into_iter()
                .find(|(n, _)| n == "layer1.0.conv1.weight")
                .unwrap()
                .1
                .grad()
        };
        let (ga, gb) = (grad(&nchw), grad(&nhwc));
        let gdiff = f64::try_from((&ga - &gb).abs().max()).unwrap();
        let scale = f64::try_from(ga.abs().max()).unwrap();
        assert!(
            gdiff <= 1e-4 * scale.max(1.0),
            "gradients differ by {gdiff}"
        );

        // A few SGD steps (the fused update on re-laid parameters and NCHW
        // momentum buffers) keep the two models together. The rate is small:
        // at 0.05 a batch of 16 is chaotic, and PyTorch's NCHW and
        // channels-last models part by 0.08 in loss within four steps too.
        let sgd = |m: &Model| {
            crate::train::optim::Optimizer::new(
                crate::config::OptimizerSpec {
                    kind: crate::config::OptimizerKind::Sgd,
                    lr: 0.002,
                    momentum: 0.9,
                    weight_decay: 5e-4,
                    betas: [0.9, 0.999],
                },
                m.trainable(),
            )
        };
        let (mut sgd_a, mut sgd_b) = (sgd(&nchw), sgd(&nhwc));
        for step in 0..4 {
            let x = Tensor::randn([BATCH, 3, 32, 32], (Kind::Float, Device::Cpu));
            let y = Tensor::randint(2, [BATCH], (Kind::Int64, Device::Cpu));
            let la = nchw.forward_t(&x, true).cross_entropy_for_logits(&y);
            let lb = nhwc
                .forward_t(&to_channels_last(&x), true)
                .cross_entropy_for_logits(&y);
            let (la_v, lb_v) = (f64::try_from(&la).unwrap(), f64::try_from(&lb).unwrap());
            assert!(
                (la_v - lb_v).abs() < 1e-4,
                "step {step}: loss {la_v} vs {lb_v}"
            );
            for (opt, loss) in [(&mut sgd_a, &la), (&mut sgd_b, &lb)] {
                opt.zero_grad().unwrap();
                loss.backward();
                opt.step(0.002).unwrap();
            }
        }
        assert!(!conv.is_contiguous(), "the update re-laid conv1.weight");

        // Resuming: buffers saved NCHW come back in their parameters' layout.
        let saved: std::collections::HashMap<String, Tensor> = sgd_b
            .state()
            .into_iter()
            .map(|(n, t)| (n, t.contiguous()))
            .collect();
        let mut resumed = sgd(&nhwc);
        resumed
            .load_state(saved, 4, std::path::Path::new("state.safetensors"))
            .unwrap();
        let buffers = resumed.state();
        let (_, conv_buffer) = buffers
            .iter()
            .find(|(n, _)| n == "conv1.weight.m1")
            .expect("conv1.weight's momentum buffer");
        assert_eq!(conv_buffer.stride(), conv.stride());
        let original = &sgd_b
            .state()
            .into_iter()
            .find(|(n, _)| n == "conv1.weight.m1")
            .unwrap()
            .1;
        assert_eq!(
            f64::try_from((conv_buffer - original).abs().max()).unwrap(),
            0.0
        );

        let dir = std::env::temp_dir().join(format!("nave-nhwc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nhwc.safetensors");
        nhwc.save(&path, 1).unwrap();
        let back = Tensor::read_safetensors(&path).unwrap();
        let saved = &back.iter().find(|(n, _)| n == "conv1.weight").unwrap().1;
        assert!(saved.is_contiguous());
        assert_eq!(f64::try_from((saved - &conv).abs().max()).unwrap(), 0.0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
