//! Slicing packets with `etherparse` (Ethernet with or without VLAN tags, Linux cooked
//! capture, BSD loopback, raw IP): the session key of a TCP or UDP packet over IPv4 or IPv6
//! and where its addresses, checksums and payload lie in the frame, or why it is skipped.

use super::frame::{Key, Link, Parsed, Skip};
use super::Grouping;
use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use std::ops::Range;

/// The IP layer of a packet.
struct NetLayer {
    v6: bool,
    /// Addresses (IPv4 in the first 4 bytes).
    src: [u8; 16],
    dst: [u8; 16],
    /// Offset and length of the IP header in the frame.
    ip: usize,
    header_len: usize,
    payload_incomplete: bool,
    fragmented: bool,
}

/// The TCP or UDP layer of a packet.
struct TransportLayer {
    proto: u8,
    src_port: u16,
    dst_port: u16,
    /// Offset of the transport header in the frame.
    start: usize,
    payload: Range<usize>,
    tcp: bool,
}

/// Slices `frame` of link type `link`; with [`Grouping::Session`] both directions get the same
/// key.
pub(super) fn parse(link: Link, by: Grouping, frame: &[u8]) -> Result<Parsed, Skip> {
    let sliced = slice(link, frame).ok_or(Skip::Corrupt)?;
    let (eth, sll_addr) = link_addresses(link, frame);
    let net = net_layer(&sliced, frame)?;
    if net.fragmented {
        return Err(Skip::Fragment);
    }
    let tr = transport_layer(&sliced, frame)?;
    let from = (net.src, tr.src_port);
    let to = (net.dst, tr.dst_port);
    let (a, b) = match by {
        Grouping::Session if to < from => (to, from),
        _ => (from, to),
    };
    Ok(Parsed {
        key: Key {
            proto: tr.proto,
            v6: net.v6,
            a,
            b,
        },
        segment_end: tr.payload.end,
        payload: tr.payload,
        eth,
        sll_addr,
        ip: net.ip,
        ip_header_len: net.header_len,
        transport: tr.start,
        tcp: tr.tcp,
        complete: !net.payload_incomplete,
    })
}

/// `etherparse`'s lax slicing of the frame, after the link-layer header.
fn slice(link: Link, frame: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    match link {
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
    }
}

/// Where the link-layer addresses lie: the Ethernet header's offset, and a Linux cooked
/// capture's 6-byte address (offset, length).
fn link_addresses(link: Link, frame: &[u8]) -> (Option<usize>, Option<(usize, usize)>) {
    match link {
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
    }
}

fn net_layer(sliced: &LaxSlicedPacket<'_>, frame: &[u8]) -> Result<NetLayer, Skip> {
    match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src[..4].copy_from_slice(&h.source());
            dst[..4].copy_from_slice(&h.destination());
            Ok(NetLayer {
                v6: false,
                src,
                dst,
                ip: offset(frame, h.slice()),
                header_len: h.slice().len(),
                payload_incomplete: v4.payload().incomplete,
                fragmented: v4.payload().fragmented,
            })
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            Ok(NetLayer {
                v6: true,
                src: h.source(),
                dst: h.destination(),
                ip: offset(frame, h.slice()),
                header_len: h.slice().len(),
                payload_incomplete: v6.payload().incomplete,
                fragmented: v6.payload().fragmented,
            })
        }
        _ if sliced.stop_err.is_some() => Err(Skip::Corrupt),
        _ => Err(Skip::NotTcpUdp),
    }
}

fn transport_layer(sliced: &LaxSlicedPacket<'_>, frame: &[u8]) -> Result<TransportLayer, Skip> {
    match &sliced.transport {
        Some(TransportSlice::Tcp(t)) => Ok(TransportLayer {
            proto: 6,
            src_port: t.source_port(),
            dst_port: t.destination_port(),
            start: offset(frame, t.slice()),
            payload: span(frame, t.payload()),
            tcp: true,
        }),
        Some(TransportSlice::Udp(u)) => Ok(TransportLayer {
            proto: 17,
            src_port: u.source_port(),
            dst_port: u.destination_port(),
            start: offset(frame, u.slice()),
            payload: span(frame, u.payload()),
            tcp: false,
        }),
        Some(_) => Err(Skip::NotTcpUdp),
        None => Err(no_transport(sliced)),
    }
}

/// Why an IP packet has no TCP or UDP slice: cut before the end of its TCP/UDP header,
/// corrupt, or another protocol.
fn no_transport(sliced: &LaxSlicedPacket<'_>) -> Skip {
    let ipn = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => v4.payload().ip_number.0,
        Some(LaxNetSlice::Ipv6(v6)) => v6.payload().ip_number.0,
        _ => 0,
    };
    if ipn == 6 || ipn == 17 {
        Skip::Truncated
    } else if sliced.stop_err.is_some() {
        Skip::Corrupt
    } else {
        Skip::NotTcpUdp
    }
}

/// Offset of `part` (a sub-slice of `frame`) in `frame`.
fn offset(frame: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - frame.as_ptr() as usize
}

/// Byte range of `part` (a sub-slice of `frame`) in `frame`.
fn span(frame: &[u8], part: &[u8]) -> Range<usize> {
    let start = offset(frame, part);
    start..start + part.len()
}
