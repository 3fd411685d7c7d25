//! Claiming an output directory for a new run or training: locked first, then checked so
//! that nothing a user or another run holds is written over; and the plain names a run or a
//! candidate may have.

use super::layout::{CONFIG, TRAIN_CONFIG};
use super::lock::RunLock;
use super::*;

/// The kind of directory a command writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirKind {
    /// A search run (`nas search`, `config.json`).
    Search,
    /// A training directory (`nas train`, `train.json`).
    Train,
}

impl DirKind {
    fn command(self) -> &'static str {
        match self {
            DirKind::Search => "nas search",
            DirKind::Train => "nas train",
        }
    }
}

/// An output directory claimed by a command before it writes anything there: locked, and
/// checked to hold nothing the command would overwrite. Dropped unused, it releases the lock
/// and removes the directory again when the claim created it and it is still empty.
pub struct OutDir {
    pub(super) dir: PathBuf,
    pub(super) kind: DirKind,
    pub(super) lock: Option<RunLock>,
    /// The directories the claim created, innermost first (removed again while empty).
    pub(super) created: Vec<PathBuf>,
}

impl OutDir {
    /// Claim `dir` for a new run or training of `kind`. Refused while another process writes
    /// it (naming the holder); refused when it holds a run or a training already (a search
    /// continues with `--resume`; a training directory is never written over); refused when it
    /// holds anything else unless `force`.
    pub fn claim(dir: &Path, kind: DirKind, force: bool) -> Result<OutDir> {
        ensure!(
            !dir.exists() || dir.is_dir(),
            "{} exists and is not a directory; choose another --out",
            dir.display()
        );
        let created: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
            .map(Path::to_path_buf)
            .collect();
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut out = OutDir {
            dir: dir.to_path_buf(),
            kind,
            lock: None,
            created,
        };
        out.lock = Some(RunLock::acquire(dir, kind.command())?);
        check_contents(dir, kind, force)?;
        Ok(out)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The note to show when the claim took over a lock left by a killed process.
    pub fn lock_note(&self) -> Option<String> {
        self.lock.as_ref().and_then(|l| l.taken_over())
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        let released = self.lock.take();
        drop(released);
        for d in &self.created {
            // Only an empty directory goes (remove_dir fails otherwise, and the rest stay).
            if std::fs::remove_dir(d).is_err() {
                break;
            }
        }
    }
}

/// What a new run or training of `kind` may not write over in `dir`.
fn check_contents(dir: &Path, kind: DirKind, force: bool) -> Result<()> {
    let l = Layout::new(dir);
    let d = dir.display();
    if l.config().exists() {
        match kind {
            DirKind::Search => bail!(
                "{d} already holds a run; continue it with `nas search --resume {d}` or choose \
                 another --out"
            ),
            DirKind::Train => bail!(
                "{d} holds a search run ({CONFIG}): a training there would replace the run's \
                 delivered model (best/) and summary; choose another --out"
            ),
        }
    }
    if l.train_config().exists() {
        match kind {
            DirKind::Search => bail!(
                "{d} holds a `nas train` directory ({TRAIN_CONFIG}): a search there would replace \
                 its trained model (best/) and summary; choose another --out"
            ),
            DirKind::Train => bail!("{d} already holds a training; choose another --out"),
        }
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {d}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != super::layout::LOCK)
        .collect();
    if !names.is_empty() && !force {
        names.sort();
        let more = names.len().saturating_sub(3);
        names.truncate(3);
        bail!(
            "{d} is not empty ({}{}) and is not a {}: choose a new or empty --out, or pass --force \
             to write into it anyway (files of the same names are replaced)",
            names.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
            match kind {
                DirKind::Search => "run directory",
                DirKind::Train => "training directory",
            }
        );
    }
    Ok(())
}

/// Check a run name (`nas search --name`): one plain path component, so that `runs/<name>`
/// stays inside `runs/`.
pub fn check_run_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
        && matches!(
            Path::new(name).components().collect::<Vec<_>>().as_slice(),
            [std::path::Component::Normal(_)]
        );
    ensure!(
        plain,
        "the run name {name:?} is not a plain name (one path component: no '/', no '..'); it \
         names a directory in runs/ (use --out DIR to put the run elsewhere)"
    );
    Ok(())
}

/// Whether `id` is a candidate id as [`candidate_id`] writes it (`g003-c01`).
pub fn is_candidate_id(id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    id.strip_prefix('g')
        .and_then(|rest| rest.split_once("-c"))
        .is_some_and(|(g, c)| digits(g) && digits(c))
}
