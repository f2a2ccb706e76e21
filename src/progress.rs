//! Progress bars for people at a terminal, shared by the commands of `cli` and `sim`.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting `total` items of `what`, with rate and time left.
pub fn counter(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template = format!(
        "{{spinner}} {what} [{{bar:30}}] {{human_pos}}/{{human_len}} ({{per_sec}}, eta {{eta}})"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
