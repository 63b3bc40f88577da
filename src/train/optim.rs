//! SGD with momentum and AdamW, written out so that their buffers can be
//! saved with the run and a resumed run continues exactly where it stopped
//! (tch's optimisers keep their state inside libtorch, out of reach).
//! Both follow PyTorch's update rules (torch.optim.SGD, torch.optim.AdamW,
//! foreach=True) and run through libtorch's multi-tensor kernels (csrc/), so a
//! step is a few launches on CUDA rather than several per parameter. Bias
//! correction uses the optimiser's step count: every trained parameter gets
//! a gradient at every step in these models.
use std::collections::HashMap;

use tch::Tensor;

use crate::config::{OptimizerKind, OptimizerSpec, ScheduleKind, ScheduleSpec};

use crate::cxx::{check, nave_adamw_foreach, nave_clear_grad, nave_sgd_foreach};

/// Adam's epsilon, as torch.optim.AdamW's default.
const ADAM_EPS: f64 = 1e-8;

/// `torch::Tensor*` of each tensor, for the multi-tensor calls of csrc/.
fn raw_pointers<'a>(tensors: impl Iterator<Item = &'a mut Tensor>) -> Vec<*mut std::ffi::c_void> {
    tensors
        .map(|t| t.as_mut_ptr() as *mut std::ffi::c_void)
        .collect()
}

pub struct Optimizer {
    spec: OptimizerSpec,
    params: Vec<(String, Tensor)>,
    /// SGD: momentum buffer per parameter; AdamW: first and second moments.
    first: Vec<Option<Tensor>>,
    second: Vec<Option<Tensor>>,
    pub step: i64,
}

impl Optimizer {
    pub fn new(spec: OptimizerSpec, params: Vec<(String, Tensor)>) -> Self {
        let n = params.len();
        Self {
            spec,
            params,
            first: (0..n).map(|_| None).collect(),
            second: (0..n).map(|_| None).collect(),
            step: 0,
        }
    }

