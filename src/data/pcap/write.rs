//! Writing the dataset: gzip-compressed IDX files for the train and test splits, and
//! `classes.json` with the class names and counts, all into a staging folder that replaces the
//! dataset of the output directory only once every file is written.

use super::super::classes::CLASSES_FILE;
use super::super::dir::classify_idx_name;
use super::super::{IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC};
use super::dataset::Split;
use super::{PcapOptions, PcapReport};
use anyhow::{bail, Context, Result};
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The name of a staging folder, before the process id of its writer.
const STAGING_PREFIX: &str = ".nas-from-pcap-";

/// The output directory of a conversion and the hidden folder inside it where the new dataset
/// is written. The output is checked before any capture is read: it must be new or empty,
/// unless `--force`, which replaces the dataset in it (every IDX file and `classes.json`,
/// since the loader would otherwise read old files beside the new ones, e.g. a raw
/// `train-images-idx3-ubyte` before the new `.gz`) and leaves any other file as it is.
/// Nothing of the new dataset reaches the output before [`Staging::commit`]; dropped without
/// it (an error), the staging folder is removed, and so is the output directory when this
/// conversion created it.
pub(super) struct Staging {
    out: PathBuf,
    dir: PathBuf,
    created_out: bool,
    /// Files of the old dataset, removed on commit.
    replace: Vec<PathBuf>,
    committed: bool,
}

impl Staging {
    /// Checks `out` (see [`Staging`]) and creates the staging folder in it.
    pub fn new(out: &Path, force: bool) -> Result<Staging> {
        let created_out = match std::fs::metadata(out) {
            Ok(m) if m.is_dir() => false,
            Ok(_) => bail!("--out {} exists and is not a directory", out.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(out).with_context(|| {
                    format!("cannot create the output directory {}", out.display())
                })?;
                true
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read --out {}", out.display()))
            }
        };
        let replace = if created_out {
            Vec::new()
        } else {
            old_dataset(out, force)?
        };
        let dir = out.join(format!("{STAGING_PREFIX}{}", std::process::id()));
        let staging = Staging {
            out: out.to_path_buf(),
            dir,
            created_out,
            replace,
            committed: false,
        };
        std::fs::create_dir(&staging.dir)
            .with_context(|| format!("cannot create {}", staging.dir.display()))?;
        Ok(staging)
    }

    /// Where the new dataset's files are written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replaces the old dataset (if any) by the staged files.
    pub fn commit(mut self) -> Result<()> {
        for old in &self.replace {
            match std::fs::remove_file(old) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot remove {}", old.display()))
                }
            }
        }
        for e in std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read {}", self.dir.display()))?
        {
            let from = e
                .with_context(|| format!("cannot read {}", self.dir.display()))?
                .path();
            let Some(name) = from.file_name() else {
                continue;
            };
            let to = self.out.join(name);
            std::fs::rename(&from, &to)
                .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        }
        std::fs::remove_dir(&self.dir)
            .with_context(|| format!("cannot remove {}", self.dir.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Best effort: an error is already being reported.
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.created_out {
            let _ = std::fs::remove_dir(&self.out);
        }
    }
}

