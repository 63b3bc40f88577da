//! The C++ helpers of csrc/torch_extras.cpp. Each returns null or the message
//! of the C++ exception it caught (out of memory, a shape mismatch), which
//! becomes an error here instead of unwinding through `extern "C"`.
use std::ffi::{c_char, c_void, CStr};

extern "C" {
    pub fn nave_autocast_enter_bf16_cuda() -> *const c_char;
    pub fn nave_autocast_exit_cuda() -> *const c_char;
    pub fn nave_clear_grad(tensor: *mut c_void) -> *const c_char;
    pub fn nave_sgd_foreach(
        params: *mut *mut c_void,
        bufs: *mut *mut c_void,
        n: i64,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    ) -> *const c_char;
    #[allow(clippy::too_many_arguments)]
    pub fn nave_adamw_foreach(
        params: *mut *mut c_void,
        exp_avgs: *mut *mut c_void,
        exp_avg_sqs: *mut *mut c_void,
        n: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        step: i64,
    ) -> *const c_char;
}

/// `Ok` for a null result, else an error with libtorch's message.
///
/// # Safety
/// `result` is null or the message pointer a csrc function just returned
/// on this thread (valid until the thread's next call).
pub unsafe fn check(result: *const c_char, what: &str) -> anyhow::Result<()> {
    if result.is_null() {
        return Ok(());
    }
    let message = CStr::from_ptr(result).to_string_lossy().into_owned();
    anyhow::bail!("{what} failed in libtorch: {}", message.trim())
}
