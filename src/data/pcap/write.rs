//! Writing the dataset: gzip-compressed IDX files for the train and test splits, and
//! `classes.json` with the class names and counts.

use super::super::classes::CLASSES_FILE;
use super::super::{IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC};
use super::dataset::Split;
use super::{PcapOptions, PcapReport};
use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::Path;

/// Creates the output directory and writes the train (`train-*`) and test (`t10k-*`) IDX files
/// of `split`.
pub(super) fn write_split(opts: &PcapOptions, split: &Split) -> Result<()> {
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create the output directory {}", opts.out.display()))?;
    for (prefix, idx) in [("train", &split.train), ("t10k", &split.test)] {
        let images: Vec<&[u8]> = idx.iter().map(|&i| split.flat[i]).collect();
        let labs: Vec<u8> = idx.iter().map(|&i| split.labels[i]).collect();
        write_idx_images(
            &opts.out.join(format!("{prefix}-images-idx3-ubyte.gz")),
            &images,
            opts.len,
        )?;
        write_idx_labels(
            &opts.out.join(format!("{prefix}-labels-idx1-ubyte.gz")),
            &labs,
        )?;
    }
    Ok(())
}

/// Writes `classes.json`: the class names, their train and test counts, and how the samples
/// were made.
pub(super) fn write_classes_json(opts: &PcapOptions, report: &PcapReport) -> Result<()> {
    crate::util::write_json(
        &opts.out.join(CLASSES_FILE),
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
