//! Anonymizing a frame: MAC and IP addresses replaced by pseudonyms numbered in order of
//! appearance within the session, and the checksums that cover them recomputed.

use super::frame::{Parsed, Pseudonyms};

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

/// Replace the addresses in `f` (a copy of the frame) by the session's pseudonyms `names`
/// (extended with the addresses it shows first) and fix the checksums that cover them.
pub(super) fn anonymize(f: &mut [u8], p: &Parsed, names: &mut Pseudonyms) {
    anonymize_macs(f, p, &mut names.macs);
    anonymize_ips(f, p, &mut names.ips);
    fix_transport_checksum(f, p);
}

/// The Ethernet source and destination (source first: the first sender gets pseudonym 1), or
/// a Linux cooked capture's address, become 02:00:00:00:00:n.
fn anonymize_macs(f: &mut [u8], p: &Parsed, macs: &mut Vec<[u8; 6]>) {
    let mac_pseudo = |n: u8| [0x02, 0, 0, 0, 0, n];
    if let Some(e) = p.eth {
        for at in [e + 6, e] {
            if let Some(m) = f.get(at..at + 6) {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(m);
                let n = number(macs, mac);
                f[at..at + 6].copy_from_slice(&mac_pseudo(n));
            }
        }
    }
    if let Some((at, l)) = p.sll_addr {
        if let Some(m) = f.get(at..at + l) {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&m[..6]);
            let n = number(macs, mac);
            f[at..at + 6].copy_from_slice(&mac_pseudo(n));
        }
    }
}

/// The IP source and destination become 10.0.0.n or fd00::n; the IPv4 header checksum is
/// recomputed.
fn anonymize_ips(f: &mut [u8], p: &Parsed, ips: &mut Vec<[u8; 16]>) {
    let ip = p.ip;
    if !p.key.v6 {
        for at in [ip + 12, ip + 16] {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&f[at..at + 4]);
            let n = number(ips, a);
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
            let n = number(ips, a);
            let mut pseudo = [0u8; 16];
            pseudo[0] = 0xfd;
            pseudo[15] = n;
            f[at..at + 16].copy_from_slice(&pseudo);
        }
    }
}

/// The TCP or UDP checksum over the new addresses: recomputed when the whole segment was
/// captured, else zero. Nothing changes when the checksum field itself was not captured.
fn fix_transport_checksum(f: &mut [u8], p: &Parsed) {
    let ip = p.ip;
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
