//! What a conversion did: packets skipped by reason, per-class counts, and the summary that
//! `nas data from-pcap` prints (or writes as JSON).

use super::PcapOptions;
use serde::Serialize;

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

/// What [`from_pcap`](super::from_pcap) did.
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

impl Skipped {
    /// Adds the counts of `s` to these.
    pub(super) fn add(&mut self, s: &Skipped) {
        self.not_tcp_udp += s.not_tcp_udp;
        self.fragments += s.fragments;
        self.truncated += s.truncated;
        self.corrupt += s.corrupt;
        self.unsupported_link += s.unsupported_link;
    }
}
