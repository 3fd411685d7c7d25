//! `nas data from-pcap`: packet captures → an IDX dataset, as the paper's (and USTC-TK2016's)
//! pipeline builds one.
//!
//! The input is a directory with one sub-folder per class (the folder name is the class name)
//! holding `.pcap` / `.pcapng` / `.cap` files (searched recursively). Each capture is read
//! with `pcap-file` and each packet sliced with `etherparse` (Ethernet with or without VLAN
//! tags, Linux cooked capture, BSD loopback, raw IPv4/IPv6). TCP and UDP packets over IPv4 or
//! IPv6 are grouped, per capture file, into
//!
//! - **sessions** (`--by session`): both directions of a 5-tuple, or
//! - **flows** (`--by flow`): one direction.
//!
//! A sample is the first `len` bytes of a session: with `--layers all`, the captured frames
//! one after the other (link-layer header included, pcap record headers not); with
//! `--layers l7`, the transport payloads only. Shorter sessions are padded with zeros.
//!
//! `--anonymize` (on by default) replaces the MAC and IP addresses of every session by
//! pseudonyms numbered in order of appearance within the session (the first sender becomes
//! 02:00:00:00:00:01 / 10.0.0.1 / fd00::1, the next 02:00:00:00:00:02 / 10.0.0.2 / fd00::2),
//! so the mapping is consistent inside a session and carries nothing about the real host
//! from one session to the next: a classifier cannot learn addresses. The IPv4 header checksum
//! and the TCP/UDP checksums (which cover the addresses) are recomputed; a transport checksum
//! whose segment was not captured completely is set to zero instead. With `--layers l7` no
//! addresses reach the sample, so the option changes nothing there.
//!
//! Then empty sessions (no byte to take, e.g. a TCP handshake under `l7`) are dropped, and so
//! are duplicates: a sample equal to an earlier one of its class is dropped, and a sample that
//! occurs in two classes is dropped from all of them (it could only teach noise and would leak
//! between train and test). `--max-per-class` keeps a seeded random subset of each class, and
//! a seeded stratified split holds out `--test-fraction` of every class as the test set.
//!
//! Written: `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
//! `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz` (28 × 28 images for `len` 784, else
//! `1 × len`) and `classes.json` with the class names and counts.
//!
//! Bad input never panics: a file that is not a capture (bad magic, corrupt header) or uses an
//! unsupported link type is an error naming the file; a corrupt packet is counted and skipped;
//! a record that cannot be read (a capture cut short while it was written) ends that file,
//! keeps what was read before it, and is counted.

mod anonymize;
mod dataset;
mod find;
mod read;
mod report;
mod sessions;
mod slice;
mod write;

pub use find::find_captures;
pub use report::{ClassReport, PcapReport, Skipped};
pub use write::{write_idx_images, write_idx_labels};

use anyhow::{bail, Result};
use indicatif::ProgressBar;
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

/// How packets are grouped into samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    /// Both directions of a 5-tuple (protocol, addresses, ports).
    Session,
    /// One direction of a 5-tuple.
    Flow,
}

/// Which bytes of a packet go into the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Layers {
    /// The whole captured frame, link-layer header included.
    All,
    /// The TCP or UDP payload only.
    L7,
}

/// Options of [`from_pcap`].
#[derive(Debug, Clone, Serialize)]
pub struct PcapOptions {
    pub input: PathBuf,
    pub out: PathBuf,
    pub by: Grouping,
    pub layers: Layers,
    pub len: usize,
    pub anonymize: bool,
    pub test_fraction: f64,
    pub max_per_class: Option<usize>,
    pub seed: u64,
    /// Draw a progress bar on stderr (only when it is a terminal).
    #[serde(skip)]
    pub progress: bool,
}

impl PcapOptions {
    /// The defaults of `nas data from-pcap`.
    pub fn new(input: impl Into<PathBuf>, out: impl Into<PathBuf>) -> PcapOptions {
        PcapOptions {
            input: input.into(),
            out: out.into(),
            by: Grouping::Session,
            layers: Layers::All,
            len: 784,
            anonymize: true,
            test_fraction: 0.1,
            max_per_class: None,
            seed: super::DEFAULT_SEED,
            progress: false,
        }
    }
}

