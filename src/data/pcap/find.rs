//! Finding the input: one folder per class, its capture files searched recursively.
//!
//! Symbolic links are followed only where they stay inside their class: a class folder may
//! itself be a link (its captures are those physically under the folder it leads to), but
//! inside a class folder a link — to a folder or to a file — is followed only when its target
//! lies inside that same class folder, and each folder and each file is visited once, by its
//! canonical path. So a link loop (`a/self -> .`, `a/up -> ..`) ends the walk instead of
//! repeating it, no capture is read twice, and no capture is filed under a class it is not
//! physically under. The links not followed are listed in the report.

use super::super::MAX_CLASSES;
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The capture files of one class folder.
#[derive(Debug, Clone)]
pub struct ClassCaptures {
    /// The folder's name: the class name.
    pub name: String,
    /// The folder, as found under the input.
    pub dir: PathBuf,
    /// Its capture files, sorted, each once.
    pub files: Vec<PathBuf>,
}

/// What [`find_captures`] found.
#[derive(Debug, Clone)]
pub struct Captures {
    /// At least 2 classes, sorted by name.
    pub classes: Vec<ClassCaptures>,
    /// The links inside class folders that were not followed, each with the reason.
    pub links_not_followed: Vec<String>,
}

/// The capture files of each class folder of `input` (see the module documentation); an
/// error when there are fewer than 2 classes or more than labels can number, when two class
/// folders overlap, or when a class folder holds no capture.
pub fn find_captures(input: &Path) -> Result<Captures> {
    let input_root = std::fs::canonicalize(input)
        .with_context(|| format!("cannot read the capture directory {}", input.display()))?;
    let mut found = Vec::new();
    for (name, path) in sorted_entries(input)? {
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        let root = std::fs::canonicalize(&path)
            .with_context(|| format!("cannot resolve the class folder {}", path.display()))?;
        if input_root.starts_with(&root) {
            bail!(
                "class folder {} leads to {}, which holds the input folder itself: a class \
                 folder must lie beside the others, not above them",
                path.display(),
                root.display()
            );
        }
        found.push((name, path, root));
    }
    check_class_count(input, &found)?;
    check_disjoint(&found)?;
    let mut classes = Vec::new();
    let mut links_not_followed = Vec::new();
    for (name, dir, root) in found {
        let mut walk = Walk::new(root);
        walk.run(&dir)?;
        if walk.files.is_empty() {
            let links = if walk.not_followed.is_empty() {
                String::new()
            } else {
                format!(" (links not followed: {})", walk.not_followed.join("; "))
            };
            bail!(
                "class folder {} holds no .pcap, .pcapng or .cap file{links}",
                dir.display()
            );
        }
        walk.files.sort();
        links_not_followed.append(&mut walk.not_followed);
        classes.push(ClassCaptures {
            name,
            dir,
            files: walk.files,
        });
    }
    Ok(Captures {
        classes,
        links_not_followed,
    })
}

/// The entries of `dir` as (name, path), sorted by name, so that the walk (and which of two
/// paths to one file is kept) does not depend on the order the file system lists them in.
fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
        entries.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    entries.sort();
    Ok(entries)
}

/// At least 2 class folders (a classifier of one class learns nothing, and `search` could
/// not use it), at most as many as a byte label numbers.
fn check_class_count(input: &Path, found: &[(String, PathBuf, PathBuf)]) -> Result<()> {
    match found {
        [] => bail!(
            "{} has no class folders: put each class's captures in a sub-folder named after the class",
            input.display()
        ),
        [(name, ..)] => bail!(
            "{} has one class folder, {name:?}: a dataset needs at least 2 classes; put each \
             class's captures in its own sub-folder named after the class",
            input.display()
        ),
        _ if found.len() > MAX_CLASSES => bail!(
            "{} has {} class folders; labels are bytes, so at most {MAX_CLASSES}",
            input.display(),
            found.len()
        ),
        _ => Ok(()),
    }
}