    /// Releases the gradients (PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&mut self) -> anyhow::Result<()> {
        for (_, p) in &mut self.params {
            // SAFETY: `as_mut_ptr` is the live `torch::Tensor*` of a parameter
            // we own; the result is checked at once.
            unsafe {
                check(
                    nave_clear_grad(p.as_mut_ptr() as *mut std::ffi::c_void),
                    "clearing gradients",
                )?
            };
        }
        Ok(())
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) -> anyhow::Result<()> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        match self.spec.kind {
            OptimizerKind::Adamw => self.adamw_step(lr)?,
            OptimizerKind::Sgd => {
                if !self.try_sgd_foreach(lr)? {
                    self.sgd_step_per_parameter(lr);
                }
            }
        }
        Ok(())
    }

    /// AdamW through libtorch's multi-tensor kernels (csrc/torch_extras.cpp),
    /// in torch.optim.AdamW's order of operations. The moments of every
    /// parameter exist from the first step (zeros until its first gradient).
    fn adamw_step(&mut self, lr: f64) -> anyhow::Result<()> {
        for (i, (_, p)) in self.params.iter().enumerate() {
            self.first[i].get_or_insert_with(|| p.zeros_like());
            self.second[i].get_or_insert_with(|| p.zeros_like());
        }
        let s = &self.spec;
        let mut params = raw_pointers(self.params.iter_mut().map(|(_, p)| p));
        let mut m = raw_pointers(
            self.first
                .iter_mut()
                .map(|t| t.as_mut().expect("made above")),
        );
        let mut v = raw_pointers(
            self.second
                .iter_mut()
                .map(|t| t.as_mut().expect("made above")),
        );
        // SAFETY: the three arrays hold `n` live `torch::Tensor*` owned by this
        // optimiser for the call's duration; the result is checked at once.
        unsafe {
            let result = nave_adamw_foreach(
                params.as_mut_ptr(),
                m.as_mut_ptr(),
                v.as_mut_ptr(),
                params.len() as i64,
                lr,
                s.betas[0],
                s.betas[1],
                ADAM_EPS,
                s.weight_decay,
                self.step,
            );
            check(result, "the AdamW step")
        }
    }

    /// SGD parameter by parameter: the first step, which creates the momentum
    /// buffers, and steps where some parameter has no gradient.
    fn sgd_step_per_parameter(&mut self, lr: f64) {
        let s = &self.spec;
        // The step's scalars as 0-dim tensors on the parameters' device, made
        // once per step: a host-to-device copy per parameter would stall CUDA.
        let Some((_, first)) = self.params.first() else {
            return;
        };
        let scalar = |v: f64| {
            Tensor::from(v)
                .to_kind(first.kind())
                .to_device(first.device())
        };
        let (neg_lr, wd) = (scalar(-lr), scalar(s.weight_decay));
        for (i, (_, p)) in self.params.iter_mut().enumerate() {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            // PyTorch: d = g + wd * p; buf = momentum * buf + d (buf = d at first); p -= lr * buf.
            // In place, with no temporaries: the gradient is cleared before the next backward.
            let mut d = g;
            if s.weight_decay != 0.0 {
                let _ = d.addcmul_(p, &wd);
            }
            let update = if s.momentum != 0.0 {
                match &mut self.first[i] {
                    Some(buf) => {
                        let _ = buf.g_mul_scalar_(s.momentum).g_add_(&d);
                        buf.shallow_clone()
                    }
                    None => {
                        let buf = d.detach().copy();
                        self.first[i] = Some(buf.shallow_clone());
                        buf
                    }
                }
            } else {
                d
            };
            let _ = p.addcmul_(&update, &neg_lr);
        }
    }

    /// SGD with momentum once every buffer exists and every parameter has a
    /// gradient: one multi-tensor update (see csrc/torch_extras.cpp).
    fn try_sgd_foreach(&mut self, lr: f64) -> anyhow::Result<bool> {
        let s = &self.spec;
        if s.kind != OptimizerKind::Sgd
            || s.momentum == 0.0
            || self.first.iter().any(Option::is_none)
            || self.params.iter().any(|(_, p)| !p.grad().defined())
        {
            return Ok(false);
        }
        let mut params = raw_pointers(self.params.iter_mut().map(|(_, p)| p));
        let mut bufs = raw_pointers(
            self.first
                .iter_mut()
                .map(|b| b.as_mut().expect("checked above")),
        );
        // SAFETY: both arrays hold `n` live `torch::Tensor*` owned by this
        // optimiser for the call's duration; the result is checked at once.
        unsafe {
            let result = nave_sgd_foreach(
                params.as_mut_ptr(),
                bufs.as_mut_ptr(),
                params.len() as i64,
                lr,
                s.momentum,
                s.weight_decay,
            );
            check(result, "the SGD step")?;
        }
        Ok(true)
    }

    /// The buffers by name (`<param>.m1`, `<param>.m2`) for the resume state.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            if let Some(t) = &self.first[i] {
                out.push((format!("{name}.m1"), t.shallow_clone()));
            }
            if let Some(t) = &self.second[i] {
                out.push((format!("{name}.m2"), t.shallow_clone()));
            }
        }
        out
    }

    /// Restores the buffers saved by [`Optimizer::state`] from `source` (a
    /// file, named in errors). A buffer whose shape or type is not its
    /// parameter's is an error: the fused update would fail inside libtorch.
    pub fn load_state(
        &mut self,
        tensors: HashMap<String, Tensor>,
        step: i64,
        source: &std::path::Path,
    ) -> anyhow::Result<()> {
        let fetch = |key: String, p: &Tensor| -> anyhow::Result<Option<Tensor>> {
            let Some(t) = tensors.get(&key) else {
                return Ok(None);
            };
            if t.size() != p.size() || t.kind() != p.kind() {
                anyhow::bail!(
                    "{}: optimiser buffer {key} is {:?} {:?}, its parameter {:?} {:?}; the file belongs to another run or is damaged",
                    source.display(),
                    t.kind(),
                    t.size(),
                    p.kind(),
                    p.size()
                );
            }
            // In the parameter's memory layout (channels-last or not): the
            // fused kernels take their fast path only when the strides agree.
            let mut buffer = p.zeros_like();
            tch::no_grad(|| buffer.copy_(t));
            Ok(Some(buffer))
        };
        let mut first = Vec::with_capacity(self.params.len());
        let mut second = Vec::with_capacity(self.params.len());
        for (name, p) in &self.params {
            first.push(fetch(format!("{name}.m1"), p)?);
            second.push(fetch(format!("{name}.m2"), p)?);
        }
        self.step = step;
        self.first = first;
        self.second = second;
        Ok(())
    }
}

