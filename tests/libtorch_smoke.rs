//! libtorch works from Rust: a tensor op and one optimiser step on the CPU.
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

#[test]
fn tensor_op_on_cpu() {
    let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
    let b = a.matmul(&a); // [[7, 10], [15, 22]]
    let got: Vec<f32> = b.flatten(0, -1).try_into().unwrap();
    assert_eq!(got, vec![7.0, 10.0, 15.0, 22.0]);
}

#[test]
fn one_sgd_step_lowers_the_loss() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root() / "fc", 3, 1, Default::default());
    let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
    let x = Tensor::from_slice(&[1.0f32, 0.0, -1.0, 0.5, 2.0, 1.0]).view([2, 3]);
    let y = Tensor::from_slice(&[1.0f32, -1.0]).view([2, 1]);
    let loss = |m: &nn::Linear| (m.forward(&x) - &y).square().mean(Kind::Float);
    let before = loss(&linear).double_value(&[]);
    let weight_before = linear.ws.copy();
    opt.backward_step(&loss(&linear));
    let after = loss(&linear).double_value(&[]);
    assert!(after < before, "loss {before} -> {after}");
    // The step moved the weights by lr * gradient, not by nothing.
    assert!(
        (&linear.ws - weight_before)
            .abs()
            .sum(Kind::Float)
            .double_value(&[])
            > 1e-4
    );
}