/// The files of the dataset already in the existing directory `out`: an error when it is not
/// empty and not `force`. Staging folders left by a killed conversion do not count, and are
/// removed once the output is accepted; one whose writer still runs is an error.
fn old_dataset(out: &Path, force: bool) -> Result<Vec<PathBuf>> {
    let mut names = Vec::new();
    let mut stale = Vec::new();
    for e in std::fs::read_dir(out).with_context(|| format!("cannot read {}", out.display()))? {
        let e = e.with_context(|| format!("cannot read {}", out.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let writer = name
            .strip_prefix(STAGING_PREFIX)
            .and_then(|pid| pid.parse::<u32>().ok());
        match writer {
            Some(pid) if pid != std::process::id() && process_runs(pid) => bail!(
                "{} is being written by another conversion (process {pid}): wait for it, or \
                 choose another --out",
                out.display()
            ),
            Some(_) => stale.push(e.path()),
            None => names.push(name),
        }
    }
    names.sort();
    if !names.is_empty() && !force {
        let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
        bail!(
            "--out {} is not empty (it holds {} entr{}: {}{}): pass --force to replace the \
             dataset in it, or choose a new or empty directory",
            out.display(),
            names.len(),
            if names.len() == 1 { "y" } else { "ies" },
            shown.join(", "),
            if names.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        );
    }
    for path in stale {
        std::fs::remove_dir_all(&path)
            .with_context(|| format!("cannot remove the stale {}", path.display()))?;
    }
    Ok(names
        .into_iter()
        .map(|name| (out.join(&name), name))
        // Files and links (a link is removed, not what it leads to); a folder of such a name
        // is no dataset file, and the loader refuses it.
        .filter(|(path, name)| {
            (name == CLASSES_FILE || classify_idx_name(name).is_some())
                && std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir())
        })
        .map(|(path, _)| path)
        .collect())
}

/// Whether a process `pid` runs (on Linux; elsewhere every staging folder counts as stale).
fn process_runs(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Writes the train (`train-*`) and test (`t10k-*`) IDX files of `split` into `dir`.
pub(super) fn write_split(dir: &Path, len: usize, split: &Split) -> Result<()> {
    for (prefix, idx) in [("train", &split.train), ("t10k", &split.test)] {
        let images: Vec<&[u8]> = idx.iter().map(|&i| split.flat[i]).collect();
        let labs: Vec<u8> = idx.iter().map(|&i| split.labels[i]).collect();
        write_idx_images(
            &dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
            &images,
            len,
        )?;
        write_idx_labels(&dir.join(format!("{prefix}-labels-idx1-ubyte.gz")), &labs)?;
    }
    Ok(())
}

/// Writes `classes.json` into `dir`: the class names, their train and test counts, and how
/// the samples were made.
pub(super) fn write_classes_json(
    dir: &Path,
    opts: &PcapOptions,
    report: &PcapReport,
) -> Result<()> {
    crate::util::write_json(
        &dir.join(CLASSES_FILE),
        &serde_json::json!({
            "classes": report.classes.iter().map(|c| &c.name).collect::<Vec<_>>(),
            "train_counts": report.classes.iter().map(|c| c.train).collect::<Vec<_>>(),
            "test_counts": report.classes.iter().map(|c| c.test).collect::<Vec<_>>(),
            "source": opts.input,
            "by": opts.by,
            "layers": opts.layers,
            "len": opts.len,
            "anonymize": opts.anonymize,
            "tool_version": env!("CARGO_PKG_VERSION"),
        }),
    )
}

/// IDX dimensions for samples of `len` bytes: 28 × 28 style when `len` is a square.
fn image_dims(len: usize) -> (u32, u32) {
    let s = (len as f64).sqrt().round() as usize;
    if s * s == len {
        (s as u32, s as u32)
    } else {
        (1, len as u32)
    }
}

fn gz_write(path: &Path, header: &[u8], chunks: &mut dyn Iterator<Item = &[u8]>) -> Result<()> {
    // Level 1: the samples are mostly high-entropy payload, where higher levels gain little
    // and cost most of the conversion time.
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(header)?;
    for c in chunks {
        enc.write_all(c)?;
    }
    let bytes = enc.finish()?;
    crate::util::write_atomic(path, &bytes)
}

/// Write an IDX3 `u8` file of `images` (each exactly `len` bytes), gzip-compressed.
pub fn write_idx_images(path: &Path, images: &[&[u8]], len: usize) -> Result<()> {
    let (rows, cols) = image_dims(len);
    let mut header = Vec::with_capacity(16);
    header.extend_from_slice(&IDX_IMAGES_MAGIC.to_be_bytes());
    header.extend_from_slice(&(images.len() as u32).to_be_bytes());
    header.extend_from_slice(&rows.to_be_bytes());
    header.extend_from_slice(&cols.to_be_bytes());
    debug_assert!(images.iter().all(|i| i.len() == len));
    gz_write(path, &header, &mut images.iter().copied())
}

/// Write an IDX1 `u8` labels file, gzip-compressed.
pub fn write_idx_labels(path: &Path, labels: &[u8]) -> Result<()> {
    let mut header = Vec::with_capacity(8);
    header.extend_from_slice(&IDX_LABELS_MAGIC.to_be_bytes());
    header.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    gz_write(path, &header, &mut std::iter::once(labels))
}
