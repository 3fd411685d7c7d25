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

use super::classes::CLASSES_FILE;
use super::{stratified_split, DataError, MAX_CLASSES};
use anyhow::{bail, Context, Result};
use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use flate2::write::GzEncoder;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
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

/// Packets that did not become part of a sample, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Not IPv4/IPv6, or not TCP/UDP (ARP, ICMP, ...).
    pub not_tcp_udp: u64,
    /// IP fragments after the first (no transport header), and first fragments.
    pub fragments: u64,
    /// Cut by the capture's snap length before the end of the TCP/UDP header.
    pub truncated: u64,
    /// Headers that do not parse (bad lengths, bad version, ...).
    pub corrupt: u64,
    /// Packets of pcapng interfaces with a link type this reader does not slice.
    pub unsupported_link: u64,
}

/// Per class: what was found and kept.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassReport {
    pub name: String,
    pub files: usize,
    pub packets: u64,
    pub sessions: usize,
    pub empty: usize,
    pub duplicates: usize,
    /// Samples also present in another class, dropped.
    pub conflicting: usize,
    /// Dropped by `--max-per-class`.
    pub capped: usize,
    pub train: usize,
    pub test: usize,
}

/// What [`from_pcap`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PcapReport {
    pub options: PcapOptions,
    pub classes: Vec<ClassReport>,
    pub files: usize,
    pub bytes: u64,
    pub packets: u64,
    pub packets_used: u64,
    pub skipped: Skipped,
    /// Files whose last record could not be read (cut short or corrupt): `path: reason`.
    pub cut_short: Vec<String>,
    pub train: usize,
    pub test: usize,
    pub seconds: f64,
}

