//! bfloat16 autocast on CUDA (csrc/torch_extras.cpp): matrix products and
//! convolutions run in bf16, reductions and the loss stay in float32.
extern "C" {
    fn nave_autocast_enter_bf16_cuda();
    fn nave_autocast_exit_cuda();
}

/// Runs `f` with bf16 autocast when `enabled` (only ever on a CUDA device).
pub fn with_bf16<T>(enabled: bool, f: impl FnOnce() -> T) -> T {
    if !enabled {
        return f();
    }
    // SAFETY: process-wide libtorch switches; they take no pointers. Enter and
    // exit are paired by this function.
    unsafe { nave_autocast_enter_bf16_cuda() };
    let out = f();
    unsafe { nave_autocast_exit_cuda() };
    out
}
