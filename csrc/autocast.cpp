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
