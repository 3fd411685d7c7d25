//! Everything the commands write to the terminal: stdout through [`print`], notes on stderr
//! through [`eprint`], and the search's progress display.
//!
//! A reader that goes away (`nas cost --net S | head -1`) closes the pipe, and the next write
//! fails with EPIPE (Rust ignores SIGPIPE). That write returns [`StdoutClosed`]; the command
//! stops where it is (a search between two log lines, with every finished candidate on disk,
//! so `--resume` continues it) and `main` exits quietly, nothing on stderr, with status
//! [`CLOSED_EXIT`] = 141 = 128 + SIGPIPE: what a shell reports for a Unix tool that the signal
//! ended, so `set -o pipefail` scripts see the output was cut short as they would with `cat`.

use crate::search::Observer;
use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};

/// Exit status of a command whose stdout was closed under it (128 + SIGPIPE).
pub const CLOSED_EXIT: u8 = 141;

/// Stdout was closed: its reader went away. Not a failure to report; see the module doc.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed (its reader went away)")
    }
}

impl std::error::Error for StdoutClosed {}

/// Whether `e` (or any error in its chain) is [`StdoutClosed`].
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<StdoutClosed>())
}

/// Write to stdout now (flushed). A closed stdout is [`StdoutClosed`]; any other failure (a
/// full disk under a redirection) is an error saying so.
pub fn print(args: std::fmt::Arguments) -> Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_fmt(args).and_then(|()| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
    }
}

/// A note or warning on stderr. A closed stderr loses it; it never ends the command.
pub fn eprint(args: std::fmt::Arguments) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// The terminal side of a search: log lines on stdout, two progress bars (candidates, the
/// current training's steps) on stderr, drawn only for a person watching (both streams a
/// terminal). The bars are cleared when the observer is dropped, however the command ends.
pub struct SearchTerminal {
    quiet: bool,
    overall: ProgressBar,
    steps: ProgressBar,
}

impl SearchTerminal {
    /// `quiet`: no log lines and no bars (`--quiet`, `--json`).
    pub fn new(quiet: bool) -> SearchTerminal {
        let visible = !quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let mp = MultiProgress::with_draw_target(if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let overall = mp.add(ProgressBar::new(1));
        overall.set_style(
            ProgressStyle::with_template("candidates {pos}/{len} [{bar:30}] {elapsed} (ETA {eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let steps = mp.add(ProgressBar::new(1));
        steps.set_style(
            ProgressStyle::with_template("  steps {pos}/{len} [{bar:30}] ETA {eta}  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        SearchTerminal {
            quiet,
            overall,
            steps,
        }
    }
}

impl Observer for SearchTerminal {
    fn log(&self, line: &str) -> Result<()> {
        if self.quiet {
            return Ok(());
        }
        // The bars step aside while the line is written, so it does not land inside them.
        self.overall.suspend(|| print(format_args!("{line}\n")))
    }

    fn start(&self, total: u64) {
        self.overall.set_length(total);
        self.overall.set_position(0);
    }

    fn candidate_done(&self) {
        self.overall.inc(1);
    }

    fn task(&self, what: &str) {
        self.steps.reset();
        self.steps.set_message(what.to_string());
    }

    fn steps(&self, done: u64, total: u64) {
        self.steps.set_length(total);
        self.steps.set_position(done);
    }

    fn finish(&self) {
        self.overall.finish_and_clear();
        self.steps.finish_and_clear();
    }
}

impl Drop for SearchTerminal {
    fn drop(&mut self) {
        self.finish();
    }
}
