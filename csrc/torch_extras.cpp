// Mixed precision for CUDA, through libtorch's C++ API: torch-sys can switch
// autocast on and off but not choose its dtype (CUDA's default is float16),
// and the switch it calls is deprecated. nave-lab trains in bfloat16, which
// needs no loss scaling.
#include <ATen/autocast_mode.h>

extern "C" void nave_autocast_enter_bf16_cuda() {
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::increment_nesting();
}

extern "C" void nave_autocast_exit_cuda() {
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
  at::autocast::set_autocast_enabled(at::kCUDA, false);
}

// Drops a tensor's gradient (PyTorch's zero_grad(set_to_none=True)): the next
// backward then stores its gradient instead of adding it to zeros, which saves
// two passes over every parameter's memory per step. `tensor` is the
// `torch::Tensor*` behind a tch::Tensor.
#include <torch/torch.h>
extern "C" void nave_clear_grad(void* tensor) {
  static_cast<at::Tensor*>(tensor)->mutable_grad() = at::Tensor();
}
