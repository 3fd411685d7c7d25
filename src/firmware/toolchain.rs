//! The cross compiler: checking it is there, running it, build directories.

use super::*;

/// A build directory: the caller's, kept, or a temporary one removed on drop.
#[derive(Debug)]
pub(crate) struct BuildDir {
    pub(crate) path: PathBuf,
    pub(crate) keep: bool,
}

impl BuildDir {
    pub(crate) fn new(requested: Option<&Path>) -> Result<BuildDir> {
        let (path, keep) = match requested {
            Some(p) => (p.to_path_buf(), true),
            None => {
                static COUNTER: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let p = std::env::temp_dir()
                    .join(format!("nas-verify-{}-{n}-{nanos}", std::process::id()));
                (p, false)
            }
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(BuildDir { path, keep })
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub(crate) fn write(dir: &Path, name: &str, contents: &str) -> Result<()> {
    let p = dir.join(name);
    std::fs::write(&p, contents).with_context(|| format!("cannot write {}", p.display()))
}

/// Check that the cross compiler runs.
pub fn check_toolchain() -> Result<()> {
    let out = Command::new(GCC)
        .arg("--version")
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {GCC} ({e}); {}", emulate::INSTALL_HINT))?;
    ensure!(
        out.status.success(),
        "{GCC} --version failed; {}",
        emulate::INSTALL_HINT
    );
    Ok(())
}

pub(crate) use crate::util::tail_lines as tail;

/// Run a toolchain command in `dir`; its stderr on failure.
pub(crate) fn run_tool(dir: &Path, args: &[String]) -> Result<std::result::Result<(), String>> {
    let out = Command::new(GCC)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {GCC} ({e}); {}", emulate::INSTALL_HINT))?;
    if out.status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(String::from_utf8_lossy(&out.stderr).into_owned()))
    }
}
