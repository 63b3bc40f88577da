// Mixed precision for CUDA, through libtorch's C++ API: torch-sys can switch
// autocast on and off but not choose its dtype (CUDA's default is float16),
// and the switch it calls is deprecated. nave-lab trains in bfloat16, which
// needs no loss scaling.
#include <ATen/autocast_mode.h>
#include <cmath>
#include <string>
#include <vector>

// Every function returns nullptr, or the message of the C++ exception it
// caught (CUDA out of memory, a shape mismatch): an exception must not cross
// into Rust, where unwinding through extern "C" is undefined behaviour. The
// message lives until the thread's next call.
static thread_local std::string nave_last_error;

#define NAVE_CATCH                                            \
  catch (const c10::Error& e) {                               \
    nave_last_error = e.what_without_backtrace();             \
    return nave_last_error.c_str();                           \
  }                                                           \
  catch (const std::exception& e) {                           \
    nave_last_error = e.what();                               \
    return nave_last_error.c_str();                           \
  }                                                           \
  catch (...) {                                               \
    nave_last_error = "an unknown C++ exception";             \
    return nave_last_error.c_str();                           \
  }

extern "C" const char* nave_autocast_enter_bf16_cuda() {
  try {
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::increment_nesting();
    return nullptr;
  }
  NAVE_CATCH
}

extern "C" const char* nave_autocast_exit_cuda() {
  try {
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    return nullptr;
  }
  NAVE_CATCH
}

// Drops a tensor's gradient (PyTorch's zero_grad(set_to_none=True)): the next
// backward then stores its gradient instead of adding it to zeros, which saves
// two passes over every parameter's memory per step. `tensor` is the
// `torch::Tensor*` behind a tch::Tensor.
#include <torch/torch.h>
extern "C" const char* nave_clear_grad(void* tensor) {
  try {
    static_cast<at::Tensor*>(tensor)->mutable_grad() = at::Tensor();
    return nullptr;
  }
  NAVE_CATCH
}

// One SGD-with-momentum step for many parameters with libtorch's multi-tensor
// (foreach) kernels, as torch.optim.SGD(foreach=True) does: on CUDA a few
// fused launches instead of several per parameter. `params` and `bufs` are
// `torch::Tensor*` arrays of length n; every parameter has a gradient and a
// momentum buffer (the first step, which creates the buffers, is done per
// parameter by the caller).
//   g += wd * p;  buf = momentum * buf + g;  p -= lr * buf
extern "C" const char* nave_sgd_foreach(void** params, void** bufs, int64_t n, double lr, double momentum, double weight_decay) try {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> ps, gs, bs;
  ps.reserve(n);
  gs.reserve(n);
  bs.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& p = *static_cast<at::Tensor*>(params[i]);
    ps.push_back(p);
    gs.push_back(p.grad());
    bs.push_back(*static_cast<at::Tensor*>(bufs[i]));
  }
  if (weight_decay != 0.0) {
    at::_foreach_add_(gs, ps, weight_decay);
  }
  at::_foreach_mul_(bs, momentum);
  at::_foreach_add_(bs, gs);
  at::_foreach_add_(ps, bs, -lr);
  return nullptr;
}
NAVE_CATCH

// One AdamW step for many parameters with the multi-tensor kernels, in the
// order and form of torch.optim.AdamW(foreach=True), so the numbers match it.
// `params`, `exp_avgs` and `exp_avg_sqs` are `torch::Tensor*` arrays of length
// n; parameters without a gradient this step are left alone (no decay either),
// as PyTorch does. `step` counts from 1.
//   p *= 1 - lr*wd;  m = lerp(m, g, 1-b1);  v = b2*v + (1-b2)*g*g
//   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
extern "C" const char* nave_adamw_foreach(void** params, void** exp_avgs, void** exp_avg_sqs, int64_t n,
                                          double lr, double beta1, double beta2, double eps,
                                          double weight_decay, int64_t step) try {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> ps, gs, ms, vs;
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& p = *static_cast<at::Tensor*>(params[i]);
    if (!p.grad().defined()) continue;
    ps.push_back(p);
    gs.push_back(p.grad());
    ms.push_back(*static_cast<at::Tensor*>(exp_avgs[i]));
    vs.push_back(*static_cast<at::Tensor*>(exp_avg_sqs[i]));
  }
  if (ps.empty()) return nullptr;
  if (weight_decay != 0.0) {
    at::_foreach_mul_(ps, 1.0 - lr * weight_decay);
  }
  at::_foreach_lerp_(ms, gs, 1.0 - beta1);
  at::_foreach_mul_(vs, beta2);
  at::_foreach_addcmul_(vs, gs, gs, 1.0 - beta2);
  const double bias1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias2_sqrt = std::sqrt(1.0 - std::pow(beta2, static_cast<double>(step)));
  std::vector<at::Tensor> denom = at::_foreach_sqrt(vs);
  at::_foreach_div_(denom, bias2_sqrt);
  at::_foreach_add_(denom, eps);
  at::_foreach_addcdiv_(ps, ms, denom, -lr / bias1);
  return nullptr;
}
NAVE_CATCH

