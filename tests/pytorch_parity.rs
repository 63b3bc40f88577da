//! nave-lab's models against torchvision's and timm's, through their weights:
//! our checkpoints load into PyTorch with `load_state_dict(strict=True)` and
//! give the same logits, and PyTorch's weights load into nave-lab and give the
//! same logits. The PyTorch side is tests/python/parity.py, run live with the
//! reference stack.
mod common;

use common::{run_reference, scratch};
use nave_lab::models::{Arch, Model, ModelSpec};
use tch::{Device, Kind, Tensor};

fn logits_of(path: &std::path::Path) -> Tensor {
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "logits")
        .unwrap()
        .1
}

fn check(arch: Arch, num_classes: i64, image_size: i64) {
    check_variant(arch, false, num_classes, image_size)
}

fn check_variant(arch: Arch, layer_scale: bool, num_classes: i64, image_size: i64) {
    check_with(arch, layer_scale, 0, num_classes, image_size)
}

/// Our weights in torchvision's / timm's model and theirs in ours, same logits.
/// `registers`: a ViT with register tokens, checked against timm's register
/// model (`reg_tokens`, patch-only position embeddings).
fn check_with(arch: Arch, layer_scale: bool, registers: i64, num_classes: i64, image_size: i64) {
    let mut name = arch.to_string();
    if layer_scale {
        name += "_ls";
    }
    if registers > 0 {
        name += &format!("_reg{registers}");
    }
    let dir = scratch(&format!("parity_{name}"));
    tch::manual_seed(1);
    let spec = ModelSpec {
        arch,
        width: None,
        init: None,
        init_sha256: None,
        registers,
        layer_scale,
    };
    let ours = Model::new(&spec, num_classes, image_size, Device::Cpu).unwrap();
    // Non-trivial BatchNorm statistics in our weights too.
    tch::no_grad(|| {
        for (name, mut t) in ours.vs.variables() {
            if name.ends_with("running_var") {
                let _ = t.uniform_(0.5, 1.5);
            } else if name.ends_with("running_mean") {
                let _ = t.uniform_(-0.1, 0.1);
            } else if name.ends_with(".gamma") {
                let _ = t.uniform_(0.2, 0.8);
            }
        }
    });
    ours.save(&dir.join("ours.safetensors"), 0).unwrap();
    let x = Tensor::randn([2, 3, image_size, image_size], (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(&[("x", &x)], dir.join("input.safetensors")).unwrap();

    run_reference(
        "parity.py",
        &[
            &name,
            &num_classes.to_string(),
            &image_size.to_string(),
            dir.to_str().unwrap(),
        ],
    );

    let mine = tch::no_grad(|| ours.forward_t(&x, false));
    let theirs = logits_of(&dir.join("theirs_on_ours.safetensors"));
    let diff = (&mine - &theirs).abs().max().double_value(&[]);
    assert!(
        diff < 1e-4,
        "{arch}: our weights give other logits in PyTorch (max diff {diff})"
    );

    let mut loaded = Model::new(&spec, num_classes, image_size, Device::Cpu).unwrap();
    loaded
        .load(&dir.join("reference.safetensors"), true)
        .unwrap();
    let mine = tch::no_grad(|| loaded.forward_t(&x, false));
    let reference = logits_of(&dir.join("reference_logits.safetensors"));
    let diff = (&mine - &reference).abs().max().double_value(&[]);
    assert!(
        diff < 1e-4,
        "{arch}: PyTorch's weights give other logits in nave-lab (max diff {diff})"
    );
}

#[test]
fn resnet18_matches_torchvision() {
    check(Arch::Resnet18, 10, 64);
}

#[test]
fn resnet50_matches_torchvision() {
    check(Arch::Resnet50, 2, 64);
}

#[test]
fn vit_s16_matches_timm() {
    check(Arch::VitS16, 5, 64);
}

#[test]
fn vit_s14_matches_timm() {
    check(Arch::VitS14, 3, 56);
}

#[test]
fn vit_s14_with_layer_scale_matches_timm() {
    check_variant(Arch::VitS14, true, 4, 56);
}

#[test]
fn vit_b16_matches_timm() {
    check(Arch::VitB16, 4, 32);
}

#[test]
fn vit_b14_with_registers_round_trips_through_timm() {
    check_with(Arch::VitB14, false, 4, 3, 28);
}

#[test]
fn vit_s16_with_registers_round_trips_through_timm() {
    check_with(Arch::VitS16, false, 2, 5, 64);
}

#[test]
fn converted_pth_checkpoints_load_and_match() {
    // scripts/convert_pth.py unwraps {"state_dict": ...} and strips "module.".
    let dir = scratch("convert_pth");
    run_reference("make_pth.py", &[dir.to_str().unwrap()]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/convert_pth.py");
    let out = std::process::Command::new(common::reference_python())
        .args([
            script,
            dir.join("ckpt.pth").to_str().unwrap(),
            dir.join("r18.safetensors").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    common::assert_ok(&out);
    let model = nave_lab::models::from_weights(
        Arch::Resnet18,
        &dir.join("r18.safetensors"),
        64,
        Device::Cpu,
    )
    .unwrap();
    let x = Tensor::read_safetensors(dir.join("input.safetensors"))
        .unwrap()
        .remove(0)
        .1;
    let mine = tch::no_grad(|| model.forward_t(&x, false));
    assert_eq!(mine.size(), vec![1, 7]);
    let diff = (&mine - logits_of(&dir.join("logits.safetensors")))
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff < 1e-4, "max diff {diff}");
}

#[test]
fn pth_checkpoints_load_in_rust_without_python() {
    // torch.save's files, read in Rust: plain (an OrderedDict with _metadata), wrapped in
    // {"state_dict": {"module.*"}}, and DINO-style {"teacher": {"backbone.*"}}.
    let dir = scratch("read_pth");
    run_reference("make_pth.py", &[dir.to_str().unwrap()]);
    let x = Tensor::read_safetensors(dir.join("input.safetensors"))
        .unwrap()
        .remove(0)
        .1;
    let expected = logits_of(&dir.join("logits.safetensors"));
    for file in ["ckpt.pth", "teacher.pth", "plain.pth"] {
        let model =
            nave_lab::models::from_weights(Arch::Resnet18, &dir.join(file), 64, Device::Cpu)
                .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        let mine = tch::no_grad(|| model.forward_t(&x, false));
        let diff = (&mine - &expected).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{file}: max diff {diff}");
    }
    for (file, arch, logits) in [
        ("r50.pth", Arch::Resnet50, "r50_logits.safetensors"),
        ("vits.pth", Arch::VitS16, "vits_logits.safetensors"),
    ] {
        let model = nave_lab::models::from_weights(arch, &dir.join(file), 64, Device::Cpu)
            .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        let mine = tch::no_grad(|| model.forward_t(&x, false));
        let diff = (&mine - logits_of(&dir.join(logits)))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-4, "{file}: max diff {diff}");
    }
    // The command line takes them too.
    let mut picture = image::RgbImage::new(64, 64);
    for (x, y, p) in picture.enumerate_pixels_mut() {
        *p = image::Rgb([(x * 4) as u8, (y * 4) as u8, 128]);
    }
    picture.save(dir.join("image.png")).unwrap();
    let out = common::nave_lab()
        .args(["-q", "explain", "--arch", "resnet18", "--weights"])
        .arg(dir.join("teacher.pth"))
        .arg("--image")
        .arg(dir.join("image.png"))
        .args(["-k", "3", "--image-size", "64", "--out"])
        .arg(dir.join("explained.png"))
        .output()
        .unwrap();
    common::assert_ok(&out);
    assert!(dir.join("explained.png").is_file());
    // A checkpoint without weights, and a file that is not one: named errors.
    let err = format!(
        "{:#}",
        nave_lab::models::read_weights(&dir.join("empty.pth")).unwrap_err()
    );
    assert!(
        err.contains("empty.pth") && err.contains("no state dict"),
        "{err}"
    );
    std::fs::write(dir.join("garbage.pth"), b"not a checkpoint").unwrap();
    let err = format!(
        "{:#}",
        nave_lab::models::read_weights(&dir.join("garbage.pth")).unwrap_err()
    );
    assert!(
        err.contains("garbage.pth") && err.contains("not a zip archive"),
        "{err}"
    );
}

/// Our SGD and AdamW against torch.optim's (foreach=True) over 4 steps with the
/// same parameters and gradients (tests/python/optimizers.py).
#[test]
fn optimizers_match_pytorch() {
    use nave_lab::config::{OptimizerKind, OptimizerSpec};
    use nave_lab::train::optim::Optimizer;
    for (name, kind, lr) in [
        ("sgd", OptimizerKind::Sgd, 0.1),
        ("adamw", OptimizerKind::Adamw, 0.01),
    ] {
        let expected: Vec<Vec<f64>> =
            serde_json::from_str(&run_reference("optimizers.py", &[name])).unwrap();
        let shapes: [&[i64]; 2] = [&[3, 4], &[5]];
        let params: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(j, s)| {
                let n: i64 = s.iter().product();
                let v: Vec<f64> = (0..n).map(|i| (0.7 * i as f64 + j as f64).sin()).collect();
                Tensor::from_slice(&v).view(*s).set_requires_grad(true)
            })
            .collect();
        let spec = OptimizerSpec {
            kind,
            lr,
            momentum: 0.9,
            weight_decay: if kind == OptimizerKind::Sgd {
                0.01
            } else {
                0.05
            },
            betas: [0.9, 0.99],
        };
        let named = params
            .iter()
            .enumerate()
            .map(|(j, p)| (format!("p{j}"), p.shallow_clone()))
            .collect();
        let mut opt = Optimizer::new(spec, named);
        for t in 1..=4 {
            opt.zero_grad().unwrap();
            for (j, p) in params.iter().enumerate() {
                let n = p.numel() as i64;
                let g: Vec<f64> = (0..n)
                    .map(|i| (1.3 * i as f64 * t as f64 + j as f64).cos())
                    .collect();
                // d/dp sum(p * g) = g: the gradient arrives through backward, as in training.
                (p * Tensor::from_slice(&g).view(p.size().as_slice()))
                    .sum(Kind::Double)
                    .backward();
            }
            opt.step(lr).unwrap();
        }
        for (j, p) in params.iter().enumerate() {
            let got: Vec<f64> = Vec::try_from(p.detach().flatten(0, -1)).unwrap();
            for (a, b) in got.iter().zip(&expected[j]) {
                assert!((a - b).abs() < 1e-12, "{name} p{j}: {a} vs {b}");
            }
        }
    }
    let _ = Device::Cpu;
}
