//! Progress bars for the CLI's long transfers (add, cat, car export and import). Shown on stderr
//! only when a person is watching — stdout is a terminal and the transfer is large — so scripts,
//! pipes and `--json` output never see them.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Transfers smaller than this finish before a bar would be worth drawing.
pub const MIN_BYTES: u64 = 4 * 1024 * 1024;

/// Whether a transfer of `size` bytes (unknown: `None`) gets a bar, given whether stdout is a
/// terminal and whether the transfer's own data goes to stdout.
pub fn wanted(stdout_is_terminal: bool, data_on_stdout: bool, size: Option<u64>) -> bool {
    stdout_is_terminal && !data_on_stdout && size.is_none_or(|s| s >= MIN_BYTES)
}

/// A bar for `size` bytes (a byte counter when the size is unknown), or a hidden one when
/// [`wanted`] says no.
pub fn bar(label: &str, size: Option<u64>, data_on_stdout: bool) -> ProgressBar {
    if !wanted(std::io::stdout().is_terminal(), data_on_stdout, size) {
        return ProgressBar::hidden();
    }
    let (bar, template) = match size {
        Some(len) => (
            ProgressBar::new(len),
            "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg} {spinner} {binary_bytes} {binary_bytes_per_sec}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.set_message(label.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_for_people_and_large_transfers() {
        assert!(wanted(true, false, Some(MIN_BYTES)));
        assert!(wanted(true, false, None));
        assert!(!wanted(true, false, Some(MIN_BYTES - 1)));
        assert!(!wanted(false, false, Some(1 << 30)), "piped: no bar");
        assert!(
            !wanted(true, true, Some(1 << 30)),
            "data on the terminal: no bar"
        );
    }

    #[test]
    fn a_hidden_bar_counts_but_draws_nothing() {
        let bar = bar("test", Some(10), true);
        assert!(bar.is_hidden());
        bar.inc(5);
        assert_eq!(bar.position(), 5);
    }
}
