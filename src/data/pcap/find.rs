//! Finding the input: one folder per class, its capture files searched recursively.

use super::super::MAX_CLASSES;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The capture files of each class folder of `input`, classes sorted by name.
pub fn find_captures(input: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let rd = std::fs::read_dir(input)
        .with_context(|| format!("cannot read the capture directory {}", input.display()))?;
    let mut classes = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("cannot read {}", input.display()))?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        let files = class_files(&path)?;
        classes.push((name, files));
    }
    classes.sort_by(|a, b| a.0.cmp(&b.0));
    if classes.is_empty() {
        bail!(
            "{} has no class folders: put each class's captures in a sub-folder named after the class",
            input.display()
        );
    }
    if classes.len() > MAX_CLASSES {
        bail!(
            "{} has {} class folders; labels are bytes, so at most {MAX_CLASSES}",
            input.display(),
            classes.len()
        );
    }
    Ok(classes)
}

/// The `.pcap` / `.pcapng` / `.cap` files under the class folder `dir` (hidden entries
/// skipped), sorted; an error when there is none.
fn class_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for f in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let p = f
                .with_context(|| format!("cannot read {}", d.display()))?
                .path();
            let fname = p.file_name().map(|s| s.to_string_lossy().to_lowercase());
            if fname.as_deref().is_some_and(|n| n.starts_with('.')) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if fname.as_deref().is_some_and(is_capture_name) {
                files.push(p);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!(
            "class folder {} holds no .pcap, .pcapng or .cap file",
            dir.display()
        );
    }
    Ok(files)
}

/// Whether a lower-case file name has a capture file's extension.
fn is_capture_name(n: &str) -> bool {
    n.ends_with(".pcap") || n.ends_with(".pcapng") || n.ends_with(".cap")
}