impl PcapReport {
    /// Input megabytes (10^6 B) read per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

impl std::fmt::Display for PcapReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} files, {:.1} MB, {} packets ({} used) in {:.1} s ({:.1} MB/s)",
            self.files,
            self.bytes as f64 / 1e6,
            self.packets,
            self.packets_used,
            self.seconds,
            self.mb_per_sec()
        )?;
        let s = &self.skipped;
        writeln!(
            f,
            "skipped packets: {} not TCP/UDP, {} fragments, {} truncated, {} corrupt, {} unsupported link type",
            s.not_tcp_udp, s.fragments, s.truncated, s.corrupt, s.unsupported_link
        )?;
        for c in &self.cut_short {
            writeln!(f, "cut short: {c}")?;
        }
        writeln!(
            f,
            "{:<3} {:<24} {:>6} {:>10} {:>9} {:>6} {:>6} {:>6} {:>6} {:>7} {:>6}",
            "#",
            "class",
            "files",
            "packets",
            "sessions",
            "empty",
            "dupl",
            "confl",
            "capped",
            "train",
            "test"
        )?;
        for (i, c) in self.classes.iter().enumerate() {
            writeln!(
                f,
                "{:<3} {:<24} {:>6} {:>10} {:>9} {:>6} {:>6} {:>6} {:>6} {:>7} {:>6}",
                i,
                c.name,
                c.files,
                c.packets,
                c.sessions,
                c.empty,
                c.duplicates,
                c.conflicting,
                c.capped,
                c.train,
                c.test
            )?;
        }
        write!(
            f,
            "wrote {} train and {} test samples of {} bytes to {}",
            self.train,
            self.test,
            self.options.len,
            self.options.out.display()
        )
    }
}

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
        let mut files = Vec::new();
        let mut stack = vec![path.clone()];
        while let Some(d) = stack.pop() {
            for f in
                std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?
            {
                let p = f
                    .with_context(|| format!("cannot read {}", d.display()))?
                    .path();
                let fname = p.file_name().map(|s| s.to_string_lossy().to_lowercase());
                if fname.as_deref().is_some_and(|n| n.starts_with('.')) {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else if fname.as_deref().is_some_and(|n| {
                    n.ends_with(".pcap") || n.ends_with(".pcapng") || n.ends_with(".cap")
                }) {
                    files.push(p);
                }
            }
        }
        files.sort();
        if files.is_empty() {
            bail!(
                "class folder {} holds no .pcap, .pcapng or .cap file",
                path.display()
            );
        }
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

/// Convert captures to an IDX dataset. See the module documentation.
pub fn from_pcap(opts: &PcapOptions) -> Result<PcapReport> {
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
    let started = Instant::now();
    let classes = find_captures(&opts.input)?;
    let total_bytes: u64 = classes
        .iter()
        .flat_map(|(_, f)| f)
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = progress_bar(opts.progress, total_bytes);

    let mut skipped = Skipped::default();
    let mut cut_short = Vec::new();
    let mut reports: Vec<ClassReport> = Vec::new();
    let mut samples: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut packets = 0u64;
    let mut used = 0u64;
    let mut bytes_done = 0u64;
    for (name, files) in &classes {
        let mut rep = ClassReport {
            name: name.clone(),
            files: files.len(),
            ..Default::default()
        };
        let mut class_samples = Vec::new();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        for file in files {
            bar.set_message(file.display().to_string());
            let mut sessions = Sessions::new(opts);
            let stats = read_capture(file, &mut sessions, &bar, bytes_done)?;
            bytes_done += stats.bytes;
            bar.set_position(bytes_done);
            packets += stats.packets;
            rep.packets += stats.packets;
            used += sessions.used;
            add_skipped(&mut skipped, &sessions.skipped);
            if let Some(why) = stats.cut_short {
                cut_short.push(format!("{}: {why}", file.display()));
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
        reports.push(rep);
        samples.push(class_samples);
    }
    bar.finish_and_clear();

    // A sample found in more than one class is dropped from all of them.
    let mut owner: HashMap<&[u8], usize> = HashMap::new();
    let mut conflicted: HashSet<Vec<u8>> = HashSet::new();
    for (c, list) in samples.iter().enumerate() {
        for s in list {
            match owner.get(s.as_slice()) {
                Some(&o) if o != c => {
                    conflicted.insert(s.clone());
                }
                _ => {
                    owner.insert(s, c);
                }
            }
        }
    }
    drop(owner);
    if !conflicted.is_empty() {
        for (c, list) in samples.iter_mut().enumerate() {
            let before = list.len();
            list.retain(|s| !conflicted.contains(s));
            reports[c].conflicting = before - list.len();
        }
    }

    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    for (c, list) in samples.iter_mut().enumerate() {
        if let Some(cap) = opts.max_per_class {
            if list.len() > cap {
                let mut idx: Vec<usize> = (0..list.len()).collect();
                idx.shuffle(&mut rng);
                let mut keep = idx[..cap].to_vec();
                keep.sort_unstable();
                reports[c].capped = list.len() - cap;
                let old = std::mem::take(list);
                let mut keep_iter = keep.into_iter().peekable();
                for (i, s) in old.into_iter().enumerate() {
                    if keep_iter.peek() == Some(&i) {
                        keep_iter.next();
                        list.push(s);
                    }
                }
            }
        }
        if list.len() < 2 {
            let r = &reports[c];
            bail!(
                "class {:?} ({}) has {} usable sample(s) after dropping {} empty, {} duplicate and {} \
                 conflicting sessions; a train/test split needs at least 2 per class",
                r.name,
                opts.input.join(&r.name).display(),
                list.len(),
                r.empty,
                r.duplicates,
                r.conflicting
            );
        }
    }

    let labels: Vec<u8> = samples
        .iter()
        .enumerate()
        .flat_map(|(c, l)| std::iter::repeat_n(c as u8, l.len()))
        .collect();
    let flat: Vec<&Vec<u8>> = samples.iter().flatten().collect();
    let (train_idx, test_idx) =
        stratified_split(&labels, classes.len(), opts.test_fraction, opts.seed)
            .map_err(|e: DataError| anyhow::anyhow!(e))?;
    for &i in &train_idx {
        reports[labels[i] as usize].train += 1;
    }
    for &i in &test_idx {
        reports[labels[i] as usize].test += 1;
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create the output directory {}", opts.out.display()))?;
    for (prefix, idx) in [("train", &train_idx), ("t10k", &test_idx)] {
        let images: Vec<&[u8]> = idx.iter().map(|&i| flat[i].as_slice()).collect();
        let labs: Vec<u8> = idx.iter().map(|&i| labels[i]).collect();
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
    let report = PcapReport {
        options: opts.clone(),
        files: classes.iter().map(|(_, f)| f.len()).sum(),
        bytes: bytes_done,
        packets,
        packets_used: used,
        skipped,
        cut_short,
        train: train_idx.len(),
        test: test_idx.len(),
        seconds: started.elapsed().as_secs_f64(),
        classes: reports,
    };
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
    )?;
    Ok(report)
}

fn add_skipped(into: &mut Skipped, s: &Skipped) {
    into.not_tcp_udp += s.not_tcp_udp;
    into.fragments += s.fragments;
    into.truncated += s.truncated;
    into.corrupt += s.corrupt;
    into.unsupported_link += s.unsupported_link;
}

fn progress_bar(wanted: bool, total: u64) -> ProgressBar {
    use std::io::IsTerminal;
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if wanted && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} ETA {eta}  {wide_msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
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
    header.extend_from_slice(&super::IDX_IMAGES_MAGIC.to_be_bytes());
    header.extend_from_slice(&(images.len() as u32).to_be_bytes());
    header.extend_from_slice(&rows.to_be_bytes());
    header.extend_from_slice(&cols.to_be_bytes());
    debug_assert!(images.iter().all(|i| i.len() == len));
    gz_write(path, &header, &mut images.iter().copied())
}

/// Write an IDX1 `u8` labels file, gzip-compressed.
pub fn write_idx_labels(path: &Path, labels: &[u8]) -> Result<()> {
    let mut header = Vec::with_capacity(8);
    header.extend_from_slice(&super::IDX_LABELS_MAGIC.to_be_bytes());
    header.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    gz_write(path, &header, &mut std::iter::once(labels))
}

// ---------------------------------------------------------------------------------------------
// Reading captures
// ---------------------------------------------------------------------------------------------

struct FileStats {
    bytes: u64,
    packets: u64,
    cut_short: Option<String>,
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Read one capture file into `sessions`.
fn read_capture(
    path: &Path,
    sessions: &mut Sessions,
    bar: &ProgressBar,
    bytes_before: u64,
) -> Result<FileStats> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut f, &mut magic)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if got < 4 {
        bail!(
            "{}: not a capture file: {} bytes, shorter than any pcap or pcapng header",
            path.display(),
            got
        );
    }
    // pcap-file reads through its own 8 MB buffer.
    let reader = std::io::Cursor::new(magic).chain(f);
    let mut packets = 0u64;
    let mut cut_short = None;
    let mut done = 0u64;
    let mut tick = |bytes: u64| {
        done += bytes;
        packets += 1;
        if packets % 4096 == 0 {
            bar.set_position(bytes_before + done);
        }
    };
    if magic == PCAPNG_MAGIC {
        let mut r = PcapNgReader::new(reader)
            .map_err(|e| anyhow::anyhow!("{}: not a valid pcapng file: {e}", path.display()))?;
        // Link types of the section's interfaces, by interface id.
        let mut links: Vec<DataLink> = r.interfaces().iter().map(|i| i.linktype).collect();
        loop {
            let block = match r.next_block() {
                None => break,
                Some(Ok(b)) => b,
                Some(Err(e)) => {
                    cut_short = Some(format!("unreadable block after {packets} packets: {e}"));
                    break;
                }
            };
            let (iface, data) = match &block {
                Block::SectionHeader(_) => {
                    links.clear();
                    continue;
                }
                Block::InterfaceDescription(i) => {
                    links.push(i.linktype);
                    continue;
                }
                Block::EnhancedPacket(p) => (p.interface_id as usize, p.data.as_ref()),
                Block::SimplePacket(p) => (0, p.data.as_ref()),
                Block::Packet(p) => (p.interface_id as usize, p.data.as_ref()),
                _ => continue,
            };
            match links.get(iface).copied().and_then(Link::of) {
                Some(l) => sessions.packet(l, data),
                None => sessions.skipped.unsupported_link += 1,
            }
            tick(data.len() as u64 + 32);
        }
    } else {
        let mut r = PcapReader::new(reader).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a pcap or pcapng file (or its header is corrupt): {e}",
                path.display()
            )
        })?;
        let dl = r.header().datalink;
        let Some(link) = Link::of(dl) else {
            bail!(
                "{}: link type {:?} is not supported (Ethernet, Linux cooked capture, BSD loopback \
                 and raw IPv4/IPv6 are)",
                path.display(),
                dl
            );
        };
        // Raw records: pcap-file's checked packets reject `orig_len > snaplen`, which every
        // capture made with a short snap length has.
        loop {
            match r.next_raw_packet() {
                None => break,
                Some(Ok(p)) => {
                    sessions.packet(link, &p.data);
                    tick(p.data.len() as u64 + 16);
                }
                Some(Err(e)) => {
                    cut_short = Some(format!("unreadable record after {packets} packets: {e}"));
                    break;
                }
            }
        }
    }
    Ok(FileStats {
        bytes: size,
        packets,
        cut_short,
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Link types this reader slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Ethernet,
    LinuxSll,
    /// BSD loopback: a 4-byte address family, then IP.
    Null,
    Ip,
}

impl Link {
    fn of(dl: DataLink) -> Option<Link> {
        Some(match dl {
            DataLink::ETHERNET => Link::Ethernet,
            DataLink::LINUX_SLL => Link::LinuxSll,
            DataLink::NULL | DataLink::LOOP => Link::Null,
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Link::Ip,
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

/// One end of a connection: address (IPv4 in the first 4 bytes) and port.
type Endpoint = ([u8; 16], u16);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    proto: u8,
    v6: bool,
    a: Endpoint,
    b: Endpoint,
}

#[derive(Default)]
struct Session {
    data: Vec<u8>,
    /// Addresses seen so far, numbered for the pseudonyms.
    macs: Vec<[u8; 6]>,
    ips: Vec<[u8; 16]>,
}

/// The sessions of one capture file, in order of first packet.
struct Sessions {
    by: Grouping,
    layers: Layers,
    len: usize,
    anonymize: bool,
    index: HashMap<Key, usize>,
    list: Vec<Session>,
    skipped: Skipped,
    used: u64,
    scratch: Vec<u8>,
}

/// What slicing a packet found: the key and where the pieces lie in the frame.
struct Parsed {
    key: Key,
    /// Byte range of the transport payload within the frame.
    payload: std::ops::Range<usize>,
    /// Where the addresses and checksums lie, for anonymizing.
    eth: Option<usize>,
    sll_addr: Option<(usize, usize)>,
    ip: usize,
    ip_header_len: usize,
    transport: usize,
    tcp: bool,
    /// The whole transport segment was captured (its checksum can be recomputed).
    complete: bool,
    segment_end: usize,
}

impl Sessions {
    fn new(o: &PcapOptions) -> Sessions {
        Sessions {
            by: o.by,
            layers: o.layers,
            len: o.len,
            anonymize: o.anonymize,
            index: HashMap::new(),
            list: Vec::new(),
            skipped: Skipped::default(),
            used: 0,
            scratch: Vec::new(),
        }
    }

    fn packet(&mut self, link: Link, frame: &[u8]) {
        let Some(p) = self.parse(link, frame) else {
            return;
        };
        let n = self.list.len();
        let id = *self.index.entry(p.key.clone()).or_insert(n);
        if id == n {
            self.list.push(Session::default());
        }
        self.used += 1;
        let len = self.len;
        let s = &mut self.list[id];
        if s.data.len() >= len {
            return;
        }
        match self.layers {
            Layers::L7 => {
                let room = len - s.data.len();
                let pl = &frame[p.payload.clone()];
                s.data.extend_from_slice(&pl[..pl.len().min(room)]);
            }
            Layers::All => {
                let room = len - s.data.len();
                if self.anonymize {
                    self.scratch.clear();
                    self.scratch.extend_from_slice(frame);
                    anonymize(&mut self.scratch, &p, s);
                    s.data
                        .extend_from_slice(&self.scratch[..frame.len().min(room)]);
                } else {
                    s.data.extend_from_slice(&frame[..frame.len().min(room)]);
                }
            }
        }
    }

    /// The samples of this file, in order of first packet; `None` for empty sessions.
    fn finish(self) -> Vec<Option<Vec<u8>>> {
        let len = self.len;
        self.list
            .into_iter()
            .map(|s| {
                if s.data.is_empty() {
                    None
                } else {
                    let mut d = s.data;
                    d.resize(len, 0);
                    Some(d)
                }
            })
            .collect()
    }

    fn parse(&mut self, link: Link, frame: &[u8]) -> Option<Parsed> {
        let sliced = match link {
            Link::Ethernet => LaxSlicedPacket::from_ethernet(frame).ok(),
            // Linux cooked capture: a 16-byte header ending with the EtherType.
            Link::LinuxSll => frame.get(16..).map(|rest| {
                LaxSlicedPacket::from_ether_type(
                    EtherType(u16::from_be_bytes([frame[14], frame[15]])),
                    rest,
                )
            }),
            Link::Null => frame
                .get(4..)
                .and_then(|ip| LaxSlicedPacket::from_ip(ip).ok()),
            Link::Ip => LaxSlicedPacket::from_ip(frame).ok(),
        };
        let Some(sliced) = sliced else {
            self.skipped.corrupt += 1;
            return None;
        };
        let off = |s: &[u8]| s.as_ptr() as usize - frame.as_ptr() as usize;
        let (eth, sll_addr) = match link {
            Link::Ethernet => (Some(0), None),
            Link::LinuxSll => {
                // Link-layer address length at 4..6, the address at 6..14.
                let alen = frame
                    .get(4..6)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                    .unwrap_or(0);
                (None, (alen == 6).then_some((6, 6)))
            }
            _ => (None, None),
        };
        let (v6, src, dst, ip, ip_header_len, payload_incomplete, fragmented) = match &sliced.net {
            Some(LaxNetSlice::Ipv4(v4)) => {
                let h = v4.header();
                let mut s = [0u8; 16];
                let mut d = [0u8; 16];
                s[..4].copy_from_slice(&h.source());
                d[..4].copy_from_slice(&h.destination());
                (
                    false,
                    s,
                    d,
                    off(h.slice()),
                    h.slice().len(),
                    v4.payload().incomplete,
                    v4.payload().fragmented,
                )
            }
            Some(LaxNetSlice::Ipv6(v6)) => {
                let h = v6.header();
                (
                    true,
                    h.source(),
                    h.destination(),
                    off(h.slice()),
                    h.slice().len(),
                    v6.payload().incomplete,
                    v6.payload().fragmented,
                )
            }
            _ => {
                if sliced.stop_err.is_some() {
                    self.skipped.corrupt += 1;
                } else {
                    self.skipped.not_tcp_udp += 1;
                }
                return None;
            }
        };
        if fragmented {
            self.skipped.fragments += 1;
            return None;
        }
        let (proto, sp, dp, transport, payload, tcp) = match &sliced.transport {
            Some(TransportSlice::Tcp(t)) => {
                let start = off(t.slice());
                let p0 = off(t.payload());
                (
                    6u8,
                    t.source_port(),
                    t.destination_port(),
                    start,
                    p0..p0 + t.payload().len(),
                    true,
                )
            }
            Some(TransportSlice::Udp(u)) => {
                let start = off(u.slice());
                let p0 = off(u.payload());
                (
                    17u8,
                    u.source_port(),
                    u.destination_port(),
                    start,
                    p0..p0 + u.payload().len(),
                    false,
                )
            }
            Some(_) => {
                self.skipped.not_tcp_udp += 1;
                return None;
            }
            None => {
                let ipn = match &sliced.net {
                    Some(LaxNetSlice::Ipv4(v4)) => v4.payload().ip_number.0,
                    Some(LaxNetSlice::Ipv6(v6)) => v6.payload().ip_number.0,
                    _ => 0,
                };
                if ipn == 6 || ipn == 17 {
                    self.skipped.truncated += 1;
                } else if sliced.stop_err.is_some() {
                    self.skipped.corrupt += 1;
                } else {
                    self.skipped.not_tcp_udp += 1;
                }
                return None;
            }
        };
        let from = (src, sp);
        let to = (dst, dp);
        let (a, b) = match self.by {
            Grouping::Session if to < from => (to, from),
            _ => (from, to),
        };
        Some(Parsed {
            key: Key { proto, v6, a, b },
            segment_end: payload.end,
            payload,
            eth,
            sll_addr,
            ip,
            ip_header_len,
            transport,
            tcp,
            complete: !payload_incomplete,
        })
    }
}

/// The pseudonym number (1-based) of `x` within the session, adding it when new.
fn number<T: PartialEq + Copy>(list: &mut Vec<T>, x: T) -> u8 {
    let i = match list.iter().position(|y| *y == x) {
        Some(i) => i,
        None => {
            list.push(x);
            list.len() - 1
        }
    };
    // More than 250 distinct addresses in one 5-tuple session cannot happen for IP (two
    // ends); for MACs (routers, VLANs) it would be absurd. Saturate rather than wrap.
    (i + 1).min(250) as u8
}

/// Replace the addresses in `f` (a copy of the frame) by the session's pseudonyms and fix the
/// checksums that cover them.
fn anonymize(f: &mut [u8], p: &Parsed, s: &mut Session) {
    let mac_pseudo = |n: u8| [0x02, 0, 0, 0, 0, n];
    if let Some(e) = p.eth {
        // The source first: the first sender gets pseudonym 1.
        for at in [e + 6, e] {
            if let Some(m) = f.get(at..at + 6) {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(m);
                let n = number(&mut s.macs, mac);
                f[at..at + 6].copy_from_slice(&mac_pseudo(n));
            }
        }
    }
    if let Some((at, l)) = p.sll_addr {
        if let Some(m) = f.get(at..at + l) {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&m[..6]);
            let n = number(&mut s.macs, mac);
            f[at..at + 6].copy_from_slice(&mac_pseudo(n));
        }
    }
    let ip = p.ip;
    if !p.key.v6 {
        for at in [ip + 12, ip + 16] {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&f[at..at + 4]);
            let n = number(&mut s.ips, a);
            f[at..at + 4].copy_from_slice(&[10, 0, 0, n]);
        }
        // IPv4 header checksum over the (possibly option-bearing) header.
        f[ip + 10] = 0;
        f[ip + 11] = 0;
        let c = internet_checksum(&[&f[ip..ip + p.ip_header_len]]);
        f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    } else {
        for at in [ip + 8, ip + 24] {
            let mut a = [0u8; 16];
            a.copy_from_slice(&f[at..at + 16]);
            let n = number(&mut s.ips, a);
            let mut pseudo = [0u8; 16];
            pseudo[0] = 0xfd;
            pseudo[15] = n;
            f[at..at + 16].copy_from_slice(&pseudo);
        }
    }
    let t = p.transport;
    let ck = if p.tcp { t + 16 } else { t + 6 };
    if f.len() < ck + 2 {
        return;
    }
    f[ck] = 0;
    f[ck + 1] = 0;
    if p.complete {
        let seg = &f[t..p.segment_end];
        let c = if !p.key.v6 {
            let (src, dst) = (&f[ip + 12..ip + 16], &f[ip + 16..ip + 20]);
            etherparse_checksum_v4(src, dst, if p.tcp { 6 } else { 17 }, seg)
        } else {
            let (src, dst) = (&f[ip + 8..ip + 24], &f[ip + 24..ip + 40]);
            etherparse_checksum_v6(src, dst, if p.tcp { 6 } else { 17 }, seg)
        };
        // UDP transmits a computed zero as 0xffff (zero means "no checksum").
        let c = if !p.tcp && c == 0 { 0xffff } else { c };
        f[ck..ck + 2].copy_from_slice(&c.to_be_bytes());
    }
}

fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = etherparse::checksum::Sum16BitWords::new();
    for p in parts {
        sum = sum.add_slice(p);
    }
    sum.ones_complement().to_be()
}

fn etherparse_checksum_v4(src: &[u8], dst: &[u8], proto: u8, seg: &[u8]) -> u16 {
    let len = (seg.len() as u16).to_be_bytes();
    internet_checksum(&[src, dst, &[0, proto], &len, seg])
}

fn etherparse_checksum_v6(src: &[u8], dst: &[u8], proto: u8, seg: &[u8]) -> u16 {
    let len = (seg.len() as u32).to_be_bytes();
    internet_checksum(&[src, dst, &len, &[0, 0, 0, proto], seg])
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, VlanId};
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::PcapNgWriter;
    use std::borrow::Cow;
    use std::time::Duration;

    const MAC_A: [u8; 6] = [0x00, 0x1b, 0x21, 0x3a, 0x4c, 0x01];
    const MAC_B: [u8; 6] = [0x00, 0x1b, 0x21, 0x3a, 0x4c, 0x02];
    const PSEUDO_MAC: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];

    fn payload(seed: u8, n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| seed.wrapping_add((i * 7) as u8) | 1)
            .collect()
    }

    /// A TCP/IPv4 frame from `a` to `b` (addresses and ports), MACs in that direction.
    fn tcp4(
        macs: [[u8; 6]; 2],
        a: ([u8; 4], u16),
        b: ([u8; 4], u16),
        seq: u32,
        data: &[u8],
    ) -> Vec<u8> {
        let pb = PacketBuilder::ethernet2(macs[0], macs[1])
            .ipv4(a.0, b.0, 64)
            .tcp(a.1, b.1, seq, 65000);
        let mut out = Vec::new();
        pb.write(&mut out, data).unwrap();
        out
    }

    fn udp6_vlan(
        macs: [[u8; 6]; 2],
        a: ([u8; 16], u16),
        b: ([u8; 16], u16),
        data: &[u8],
    ) -> Vec<u8> {
        let pb = PacketBuilder::ethernet2(macs[0], macs[1])
            .single_vlan(VlanId::try_new(42).unwrap())
            .ipv6(a.0, b.0, 64)
            .udp(a.1, b.1);
        let mut out = Vec::new();
        pb.write(&mut out, data).unwrap();
        out
    }

    fn udp4(macs: [[u8; 6]; 2], a: ([u8; 4], u16), b: ([u8; 4], u16), data: &[u8]) -> Vec<u8> {
        let pb = PacketBuilder::ethernet2(macs[0], macs[1])
            .ipv4(a.0, b.0, 64)
            .udp(a.1, b.1);
        let mut out = Vec::new();
        pb.write(&mut out, data).unwrap();
        out
    }

    fn v6(last: u8) -> [u8; 16] {
        let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        a[15] = last;
        a
    }

    fn pseudo6(n: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[15] = n;
        a
    }

    fn arp() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&MAC_A);
        f.extend_from_slice(&[0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[0u8; 20]);
        f
    }

    /// (captured bytes, original length)
    type Rec = (Vec<u8>, usize);

    fn write_pcap(path: &Path, recs: &[Rec]) {
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..Default::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        for (i, (d, orig)) in recs.iter().enumerate() {
            w.write_packet(&PcapPacket::new(
                Duration::from_millis(i as u64),
                *orig as u32,
                d,
            ))
            .unwrap();
        }
        std::fs::write(path, w.into_writer()).unwrap();
    }

    fn write_pcapng(path: &Path, recs: &[Rec]) {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0xffff,
            options: vec![],
        })
        .unwrap();
        for (i, (d, orig)) in recs.iter().enumerate() {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_millis(i as u64),
                original_len: *orig as u32,
                data: Cow::Borrowed(d),
                options: vec![],
            })
            .unwrap();
        }
        std::fs::write(path, w.into_inner()).unwrap();
    }

    fn full(f: Vec<u8>) -> Rec {
        let n = f.len();
        (f, n)
    }

    fn cut(f: &[u8], caplen: usize) -> Rec {
        (f[..caplen].to_vec(), f.len())
    }

    fn pad(mut v: Vec<u8>, len: usize) -> Vec<u8> {
        v.truncate(len);
        v.resize(len, 0);
        v
    }

    /// Read a written dataset back: (train images, train labels, test images, test labels).
    fn read_out(dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, usize) {
        let (_, len, tr) =
            super::super::read_idx_images(&dir.join("train-images-idx3-ubyte.gz")).unwrap();
        let trl = super::super::read_idx_labels(&dir.join("train-labels-idx1-ubyte.gz")).unwrap();
        let (_, _, te) =
            super::super::read_idx_images(&dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
        let tel = super::super::read_idx_labels(&dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
        (tr, trl, te, tel, len)
    }

    /// The split `from_pcap` must make of `expected` (class-major, file order).
    fn expected_files(
        expected: &[(u8, Vec<u8>)],
        classes: usize,
        o: &PcapOptions,
    ) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        let labels: Vec<u8> = expected.iter().map(|e| e.0).collect();
        let (keep, held) = stratified_split(&labels, classes, o.test_fraction, o.seed).unwrap();
        let cat = |idx: &[usize]| -> (Vec<u8>, Vec<u8>) {
            (
                idx.iter().flat_map(|&i| expected[i].1.clone()).collect(),
                idx.iter().map(|&i| expected[i].0).collect(),
            )
        };
        let (a, b) = cat(&keep);
        let (c, d) = cat(&held);
        (a, b, c, d)
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        input: PathBuf,
        out: PathBuf,
        // Frames of each session, as sent (client first).
        s1: Vec<Vec<u8>>,
        s1_payloads: Vec<Vec<u8>>,
        s2_payloads: Vec<Vec<u8>>,
        s4_payloads: Vec<Vec<u8>>,
        s5_payloads: Vec<Vec<u8>>,
        s5_cut_at: usize,
    }

    const C1: ([u8; 4], u16) = ([192, 168, 7, 20], 40000);
    const S1: ([u8; 4], u16) = ([93, 184, 216, 34], 443);

    /// Class "alpha" (a pcap): S1 TCP/IPv4 both ways, S2 UDP/IPv6 in a VLAN, S3 a TCP
    /// handshake without payload, an ARP frame, a frame cut inside its TCP header, and a record
    /// cut short at the end of the file. Class "beta" (a pcapng): S4 TCP/IPv4, S5 UDP/IPv4 with
    /// its second packet cut inside the payload, and S6, the same conversation as S4 between
    /// other hosts (a duplicate once anonymized).
    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("captures");
        let out = tmp.path().join("out");
        std::fs::create_dir_all(input.join("alpha")).unwrap();
        std::fs::create_dir_all(input.join("beta")).unwrap();
        let fwd = [MAC_A, MAC_B];
        let back = [MAC_B, MAC_A];

        let s1_payloads = vec![payload(1, 300), payload(2, 600), payload(3, 100)];
        let s1 = vec![
            tcp4(fwd, C1, S1, 1, &s1_payloads[0]),
            tcp4(back, S1, C1, 9, &s1_payloads[1]),
            tcp4(fwd, C1, S1, 301, &s1_payloads[2]),
        ];
        let (c2, s2) = ((v6(1), 5353u16), (v6(2), 53u16));
        let s2_payloads = vec![payload(4, 50), payload(5, 80)];
        let s2f = [
            udp6_vlan(fwd, c2, s2, &s2_payloads[0]),
            udp6_vlan(back, s2, c2, &s2_payloads[1]),
        ];
        let (c3, s3) = (([10, 9, 9, 9], 5000u16), ([10, 9, 9, 10], 80u16));
        let s3f = [tcp4(fwd, c3, s3, 1, &[]), tcp4(back, s3, c3, 1, &[])];
        let victim = tcp4(
            fwd,
            ([1, 1, 1, 1], 1),
            ([2, 2, 2, 2], 2),
            1,
            &payload(9, 40),
        );
        let alpha = vec![
            full(s1[0].clone()),
            full(arp()),
            full(s2f[0].clone()),
            full(s3f[0].clone()),
            full(s1[1].clone()),
            cut(&victim, 14 + 20 + 8),
            full(s2f[1].clone()),
            full(s3f[1].clone()),
            full(s1[2].clone()),
        ];
        let apath = input.join("alpha").join("a.pcap");
        write_pcap(&apath, &alpha);
        // A record cut short at the end (the capture was killed while writing).
        let mut bytes = std::fs::read(&apath).unwrap();
        let mut extra = Vec::new();
        extra.extend_from_slice(&0u32.to_le_bytes());
        extra.extend_from_slice(&0u32.to_le_bytes());
        extra.extend_from_slice(&100u32.to_le_bytes());
        extra.extend_from_slice(&100u32.to_le_bytes());
        extra.extend_from_slice(&[7u8; 30]);
        bytes.extend_from_slice(&extra);
        std::fs::write(&apath, bytes).unwrap();

        let (c4, s4) = (([172, 16, 0, 5], 51000u16), ([151, 101, 1, 1], 8443u16));
        let s4_payloads = vec![payload(11, 120), payload(12, 900)];
        let s4f = [
            tcp4(fwd, c4, s4, 1, &s4_payloads[0]),
            tcp4(back, s4, c4, 1, &s4_payloads[1]),
        ];
        let other = [[0x00, 0x50, 0x56, 0, 0, 9], [0x00, 0x50, 0x56, 0, 0, 8]];
        let (c6, s6) = (([172, 16, 0, 77], 51000u16), ([151, 101, 9, 9], 8443u16));
        let s6f = [
            tcp4(other, c6, s6, 1, &s4_payloads[0]),
            tcp4([other[1], other[0]], s6, c6, 1, &s4_payloads[1]),
        ];
        let (c5, s5) = (([172, 16, 0, 6], 6000u16), ([8, 8, 8, 8], 53u16));
        let s5_payloads = vec![payload(13, 60), payload(14, 200)];
        let s5f = [
            udp4(fwd, c5, s5, &s5_payloads[0]),
            udp4(back, s5, c5, &s5_payloads[1]),
        ];
        let s5_cut_at = 14 + 20 + 8 + 50;
        let beta = vec![
            full(s4f[0].clone()),
            full(s5f[0].clone()),
            full(s4f[1].clone()),
            cut(&s5f[1], s5_cut_at),
            full(s6f[0].clone()),
            full(s6f[1].clone()),
        ];
        write_pcapng(&input.join("beta").join("b.pcapng"), &beta);
        Fixture {
            _tmp: tmp,
            input,
            out,
            s1,
            s1_payloads,
            s2_payloads,
            s4_payloads,
            s5_payloads,
            s5_cut_at,
        }
    }

    #[test]
    fn l7_sessions_give_exactly_the_payload_bytes() {
        let fx = fixture();
        let mut o = PcapOptions::new(&fx.input, &fx.out);
        o.layers = Layers::L7;
        o.len = 784;
        o.test_fraction = 0.5;
        let rep = from_pcap(&o).unwrap();
        let cat = |p: &[Vec<u8>]| pad(p.concat(), 784);
        let mut s5 = fx.s5_payloads[0].clone();
        s5.extend_from_slice(&fx.s5_payloads[1][..fx.s5_cut_at - 42]);
        let expected = vec![
            (0u8, cat(&fx.s1_payloads)),
            (0, cat(&fx.s2_payloads)),
            (1, cat(&fx.s4_payloads)),
            (1, pad(s5, 784)),
        ];
        let (tr, trl, te, tel, len) = read_out(&fx.out);
        assert_eq!(len, 784);
        assert_eq!((tr, trl, te, tel), expected_files(&expected, 2, &o));
        // Counts: the ARP frame, the frame cut in its TCP header, the cut-short record.
        assert_eq!(rep.skipped.not_tcp_udp, 1);
        assert_eq!(rep.skipped.truncated, 1);
        assert_eq!(rep.cut_short.len(), 1, "{:?}", rep.cut_short);
        assert!(rep.cut_short[0].contains("a.pcap"));
        let a = &rep.classes[0];
        assert_eq!(
            (a.name.as_str(), a.sessions, a.empty, a.duplicates),
            ("alpha", 3, 1, 0)
        );
        let b = &rep.classes[1];
        assert_eq!(
            (b.name.as_str(), b.sessions, b.empty, b.duplicates),
            ("beta", 3, 0, 1)
        );
        let names = super::super::classes::read_class_names(&fx.out)
            .unwrap()
            .unwrap();
        assert_eq!(names, vec!["alpha".to_string(), "beta".to_string()]);
        // The dataset loads with the project's own reader.
        let splits = super::super::load_dir(&fx.out, &Default::default()).unwrap();
        assert_eq!(splits.train.n() + splits.test.n(), 4);
    }

    #[test]
    fn all_layers_anonymized_equal_frames_built_with_pseudonyms() {
        let fx = fixture();
        let mut o = PcapOptions::new(&fx.input, &fx.out);
        o.len = 1500;
        o.test_fraction = 0.4;
        let rep = from_pcap(&o).unwrap();
        let pm = PSEUDO_MAC;
        let pback = [pm[1], pm[0]];
        let (p1, p2) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let s1 = [
            tcp4(pm, (p1, C1.1), (p2, S1.1), 1, &fx.s1_payloads[0]),
            tcp4(pback, (p2, S1.1), (p1, C1.1), 9, &fx.s1_payloads[1]),
            tcp4(pm, (p1, C1.1), (p2, S1.1), 301, &fx.s1_payloads[2]),
        ];
        assert_eq!(s1[0].len(), fx.s1[0].len());
        let s2 = [
            udp6_vlan(pm, (pseudo6(1), 5353), (pseudo6(2), 53), &fx.s2_payloads[0]),
            udp6_vlan(
                pback,
                (pseudo6(2), 53),
                (pseudo6(1), 5353),
                &fx.s2_payloads[1],
            ),
        ];
        let s3 = [
            tcp4(pm, (p1, 5000), (p2, 80), 1, &[]),
            tcp4(pback, (p2, 80), (p1, 5000), 1, &[]),
        ];
        let s4 = [
            tcp4(pm, (p1, 51000), (p2, 8443), 1, &fx.s4_payloads[0]),
            tcp4(pback, (p2, 8443), (p1, 51000), 1, &fx.s4_payloads[1]),
        ];
        let mut s5b = udp4(pback, (p2, 53), (p1, 6000), &fx.s5_payloads[1]);
        // Cut inside the payload: the UDP checksum cannot be recomputed and is zeroed.
        s5b[14 + 20 + 6] = 0;
        s5b[14 + 20 + 7] = 0;
        s5b.truncate(fx.s5_cut_at);
        let s5 = [udp4(pm, (p1, 6000), (p2, 53), &fx.s5_payloads[0]), s5b];
        let expected = vec![
            (0u8, pad(s1.concat(), 1500)),
            (0, pad(s2.concat(), 1500)),
            (0, pad(s3.concat(), 1500)),
            (1, pad(s4.concat(), 1500)),
            (1, pad(s5.concat(), 1500)),
        ];
        let (tr, trl, te, tel, len) = read_out(&fx.out);
        assert_eq!(len, 1500);
        let want = expected_files(&expected, 2, &o);
        assert_eq!(trl, want.1);
        assert_eq!(tel, want.3);
        for (i, (a, b)) in tr.chunks(1500).zip(want.0.chunks(1500)).enumerate() {
            if let Some(k) = a.iter().zip(b).position(|(x, y)| x != y) {
                panic!(
                    "train sample {i} (label {}) differs at byte {k}: {:?} vs expected {:?}",
                    trl[i],
                    &a[k.saturating_sub(4)..k + 8],
                    &b[k.saturating_sub(4)..k + 8]
                );
            }
        }
        assert!(
            tr == want.0,
            "train images differ from the frames built with pseudonyms"
        );
        assert!(
            te == want.2,
            "test images differ from the frames built with pseudonyms"
        );
        // S6 is S4 between other hosts: identical once anonymized.
        assert_eq!(rep.classes[1].duplicates, 1);
        assert_eq!(rep.classes[0].empty, 0);
    }

    #[test]
    fn flows_split_directions_and_without_anonymizing_the_frames_are_kept() {
        let fx = fixture();
        let mut o = PcapOptions::new(&fx.input, &fx.out);
        o.by = Grouping::Flow;
        o.anonymize = false;
        o.len = 100;
        let rep = from_pcap(&o).unwrap();
        // alpha: S1 two flows, S2 two, S3 two; beta: S4 two, S5 two, S6 two (not duplicates:
        // the addresses differ).
        assert_eq!(rep.classes[0].sessions, 6);
        assert_eq!(rep.classes[1].sessions, 6);
        assert_eq!(rep.classes[1].duplicates, 0);
        let (tr, _, te, _, _) = read_out(&fx.out);
        let all: Vec<&[u8]> = tr.chunks(100).chain(te.chunks(100)).collect();
        // S1's client flow: its first frame (cut to 100 bytes), verbatim.
        assert!(all.contains(&&fx.s1[0][..100]));
    }

    #[test]
    fn conflicting_samples_are_dropped_and_max_per_class_caps() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        for c in ["x", "y"] {
            std::fs::create_dir_all(input.join(c)).unwrap();
        }
        let fwd = [MAC_A, MAC_B];
        let shared = tcp4(
            fwd,
            ([1, 0, 0, 1], 1000),
            ([1, 0, 0, 2], 80),
            1,
            &payload(50, 64),
        );
        let mut x = vec![full(shared.clone())];
        let mut y = vec![full(shared)];
        for i in 0..5u8 {
            x.push(full(tcp4(
                fwd,
                ([1, 0, 0, 1], 2000 + i as u16),
                ([1, 0, 0, 2], 80),
                1,
                &payload(i, 64),
            )));
            y.push(full(udp4(
                fwd,
                ([1, 0, 0, 1], 3000 + i as u16),
                ([1, 0, 0, 2], 53),
                &payload(100 + i, 64),
            )));
        }
        write_pcap(&input.join("x").join("x.pcap"), &x);
        write_pcapng(&input.join("y").join("y.pcapng"), &y);
        let mut o = PcapOptions::new(&input, tmp.path().join("out"));
        o.layers = Layers::L7;
        o.len = 64;
        o.max_per_class = Some(4);
        let rep = from_pcap(&o).unwrap();
        for c in &rep.classes {
            assert_eq!(
                (c.conflicting, c.capped, c.train + c.test),
                (1, 1, 4),
                "{c:?}"
            );
        }
    }

    #[test]
    fn bad_files_are_errors_naming_them() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        std::fs::create_dir_all(input.join("a")).unwrap();
        let bad = input.join("a").join("junk.pcap");
        std::fs::write(&bad, b"this is not a capture at all").unwrap();
        let e = format!(
            "{:#}",
            from_pcap(&PcapOptions::new(&input, tmp.path().join("o"))).unwrap_err()
        );
        assert!(e.contains("junk.pcap"), "{e}");
        std::fs::write(&bad, b"ab").unwrap();
        let e = format!(
            "{:#}",
            from_pcap(&PcapOptions::new(&input, tmp.path().join("o"))).unwrap_err()
        );
        assert!(e.contains("junk.pcap"), "{e}");
        // A pcapng whose section header is corrupt.
        std::fs::write(&bad, [0x0a, 0x0d, 0x0d, 0x0a, 0xff, 0xff, 0, 0, 1, 2, 3, 4]).unwrap();
        let e = format!(
            "{:#}",
            from_pcap(&PcapOptions::new(&input, tmp.path().join("o"))).unwrap_err()
        );
        assert!(e.contains("junk.pcap"), "{e}");
        // An empty class folder, and no class folders.
        std::fs::remove_file(&bad).unwrap();
        let e = format!(
            "{:#}",
            from_pcap(&PcapOptions::new(&input, tmp.path().join("o"))).unwrap_err()
        );
        assert!(e.contains("holds no .pcap"), "{e}");
        std::fs::remove_dir(input.join("a")).unwrap();
        let e = format!(
            "{:#}",
            from_pcap(&PcapOptions::new(&input, tmp.path().join("o"))).unwrap_err()
        );
        assert!(e.contains("no class folders"), "{e}");
    }

    /// Random bytes after a valid header never panic: records are counted or the file is cut.
    #[test]
    fn garbage_records_never_panic() {
        use rand::Rng;
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        std::fs::create_dir_all(input.join("a")).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for round in 0..20 {
            let recs: Vec<Rec> = (0..30)
                .map(|_| {
                    let n = rng.random_range(0..120);
                    let mut d: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                    if rng.random_bool(0.5) && d.len() > 14 {
                        d[12] = 0x08;
                        d[13] = if rng.random_bool(0.5) { 0x00 } else { 0xdd };
                        if d.len() > 14 {
                            d[14] = if d[13] == 0 { 0x45 } else { 0x60 };
                        }
                    }
                    let l = d.len();
                    (d, l)
                })
                .collect();
            let p = input.join("a").join("g.pcap");
            write_pcap(&p, &recs);
            let mut o = PcapOptions::new(&input, tmp.path().join(format!("o{round}")));
            o.layers = if round % 2 == 0 {
                Layers::All
            } else {
                Layers::L7
            };
            // Too few samples is an error; what matters is that nothing panics.
            let _ = from_pcap(&o);
        }
    }

    /// Debian's python3-dpkt ships small real captures (HTTP over IPv4 and IPv6, DNS and ICMP,
    /// captures cut short). Skipped, saying so, when the package is not installed
    /// (`scripts/test.sh` installs it).
    #[test]
    fn real_captures_from_python3_dpkt() {
        let src = Path::new("/usr/share/doc/python3-dpkt/examples/data");
        if !src.join("http.pcap").is_file() {
            eprintln!("SKIPPED real_captures_from_python3_dpkt: {} not found (apt-get install python3-dpkt)", src.display());
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        for (class, files) in [
            (
                "dns",
                &[
                    "dns_icmp.pcap",
                    "truncated_dns.pcap",
                    "truncated_dns_2.pcap",
                ][..],
            ),
            ("http", &["http.pcap", "nb6-http.pcap"][..]),
        ] {
            std::fs::create_dir_all(input.join(class)).unwrap();
            for f in files {
                std::fs::copy(src.join(f), input.join(class).join(f)).unwrap();
            }
        }
        let mut o = PcapOptions::new(&input, tmp.path().join("out"));
        o.by = Grouping::Flow;
        o.layers = Layers::L7;
        o.len = 256;
        o.test_fraction = 0.5;
        match from_pcap(&o) {
            Ok(rep) => {
                assert!(rep.packets > 0 && rep.packets_used > 0, "{rep}");
                let (tr, trl, te, tel, _) = read_out(&tmp.path().join("out"));
                // The HTTP class has the request and the response flows (payloads start with the
                // request and status lines), the DNS class none.
                let starts = |class: u8, prefix: &[u8]| {
                    tr.chunks(256)
                        .chain(te.chunks(256))
                        .zip(trl.iter().chain(&tel))
                        .filter(|(img, &l)| l == class && img.starts_with(prefix))
                        .count()
                };
                assert!(starts(1, b"GET ") >= 1 && starts(1, b"HTTP/") >= 1, "{rep}");
                assert_eq!(starts(0, b"GET ") + starts(0, b"HTTP/"), 0);
            }
            // Too few distinct flows in a class is a clear error, never a panic.
            Err(e) => assert!(format!("{e:#}").contains("at least 2 per class"), "{e:#}"),
        }
    }
}
