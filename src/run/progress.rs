//! Progress on stderr: an indicatif bar with rate and ETA when stderr is a terminal, plain log
//! lines (at most one every few seconds, plus every evaluation) otherwise, or nothing.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar if stderr is a terminal, else log lines.
    Auto,
    Bar,
    Log,
    Quiet,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    log: bool,
    total: u64,
    last_line: Option<Instant>,
}

const LOG_INTERVAL: Duration = Duration::from_secs(5);

impl Progress {
    pub fn new(mode: ProgressMode, total: u64, done: u64) -> Self {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Log,
            m => m,
        };
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{elapsed_precise} [{bar:25.cyan/blue}] {pos}/{len} it · {per_sec} · ETA {eta} · {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_position(done);
            bar
        });
        Progress { bar, log: mode == ProgressMode::Log, total, last_line: None }
    }

    /// One iteration done (`iteration` counted from the run's start).
    pub fn tick(&mut self, iteration: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(iteration);
        }
    }

    /// A training report: `short` on the bar, or `text` as a line if enough time has passed.
    pub fn report(&mut self, iteration: u64, text: &str, short: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(short.to_string());
        } else if self.log && self.last_line.is_none_or(|t| t.elapsed() >= LOG_INTERVAL) {
            eprintln!("[{iteration}/{}] {text}", self.total);
            self.last_line = Some(Instant::now());
        }
    }

    /// A line that is always shown (evaluations, checkpoints, the end).
    pub fn line(&mut self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.println(text);
        } else if self.log {
            eprintln!("{text}");
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