/// Convert captures to an IDX dataset. See the module documentation.
pub fn from_pcap(opts: &PcapOptions) -> Result<PcapReport> {
    check_options(opts)?;
    let started = Instant::now();
    let classes = find_captures(&opts.input)?;
    let Collected {
        mut reports,
        mut samples,
        totals,
    } = read_classes(opts, &classes)?;
    dataset::drop_conflicting(&mut samples, &mut reports);
    dataset::cap_and_check(opts, &mut samples, &mut reports)?;
    let split = dataset::Split::new(&samples, classes.len(), opts)?;
    split.count_into(&mut reports);
    write::write_split(opts, &split)?;
    let report = PcapReport {
        options: opts.clone(),
        files: classes.iter().map(|(_, f)| f.len()).sum(),
        bytes: totals.bytes,
        packets: totals.packets,
        packets_used: totals.used,
        skipped: totals.skipped,
        cut_short: totals.cut_short,
        train: split.train.len(),
        test: split.test.len(),
        seconds: started.elapsed().as_secs_f64(),
        classes: reports,
    };
    write::write_classes_json(opts, &report)?;
    Ok(report)
}

/// Rejects option values the conversion cannot honour.
fn check_options(opts: &PcapOptions) -> Result<()> {
    if opts.len == 0 {
        bail!("--len must be at least 1");
    }
    if !(opts.test_fraction > 0.0 && opts.test_fraction < 1.0) {
        bail!(
            "--test-fraction {} is not strictly between 0 and 1",
            opts.test_fraction
        );
    }
    if opts.max_per_class == Some(0) {
        bail!("--max-per-class must be at least 1");
    }
    Ok(())
}

/// Counts over every file read so far.
#[derive(Default)]
struct Totals {
    skipped: Skipped,
    cut_short: Vec<String>,
    packets: u64,
    used: u64,
    bytes: u64,
}

/// What reading every class gave: per class its report and its distinct samples.
struct Collected {
    reports: Vec<ClassReport>,
    samples: Vec<Vec<Vec<u8>>>,
    totals: Totals,
}

/// Reads every capture of every class, with a progress bar over the input bytes.
fn read_classes(opts: &PcapOptions, classes: &[(String, Vec<PathBuf>)]) -> Result<Collected> {
    let total_bytes: u64 = classes
        .iter()
        .flat_map(|(_, f)| f)
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = read::progress_bar(opts.progress, total_bytes);
    let mut totals = Totals::default();
    let mut reports = Vec::new();
    let mut samples = Vec::new();
    for (name, files) in classes {
        let (rep, class_samples) = read_class(opts, name, files, &bar, &mut totals)?;
        reports.push(rep);
        samples.push(class_samples);
    }
    bar.finish_and_clear();
    Ok(Collected {
        reports,
        samples,
        totals,
    })
}

/// Reads the captures of one class: its report and its samples, each kept once (in order of
/// first appearance).
fn read_class(
    opts: &PcapOptions,
    name: &str,
    files: &[PathBuf],
    bar: &ProgressBar,
    totals: &mut Totals,
) -> Result<(ClassReport, Vec<Vec<u8>>)> {
    let mut rep = ClassReport {
        name: name.to_string(),
        files: files.len(),
        ..Default::default()
    };
    let mut class_samples = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for file in files {
        bar.set_message(file.display().to_string());
        let mut sessions = sessions::Sessions::new(opts);
        let stats = read::read_capture(file, &mut sessions, bar, totals.bytes)?;
        totals.bytes += stats.bytes;
        bar.set_position(totals.bytes);
        totals.packets += stats.packets;
        rep.packets += stats.packets;
        totals.used += sessions.used;
        totals.skipped.add(&sessions.skipped);
        if let Some(why) = stats.cut_short {
            totals.cut_short.push(format!("{}: {why}", file.display()));
        }
        for s in sessions.finish() {
            rep.sessions += 1;
            match s {
                None => rep.empty += 1,
                Some(bytes) => {
                    if seen.insert(bytes.clone()) {
                        class_samples.push(bytes);
                    } else {
                        rep.duplicates += 1;
                    }
                }
            }
        }
    }
    Ok((rep, class_samples))
}

#[cfg(test)]
mod tests;
