//! `nas data from-pcap`: packet captures → an IDX dataset, as the paper's (and USTC-TK2016's)
//! pipeline builds one.
//!
//! The input is a directory with at least 2 sub-folders, one per class (the folder name is the
//! class name), holding `.pcap` / `.pcapng` / `.cap` files (searched recursively; a symbolic
//! link inside a class folder is followed only when it leads to a place inside that same
//! folder, and each folder and file is read once: see [`find_captures`]). Each capture is read
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
//! `1 × len`) and `classes.json` with the class names and counts. The output directory must be
//! new or empty; `force` replaces the dataset files in it (every IDX file and `classes.json`;
//! other files stay), and nothing reaches it before every file is written.
//!
//! Bad input never panics: a file that is not a capture (bad magic, corrupt header) or uses an
//! unsupported link type is an error naming the file; a corrupt packet is counted and skipped;
//! a record that cannot be read (a capture cut short while it was written) ends that file,
//! keeps what was read before it, and is counted. A class left with fewer than 2 samples is an
//! error that says where its packets went (unreadable, skipped, empty, duplicate, conflicting).
//!
//! The stages depend one way: `frame` (the shared types) ← `slice`, `anonymize`, `read` ←
//! `sessions`; `find`, `dataset`, `write` and `report` beside them; this module on top. The
//! stage prints nothing: [`from_pcap_observed`] tells an observer how far it is.

mod anonymize;
mod dataset;
mod find;
mod frame;
mod read;
mod report;
mod sessions;
mod slice;
mod write;

pub use find::{find_captures, Captures, ClassCaptures};
pub use report::{ClassReport, PcapReport, Skipped};
pub use write::{write_idx_images, write_idx_labels};

use anyhow::{bail, Result};
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The longest sample: the most input bytes a network takes.
pub const MAX_LEN: usize = crate::net::spec::MAX_INPUT_LEN;

/// How packets are grouped into samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    /// Both directions of a 5-tuple (protocol, addresses, ports).
    Session,
    /// One direction of a 5-tuple.
    Flow,
}

/// Which bytes of a packet go into the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Replace the dataset in a non-empty output directory (else that is an error).
    pub force: bool,
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
            force: false,
        }
    }
}

/// How far a conversion is, as [`from_pcap_observed`] tells its observer.
#[derive(Debug, Clone, Copy)]
pub enum PcapProgress<'a> {
    /// Reading starts: this many capture files, of this many bytes in all.
    Reading { files: usize, bytes: u64 },
    /// Reading the capture `path`; `done` bytes of the input were read before it.
    File { path: &'a Path, done: u64 },
    /// `done` bytes of the input are read (told every few thousand packets).
    Read { done: u64 },
    /// Every capture is read; the dataset is being made and written.
    Writing,
}

/// Convert captures to an IDX dataset. See the module documentation.
pub fn from_pcap(opts: &PcapOptions) -> Result<PcapReport> {
    from_pcap_observed(opts, &mut |_| {})
}

/// [`from_pcap`], telling `observe` how far it is.
pub fn from_pcap_observed(
    opts: &PcapOptions,
    observe: &mut dyn FnMut(PcapProgress),
) -> Result<PcapReport> {
    check_options(opts)?;
    let started = Instant::now();
    let found = find_captures(&opts.input)?;
    let staging = write::Staging::new(&opts.out, opts.force)?;
    let Collected {
        mut reports,
        mut samples,
        totals,
    } = read_classes(opts, &found.classes, observe)?;
    observe(PcapProgress::Writing);
    dataset::drop_conflicting(&mut samples, &mut reports);
    dataset::cap_and_check(opts, &found.classes, &mut samples, &mut reports)?;
    let split = dataset::Split::new(&samples, found.classes.len(), opts)?;
    split.count_into(&mut reports);
    write::write_split(staging.dir(), opts.len, &split)?;
    let report = PcapReport {
        options: opts.clone(),
        files: found.classes.iter().map(|c| c.files.len()).sum(),
        links_not_followed: found.links_not_followed,
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
    write::write_classes_json(staging.dir(), opts, &report)?;
    staging.commit()?;
    Ok(report)
}

/// Rejects option values the conversion cannot honour.
fn check_options(opts: &PcapOptions) -> Result<()> {
    if opts.len == 0 {
        bail!("--len must be at least 1");
    }
    if opts.len > MAX_LEN {
        bail!(
            "--len {} is longer than any network's input: at most {MAX_LEN} bytes",
            opts.len
        );
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

/// Reads every capture of every class, telling `observe` how far it is.
fn read_classes(
    opts: &PcapOptions,
    classes: &[ClassCaptures],
    observe: &mut dyn FnMut(PcapProgress),
) -> Result<Collected> {
    let files: usize = classes.iter().map(|c| c.files.len()).sum();
    let bytes: u64 = classes
        .iter()
        .flat_map(|c| &c.files)
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    observe(PcapProgress::Reading { files, bytes });
    let mut totals = Totals::default();
    let mut reports = Vec::new();
    let mut samples = Vec::new();
    for class in classes {
        let (rep, class_samples) = read_class(opts, class, observe, &mut totals)?;
        reports.push(rep);
        samples.push(class_samples);
    }
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
    class: &ClassCaptures,
    observe: &mut dyn FnMut(PcapProgress),
    totals: &mut Totals,
) -> Result<(ClassReport, Vec<Vec<u8>>)> {
    let mut rep = ClassReport {
        name: class.name.clone(),
        files: class.files.len(),
        ..Default::default()
    };
    let mut class_samples = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for file in &class.files {
        let before = totals.bytes;
        observe(PcapProgress::File {
            path: file,
            done: before,
        });
        let mut sessions = sessions::Sessions::new(opts);
        let stats = read::read_capture(file, &mut sessions, &mut |done| {
            observe(PcapProgress::Read {
                done: before + done,
            })
        })?;
        totals.bytes += stats.bytes;
        observe(PcapProgress::Read { done: totals.bytes });
        totals.packets += stats.packets;
        rep.packets += stats.packets;
        totals.used += sessions.used;
        rep.packets_used += sessions.used;
        totals.skipped.add(&sessions.skipped);
        rep.skipped.add(&sessions.skipped);
        if let Some(why) = stats.cut_short {
            let line = format!("{}: {why}", file.display());
            rep.cut_short.push(line.clone());
            totals.cut_short.push(line);
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
