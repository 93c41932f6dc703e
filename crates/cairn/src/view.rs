//! The live view of `cairn run`: on a terminal, one line per step with its
//! status, elapsed time, a progress bar and the latest message; elsewhere,
//! plain lines, one per status change.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use cairn_core::{RunStatus, TaskStatus};
use cairn_engine::RunEvent;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub enum View {
    Bars(Bars),
    Lines(Lines),
    Silent,
}

impl View {
    /// Bars on a terminal, plain lines otherwise; with `json`, stdout is kept
    /// for the final JSON, so lines go to stderr.
    pub fn new(names: &[String], json: bool, quiet: bool) -> View {
        if quiet {
            View::Silent
        } else if !json && std::io::stderr().is_terminal() {
            View::Bars(Bars::new(names))
        } else {
            View::Lines(Lines { names: names.to_vec(), last_progress: vec![None; names.len()] })
        }
    }

    pub fn handle(&mut self, e: &RunEvent) {
        match self {
            View::Bars(b) => b.handle(e),
            View::Lines(l) => l.handle(e),
            View::Silent => {}
        }
    }

    pub fn finish(&mut self) {
        if let View::Bars(b) = self {
            for bar in &b.bars {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        }
    }
}

pub struct Bars {
    /// Owns the terminal area the bars draw in.
    _multi: MultiProgress,
    bars: Vec<ProgressBar>,
    names: Vec<String>,
    width: usize,
    statuses: Vec<TaskStatus>,
}

impl Bars {
    fn new(names: &[String]) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(4).min(32);
        let style =
            ProgressStyle::with_template("{prefix} {elapsed:>4} {bar:24.cyan/blue} {pos:>3}% {wide_msg}")
                .expect("static template")
                .progress_chars("█▉▊▋▌▍▎▏ ");
        let bars = names
            .iter()
            .map(|name| {
                let bar = multi.add(ProgressBar::new(100).with_style(style.clone()));
                bar.set_prefix(prefix(name, width, TaskStatus::Submitted));
                bar
            })
            .collect();
        Bars {
            _multi: multi,
            bars,
            names: names.to_vec(),
            width,
            statuses: vec![TaskStatus::Submitted; names.len()],
        }
    }

    fn handle(&mut self, e: &RunEvent) {
        match e {
            RunEvent::Task { index, status, reason, .. } => {
                let bar = &self.bars[*index];
                self.statuses[*index] = *status;
                bar.set_prefix(prefix(&self.names[*index], self.width, *status));
                match status {
                    TaskStatus::Running => {
                        bar.reset_elapsed();
                        bar.set_position(0);
                        bar.enable_steady_tick(Duration::from_millis(250));
                        bar.set_message("");
                    }
                    TaskStatus::Completed => {
                        bar.set_position(100);
                        bar.finish_with_message("");
                    }
                    // `abandon` keeps the bar where the step stopped; `finish` would fill it.
                    s if s.is_terminal() => {
                        bar.abandon_with_message(reason.clone());
                    }
                    TaskStatus::Pending if reason.contains("retry") => {
                        bar.disable_steady_tick();
                        bar.set_message(reason.clone());
                    }
                    _ => {}
                }
            }
            RunEvent::Progress { index, progress, .. } => {
                let bar = &self.bars[*index];
                bar.set_position(progress.percent.round() as u64);
                bar.set_message(progress.message.clone().unwrap_or_default());
            }
            RunEvent::Run { .. } => {}
        }
    }
}

fn prefix(name: &str, width: usize, status: TaskStatus) -> String {
    let icon = match status {
        TaskStatus::Completed => "✔",
        TaskStatus::Failed => "✘",
        TaskStatus::Canceled | TaskStatus::Abandoned => "⊘",
        TaskStatus::Skipped => "↷",
        TaskStatus::Running => "▶",
        _ => "·",
    };
    let name: String = name.chars().take(width).collect();
    format!("{icon} {name:<width$} {:<9}", status.as_str())
}

pub struct Lines {
    names: Vec<String>,
    last_progress: Vec<Option<Instant>>,
}

impl Lines {
    fn handle(&mut self, e: &RunEvent) {
        let mut err = std::io::stderr().lock();
        let _ = match e {
            RunEvent::Task { index, status, at, reason, .. } => {
                let time = &at.to_rfc3339()[11..23];
                writeln!(err, "{time} {:<20} {:<9} {reason}", self.names[*index], status.as_str())
            }
            RunEvent::Progress { index, progress, .. } => {
                // At most one progress line per step per second keeps logs readable.
                let last = &mut self.last_progress[*index];
                if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) && progress.percent < 100.0 {
                    return;
                }
                *last = Some(Instant::now());
                writeln!(
                    err,
                    "{:>12} {:<20} {:>5.1}% {}",
                    "",
                    self.names[*index],
                    progress.percent,
                    progress.message.as_deref().unwrap_or("")
                )
            }
            RunEvent::Run { status, at, .. } if status.is_terminal() || *status == RunStatus::Running => {
                writeln!(err, "{} run {}", &at.to_rfc3339()[11..23], status.as_str())
            }
            RunEvent::Run { .. } => Ok(()),
        };
    }
}
