// libtorch's C API (torch-sys) can switch autocast on and off but not choose
// its dtype, and CUDA autocast defaults to float16. nave-lab trains in
// bfloat16, which needs no loss scaling.
#include <ATen/autocast_mode.h>

extern "C" void nave_autocast_use_bf16_on_cuda() {
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
}
