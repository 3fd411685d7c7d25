//! What a search tells the person running it while it runs: its log lines and its progress.
//! The stage prints nothing itself; the CLI supplies the observer (lines on stdout, progress
//! bars on stderr), as `bench::run` takes `say` and training takes `observe`.

use anyhow::Result;

/// Hears a search session as it goes. Every method but [`Observer::log`] is a display hint
/// and cannot fail.
pub trait Observer: Send + Sync {
    /// A line of the run's log, already appended to `log.txt`. An error (stdout was closed:
    /// its reader went away) stops the search where it is; every finished candidate is on
    /// disk, so the run stays resumable.
    fn log(&self, _line: &str) -> Result<()> {
        Ok(())
    }
    /// The session evaluates `total` candidates (those finished earlier included).
    fn start(&self, _total: u64) {}
    /// One candidate is done: trained, loaded from an earlier session, reused or failed.
    fn candidate_done(&self) {}
    /// A training (or a batch of worker tasks) begins: what it is; its steps count from 0.
    fn task(&self, _what: &str) {}
    /// `done` of the current task's `total` steps.
    fn steps(&self, _done: u64, _total: u64) {}
    /// The session is over, ended or stopped (a progress display is cleared).
    fn finish(&self) {}
}

/// The observer that hears nothing: `nas worker`, tests, a run opened only to be read.
pub struct Silent;

impl Observer for Silent {}
