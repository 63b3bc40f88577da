//! bfloat16 autocast on CUDA (csrc/torch_extras.cpp): matrix products and
//! convolutions run in bf16, reductions and the loss stay in float32.
use crate::cxx::{check, nave_autocast_enter_bf16_cuda, nave_autocast_exit_cuda};

/// Runs `f` with bf16 autocast when `enabled` (only ever on a CUDA device).
pub fn with_bf16<T>(enabled: bool, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    if !enabled {
        return Ok(f());
    }
    // SAFETY: process-wide libtorch switches; they take no pointers, and each
    // result is checked at once. Enter and exit are paired by this function.
    unsafe { check(nave_autocast_enter_bf16_cuda(), "entering bf16 autocast")? };
    let out = f();
    unsafe { check(nave_autocast_exit_cuda(), "leaving bf16 autocast")? };
    Ok(out)
}
