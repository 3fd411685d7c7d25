//! The advisory lock of a run or training directory: one process writes a directory at a time.
//!
//! The lock is the file `.lock` in the directory, held with an exclusive `flock` for as long
//! as the writer runs and holding the writer's pid, host, command and start time, so that a
//! second writer is refused with a message naming the holder. The kernel releases a `flock`
//! when its process ends however it ends (kill -9 included), so a lock file left behind by a
//! killed process is recognised as stale (nobody holds it) and taken over, with a note. A
//! writer that ends normally, or on an error, removes the file ([`Drop`]).
//!
//! Who locks: `nas search` (a new run and `--resume`), `nas train` and `nas verify --run` (it
//! writes `verify.json`). Readers (`report`, `export`, `eval`) do not. Neither do the workers
//! of `--jobs` and `--executor slurm`: the driver that holds the lock started them, and each
//! writes only the folder of the candidate the driver gave it.
//!
//! Where `flock` is not supported (some network filesystems), the pid in the file decides: a
//! live process on this host holds it; a dead one left it stale.

use super::layout::LOCK;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Who holds a lock, as written in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// The command, e.g. `nas search`.
    pub command: String,
    /// When it took the lock (RFC 3339, UTC).
    pub started: String,
}

impl Holder {
    fn me(command: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            host: host_name(),
            command: command.to_string(),
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    /// `nas search (pid 123 on host h, since 2026-01-01T10:00:00Z)`.
    pub fn describe(&self) -> String {
        format!(
            "{} (pid {} on host {}, since {})",
            self.command, self.pid, self.host, self.started
        )
    }
}

/// This machine's name (for the lock file; `unknown` where it cannot be read).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// A held lock; released (the file removed, the `flock` dropped) when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    file: File,
    /// The stale holder whose lock was taken over, if any.
    taken_over: Option<String>,
}

impl RunLock {
    /// Lock `dir` (which must exist) for `command`. Refused, naming the holder, while another
    /// process holds it.
    pub fn acquire(dir: &Path, command: &str) -> Result<RunLock> {
        let path = dir.join(LOCK);
        // The file may be removed by its holder between our open and our flock: we would then
        // hold a lock on a file nobody else can see. Check that the path still names the file we
        // locked, and start again when it does not.
        for _ in 0..20 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot open the lock file {}", path.display()))?;
            use rustix::io::Errno;
            let flocked = match rustix::fs::flock(
                &file,
                rustix::fs::FlockOperation::NonBlockingLockExclusive,
            ) {
                Ok(()) => true,
                Err(Errno::WOULDBLOCK) => {
                    bail!("{}", busy(dir, wait_for_holder(&mut file).as_ref()))
                }
                // No lock manager (some network filesystems): the pid decides.
                Err(Errno::NOLCK | Errno::OPNOTSUPP | Errno::NOSYS) => false,
                Err(e) => {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("cannot lock {}", path.display()))
                }
            };
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            let old = read_holder(&mut file);
            if !flocked {
                if let Some(h) = &old {
                    if h.host != host_name() {
                        bail!(
                            "{} (this filesystem has no locks, so whether it still runs cannot be \
                             told from here: delete {} if it does not)",
                            busy(dir, Some(h)),
                            path.display()
                        );
                    }
                    if pid_alive(h.pid) && h.pid != std::process::id() {
                        bail!("{}", busy(dir, Some(h)));
                    }
                }
            }
            let me = Holder::me(command);
            let mut text = serde_json::to_string(&me)?;
            text.push('\n');
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(text.as_bytes())
                .and_then(|_| file.sync_data())
                .with_context(|| format!("cannot write the lock file {}", path.display()))?;
            return Ok(RunLock {
                taken_over: old.map(|h| h.describe()),
                path,
                file,
            });
        }
        bail!(
            "cannot lock {}: its lock file keeps being replaced",
            dir.display()
        )
    }

    /// When a lock left behind by a process that no longer runs was taken over: a note saying
    /// whose.
    pub fn taken_over(&self) -> Option<String> {
        self.taken_over.as_ref().map(|h| {
            format!(
                "{} was locked by {h}, which no longer runs (killed?): its lock was taken over",
                self.path.parent().unwrap_or(Path::new(".")).display()
            )
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Remove the file only while it is still ours (nobody took it over), then let the
        // `flock` go with the file handle.
        let ours = match (self.file.metadata(), std::fs::metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The refusal: who holds `dir`.
fn busy(dir: &Path, holder: Option<&Holder>) -> String {
    match holder {
        Some(h) => format!(
            "{} is in use: {} is writing it; wait for it to end (or stop it: a lock left by a \
             process that no longer runs is taken over)",
            dir.display(),
            h.describe()
        ),
        None => format!(
            "{} is in use: another process holds its lock ({LOCK}); wait for it to end",
            dir.display()
        ),
    }
}

/// The holder of a lock we could not take. It writes its details right after taking the lock,
/// so a lock taken a moment ago may still be empty: read again for up to half a second.
fn wait_for_holder(file: &mut File) -> Option<Holder> {
    for _ in 0..50 {
        if let Some(h) = read_holder(file) {
            return Some(h);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// Whether process `pid` runs on this machine.
fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_naming_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(tmp.path(), "nas search").unwrap();
        assert!(first.taken_over().is_none());
        // flock is per open file: a second open in this process conflicts like another process.
        let e = RunLock::acquire(tmp.path(), "nas train")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is in use"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("nas search"), "{e}");
        drop(first);
        assert!(!tmp.path().join(LOCK).exists(), "released on drop");
        let again = RunLock::acquire(tmp.path(), "nas train").unwrap();
        assert!(again.taken_over().is_none());
    }

    #[test]
    fn a_stale_lock_is_taken_over_with_a_note() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = Holder {
            pid: 4_000_000,
            host: host_name(),
            command: "nas search".into(),
            started: "2026-01-01T00:00:00Z".into(),
        };
        std::fs::write(tmp.path().join(LOCK), serde_json::to_string(&dead).unwrap()).unwrap();
        let l = RunLock::acquire(tmp.path(), "nas search").unwrap();
        let note = l.taken_over().unwrap();
        assert!(
            note.contains("pid 4000000") && note.contains("no longer runs"),
            "{note}"
        );
        let h: Holder =
            serde_json::from_str(&std::fs::read_to_string(tmp.path().join(LOCK)).unwrap()).unwrap();
        assert_eq!(h.pid, std::process::id());
        // A torn (empty) lock file from a kill in the middle of writing it is taken too.
        drop(l);
        std::fs::write(tmp.path().join(LOCK), "").unwrap();
        let l = RunLock::acquire(tmp.path(), "nas search").unwrap();
        assert!(l.taken_over().is_none());
    }
}
