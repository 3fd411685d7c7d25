//! Small helpers shared by the stages: atomic file writes, JSON files, the tail of a tool's
//! output.

use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::io::Write;
use std::path::Path;

/// Write a file so that readers see either the old or the new content, never a torn one:
/// write a temporary file beside it, flush it to disk, then rename it over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .context("path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let written = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {} ({} bytes)", path.display(), bytes.len()))?;
        drop(f);
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
    })();
    if written.is_err() {
        // A full disk or a failed rename leaves no half-written temporary file behind; the
        // target keeps its old content (or stays absent).
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Serialise `value` as pretty JSON and write it atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// Read a JSON file, naming the file in any error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
}

/// The last `lines` lines of a tool's output, for error messages.
pub fn tail_lines(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// The last (at most) `bytes` bytes of a text, cut at a character boundary.
pub fn tail_bytes(s: &str, bytes: usize) -> &str {
    let start = s.len().saturating_sub(bytes);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that fails (here the rename: the target is a non-empty directory) names the
    /// file and leaves no `.NAME.tmpPID` behind.
    #[test]
    fn failed_atomic_write_names_the_file_and_removes_its_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("init.safetensors");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), b"x").unwrap();
        let e = write_atomic(&target, b"payload").unwrap_err();
        assert!(format!("{e:#}").contains("init.safetensors"), "{e:#}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            ["init.safetensors"],
            "a temporary file was left behind"
        );
    }
}
