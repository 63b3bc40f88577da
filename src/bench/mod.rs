//! Speed measurements, printed as JSON by `nave-lab bench` (never asserted
//! in tests): the loader, k-means engines, training steps; and what
//! `revise` did over a zoo (`revise`). The detector's bench over a zoo of
//! runs is `audit::zoo_bench`.
use tch::Device;

pub mod data;
pub mod kmeans;
pub mod revise;
pub mod train;

/// Waits for the device's queued work, so that a timer measures it.
pub(crate) fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The process's peak resident memory (VmHWM), Linux only.
pub(crate) fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

pub(crate) fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
