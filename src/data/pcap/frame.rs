//! The types the capture stages share, so that they depend one way: `read` hands frames of a
//! [`Link`] type to a [`PacketSink`]; `slice` turns a frame into a [`Parsed`] (its [`Key`] and
//! where its pieces lie) or a [`Skip`]; `anonymize` rewrites a frame with the [`Pseudonyms`] of
//! its session; `sessions` ties them together. This module depends on none of them.

use std::ops::Range;

/// Link types the reader slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    Ethernet,
    LinuxSll,
    /// BSD loopback: a 4-byte address family, then IP.
    Null,
    Ip,
}

/// Where the packets of a capture go, one at a time, as `read` finds them.
pub(super) trait PacketSink {
    /// A frame of link type `link`.
    fn packet(&mut self, link: Link, frame: &[u8]);
    /// A packet of a pcapng interface whose link type this reader does not slice.
    fn unsupported_link(&mut self);
}

/// One end of a connection: address (IPv4 in the first 4 bytes) and port.
pub(super) type Endpoint = ([u8; 16], u16);

/// What groups packets: the protocol and both ends (for sessions, in a fixed order).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub proto: u8,
    pub v6: bool,
    pub a: Endpoint,
    pub b: Endpoint,
}

/// What slicing a packet found: the key and where the pieces lie in the frame.
pub(super) struct Parsed {
    pub key: Key,
    /// Byte range of the transport payload within the frame.
    pub payload: Range<usize>,
    /// Where the addresses and checksums lie, for anonymizing.
    pub eth: Option<usize>,
    pub sll_addr: Option<(usize, usize)>,
    pub ip: usize,
    pub ip_header_len: usize,
    pub transport: usize,
    pub tcp: bool,
    /// The whole transport segment was captured (its checksum can be recomputed).
    pub complete: bool,
    pub segment_end: usize,
}

/// Why a packet joins no session (the counters of [`super::Skipped`]).
pub(super) enum Skip {
    NotTcpUdp,
    Fragment,
    Truncated,
    Corrupt,
}

/// The addresses one session has shown so far, in order of appearance: the pseudonym of an
/// address is its 1-based position here.
#[derive(Default)]
pub(super) struct Pseudonyms {
    pub macs: Vec<[u8; 6]>,
    pub ips: Vec<[u8; 16]>,
}