/// Learning rate at `step` (0-based) of `total` steps, `per_epoch` steps an epoch.
pub fn learning_rate(
    base: f64,
    schedule: &ScheduleSpec,
    step: usize,
    per_epoch: usize,
    total: usize,
) -> f64 {
    let warmup = (schedule.warmup_epochs * per_epoch as f64).round() as usize;
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    match schedule.kind {
        ScheduleKind::Constant => base,
        ScheduleKind::Cosine => {
            let span = total.saturating_sub(warmup).max(1) as f64;
            let t = (step - warmup) as f64 / span;
            0.5 * base * (1.0 + (std::f64::consts::PI * t).cos())
        }
        ScheduleKind::Step => {
            base * schedule
                .gamma
                .powi((step / per_epoch.max(1) / schedule.step_size.max(1)) as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn sgd_matches_pytorch_by_hand() {
        // Two steps of torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01) on p = [1, -2], loss sum(p^2):
        //   p = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        //   o = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
        //   for _ in range(2): o.zero_grad(); (p**2).sum().backward(); o.step()
        //   p.tolist() == [0.457501, -0.915002]
        let p = Tensor::from_slice(&[1.0f64, -2.0]).set_requires_grad(true);
        let spec = OptimizerSpec {
            kind: OptimizerKind::Sgd,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
            betas: [0.9, 0.999],
        };
        let mut opt = Optimizer::new(spec, vec![("p".into(), p.shallow_clone())]);
        for _ in 0..2 {
            opt.zero_grad().unwrap();
            p.square().sum(Kind::Double).backward();
            opt.step(0.1).unwrap();
        }
        let got: Vec<f64> = Vec::try_from(&p.detach()).unwrap();
        assert!(
            (got[0] - 0.457501).abs() < 1e-9 && (got[1] + 0.915002).abs() < 1e-9,
            "{got:?}"
        );
    }

    #[test]
    fn adamw_first_step_moves_by_lr() {
        // Adam's first step is lr * sign(g) (up to eps), after decoupled decay.
        let p = Tensor::from_slice(&[1.0f64, -2.0]).set_requires_grad(true);
        let spec = OptimizerSpec {
            kind: OptimizerKind::Adamw,
            lr: 0.01,
            momentum: 0.0,
            weight_decay: 0.1,
            betas: [0.9, 0.999],
        };
        let mut opt = Optimizer::new(spec, vec![("p".into(), p.shallow_clone())]);
        p.square().sum(Kind::Double).backward();
        opt.step(0.01).unwrap();
        let got: Vec<f64> = Vec::try_from(&p.detach()).unwrap();
        assert!((got[0] - (1.0 * 0.999 - 0.01)).abs() < 1e-6, "{got:?}");
        assert!((got[1] - (-2.0 * 0.999 + 0.01)).abs() < 1e-6, "{got:?}");
        assert_eq!(opt.state().len(), 2);
        let _ = Device::Cpu;
    }

    #[test]
    fn schedules() {
        let cos = ScheduleSpec {
            kind: ScheduleKind::Cosine,
            warmup_epochs: 1.0,
            step_size: 1,
            gamma: 0.1,
        };
        assert!((learning_rate(1.0, &cos, 0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((learning_rate(1.0, &cos, 10, 10, 100) - 1.0).abs() < 1e-12);
        assert!(learning_rate(1.0, &cos, 99, 10, 100) < 0.01);
        let step = ScheduleSpec {
            kind: ScheduleKind::Step,
            warmup_epochs: 0.0,
            step_size: 2,
            gamma: 0.5,
        };
        assert_eq!(learning_rate(1.0, &step, 39, 10, 100), 0.5);
    }

    // The optimizer on a channels-last model: here rather than in `models`,
    // which comes before `train` in the import order.
    use crate::models::memory_format::to_channels_last;
    use crate::models::{Arch, Model, ModelSpec};

    fn narrow_resnet18() -> ModelSpec {
        ModelSpec::plain(Arch::Resnet18, Some(8))
    }

    /// The same model, NCHW and channels-last: the same logits and the same
    /// gradients (up to rounding), and a state dict that saves (safetensors
    /// refuses non-contiguous tensors).
    const BATCH: i64 = 16;
    #[test]
    fn a_channels_last_resnet_computes_what_the_nchw_one_does() {
        tch::manual_seed(3);
        let nchw = Model::new(&narrow_resnet18(), 2, 32, Device::Cpu).unwrap();
        let nhwc = Model::new(&narrow_resnet18(), 2, 32, Device::Cpu).unwrap();
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
            Optimizer::new(
                OptimizerSpec {
                    kind: OptimizerKind::Sgd,
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
