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
    use tch::Kind;

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
}
