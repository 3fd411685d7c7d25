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
    /// Packets that joined a session.
    pub packets_used: u64,
    /// The other packets, by reason.
    pub skipped: Skipped,
    /// Files of the class whose last record could not be read: `path: reason`.
    pub cut_short: Vec<String>,
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
    /// Symbolic links inside class folders that were not followed, with the reason.
    pub links_not_followed: Vec<String>,
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
        writeln!(f, "skipped packets: {}", self.skipped)?;
        for c in &self.cut_short {
            writeln!(f, "cut short: {c}")?;
        }
        const SHOWN: usize = 10;
        for l in self.links_not_followed.iter().take(SHOWN) {
            writeln!(f, "link not followed: {l}")?;
        }
        if self.links_not_followed.len() > SHOWN {
            writeln!(
                f,
                "... and {} more links not followed (--json lists them all)",
                self.links_not_followed.len() - SHOWN
            )?;
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

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} not TCP/UDP, {} fragments, {} truncated, {} corrupt, {} unsupported link type",
            self.not_tcp_udp, self.fragments, self.truncated, self.corrupt, self.unsupported_link
        )
    }
}

impl ClassReport {
    /// Where the class's packets went, for the error of a class left with too few samples:
    /// no readable packet, no packet that joined a session, or the sessions dropped.
    pub fn shortfall(&self) -> String {
        let files = match self.files {
            1 => "its file".to_string(),
            n => format!("its {n} files"),
        };
        let mut why = if self.packets == 0 {
            format!("{files} held no readable packet")
        } else if self.packets_used == 0 {
            format!(
                "none of the {} packets {files} held joined a TCP/UDP session (skipped: {})",
                self.packets, self.skipped
            )
        } else {
            format!(
                "the {} packets {files} held ({} used) made {} session(s): {} empty, {} duplicate, \
                 {} conflicting with another class, {} dropped by --max-per-class",
                self.packets,
                self.packets_used,
                self.sessions,
                self.empty,
                self.duplicates,
                self.conflicting,
                self.capped
            )
        };
        match self.cut_short.as_slice() {
            [] => {}
            [one] => why.push_str(&format!("; a file could not be read to the end: {one}")),
            [first, rest @ ..] => why.push_str(&format!(
                "; {} files could not be read to the end, e.g. {first}",
                rest.len() + 1
            )),
        }
        why
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