/// No class folder lies inside another (through a link): their captures would be filed under
/// both.
fn check_disjoint(found: &[(String, PathBuf, PathBuf)]) -> Result<()> {
    for (i, (_, a, ra)) in found.iter().enumerate() {
        for (_, b, rb) in &found[i + 1..] {
            if ra.starts_with(rb) || rb.starts_with(ra) {
                bail!(
                    "class folders {} ({}) and {} ({}) overlap: one lies inside the other, so \
                     their captures would belong to both classes",
                    a.display(),
                    ra.display(),
                    b.display(),
                    rb.display()
                );
            }
        }
    }
    Ok(())
}

/// The walk of one class folder: folders and files visited once each by canonical path, links
/// followed only inside the class's canonical `root`.
struct Walk {
    root: PathBuf,
    dirs_seen: HashSet<PathBuf>,
    files_seen: HashSet<PathBuf>,
    files: Vec<PathBuf>,
    not_followed: Vec<String>,
}

/// What an entry of a class folder is, once any link is resolved.
enum Entry {
    Dir(PathBuf),
    File(PathBuf),
    /// Neither (a socket, a FIFO, ...), or a link not followed.
    Other,
}

impl Walk {
    fn new(root: PathBuf) -> Walk {
        Walk {
            dirs_seen: HashSet::from([root.clone()]),
            root,
            files_seen: HashSet::new(),
            files: Vec::new(),
            not_followed: Vec::new(),
        }
    }

    /// Collects the capture files under `dir` (the class folder as found; its canonical path
    /// is `root`). Hidden entries are skipped.
    fn run(&mut self, dir: &Path) -> Result<()> {
        let mut stack = vec![(dir.to_path_buf(), self.root.clone())];
        while let Some((d, canon)) = stack.pop() {
            let mut subdirs = Vec::new();
            for (name, p) in sorted_entries(&d)? {
                if name.starts_with('.') {
                    continue;
                }
                match self.resolve(&p, &canon.join(&name))? {
                    Entry::Dir(c) => {
                        if self.dirs_seen.insert(c.clone()) {
                            subdirs.push((p, c));
                        } else {
                            self.not_followed.push(format!(
                                "{} -> {}: a folder already searched",
                                p.display(),
                                c.display()
                            ));
                        }
                    }
                    Entry::File(c) if is_capture_name(&name.to_lowercase()) => {
                        if self.files_seen.insert(c.clone()) {
                            self.files.push(p);
                        } else {
                            self.not_followed.push(format!(
                                "{} -> {}: a capture already read",
                                p.display(),
                                c.display()
                            ));
                        }
                    }
                    Entry::File(_) | Entry::Other => {}
                }
            }
            // Depth first, in name order.
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }

    /// What the entry `p` is; `canon` is its canonical path when it is not a link.
    fn resolve(&mut self, p: &Path, canon: &Path) -> Result<Entry> {
        let meta =
            std::fs::symlink_metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        let (canon, meta) = if meta.file_type().is_symlink() {
            let target = match std::fs::canonicalize(p) {
                Ok(t) => t,
                Err(e) => {
                    self.not_followed
                        .push(format!("{}: a link that leads nowhere ({e})", p.display()));
                    return Ok(Entry::Other);
                }
            };
            if !target.starts_with(&self.root) {
                self.not_followed.push(format!(
                    "{} -> {}: leads outside the class folder {}",
                    p.display(),
                    target.display(),
                    self.root.display()
                ));
                return Ok(Entry::Other);
            }
            let meta = std::fs::metadata(&target)
                .with_context(|| format!("cannot read {}", target.display()))?;
            (target, meta)
        } else {
            (canon.to_path_buf(), meta)
        };
        Ok(if meta.is_dir() {
            Entry::Dir(canon)
        } else if meta.is_file() {
            Entry::File(canon)
        } else {
            Entry::Other
        })
    }
}

/// Whether a lower-case file name has a capture file's extension.
fn is_capture_name(n: &str) -> bool {
    n.ends_with(".pcap") || n.ends_with(".pcapng") || n.ends_with(".cap")
}
