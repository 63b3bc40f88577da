//! Messages to the user on stderr, at the verbosity chosen with -v/-q.
//! Results go to stdout so that they can be piped.
use std::sync::atomic::{AtomicI8, Ordering};

static VERBOSITY: AtomicI8 = AtomicI8::new(0);

/// -1 quiet, 0 normal, 1 verbose, 2 debug.
pub fn set_verbosity(level: i8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

pub fn verbosity() -> i8 {
    VERBOSITY.load(Ordering::Relaxed)
}

/// Set (to anything) in the environment of a worker process: its progress
/// bars would garble its siblings' on the shared terminal.
pub const NO_PROGRESS_ENV: &str = "NAVE_LAB_NO_PROGRESS";

/// Progress bars are shown unless -q was given or [`NO_PROGRESS_ENV`] is set.
pub fn show_progress() -> bool {
    verbosity() >= 0 && std::env::var_os(NO_PROGRESS_ENV).is_none()
}

/// A status line (hidden with -q).
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => {
        if $crate::ui::verbosity() >= 0 { eprintln!($($arg)*); }
    };
}

/// A detail line (shown with -v).
#[macro_export]
macro_rules! detail {
    ($($arg:tt)*) => {
        if $crate::ui::verbosity() >= 1 { eprintln!($($arg)*); }
    };
}

/// A warning (always shown).
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {
        eprintln!("warning: {}", format!($($arg)*));
    };
}

/// A progress bar on stderr, hidden with -q or when stderr is not a terminal
/// (indicatif hides itself then).
/// A progress bar in bytes (a download); a spinner with a byte count when
/// the size is unknown.
pub fn byte_bar(len: Option<u64>, message: &str) -> indicatif::ProgressBar {
    if !show_progress() {
        return indicatif::ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(l) => (
            indicatif::ProgressBar::new(l),
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "{msg} {spinner} {bytes} {bytes_per_sec}",
        ),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .expect("valid progress template")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

pub fn progress_bar(len: u64, message: &str) -> indicatif::ProgressBar {
    if !show_progress() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {prefix}",
        )
        .expect("valid progress template")
        .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

/// Parses a count that must be at least 1 (a number of clusters, probes,
/// images...): 0 is refused here, naming the value, rather than failing later.
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number ({e})")),
    }
}
