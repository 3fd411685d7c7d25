//! Sessions and flows: the packets of one capture file grouped by 5-tuple, each group's first
//! `len` bytes (whole frames, anonymized or not, or transport payloads only) collected in
//! order of first packet.

use super::anonymize::anonymize;
use super::frame::{Key, Link, PacketSink, Parsed, Pseudonyms, Skip};
use super::slice;
use super::{Grouping, Layers, PcapOptions, Skipped};
use std::collections::HashMap;

#[derive(Default)]
struct Session {
    data: Vec<u8>,
    /// Addresses seen so far, numbered for the pseudonyms.
    names: Pseudonyms,
}

/// The sessions of one capture file, in order of first packet.
pub(super) struct Sessions {
    by: Grouping,
    layers: Layers,
    len: usize,
    anonymize: bool,
    index: HashMap<Key, usize>,
    list: Vec<Session>,
    pub skipped: Skipped,
    pub used: u64,
    scratch: Vec<u8>,
}

impl Sessions {
    pub fn new(o: &PcapOptions) -> Sessions {
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

    fn add(&mut self, link: Link, frame: &[u8]) {
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
                    anonymize(&mut self.scratch, &p, &mut s.names);
                    s.data
                        .extend_from_slice(&self.scratch[..frame.len().min(room)]);
                } else {
                    s.data.extend_from_slice(&frame[..frame.len().min(room)]);
                }
            }
        }
    }

    /// The samples of this file, in order of first packet; `None` for empty sessions.
    pub fn finish(self) -> Vec<Option<Vec<u8>>> {
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

    /// Slices `frame`, counting it in [`Sessions::skipped`] when it cannot join a session.
    fn parse(&mut self, link: Link, frame: &[u8]) -> Option<Parsed> {
        match slice::parse(link, self.by, frame) {
            Ok(p) => Some(p),
            Err(why) => {
                let counter = match why {
                    Skip::NotTcpUdp => &mut self.skipped.not_tcp_udp,
                    Skip::Fragment => &mut self.skipped.fragments,
                    Skip::Truncated => &mut self.skipped.truncated,
                    Skip::Corrupt => &mut self.skipped.corrupt,
                };
                *counter += 1;
                None
            }
        }
    }
}

impl PacketSink for Sessions {
    fn packet(&mut self, link: Link, frame: &[u8]) {
        self.add(link, frame);
    }

    fn unsupported_link(&mut self) {
        self.skipped.unsupported_link += 1;
    }
}
