//! Unit tests of the capture → IDX conversion: captures built here (pcap and pcapng, cut
//! records, VLANs, IPv6) and, when installed, the python3-dpkt example captures.

use super::super::stratified_split;
use super::*;
use etherparse::{PacketBuilder, VlanId};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
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

fn udp6_vlan(macs: [[u8; 6]; 2], a: ([u8; 16], u16), b: ([u8; 16], u16), data: &[u8]) -> Vec<u8> {
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

/// `n` one-packet TCP sessions with distinct ports and payloads (`salt` tells classes apart).
fn sessions(n: u16, salt: u8) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            full(tcp4(
                [MAC_A, MAC_B],
                ([10, 1, 0, 1], 30000 + i),
                ([10, 1, 0, 2], 443),
                1,
                &payload(salt.wrapping_mul(31).wrapping_add(i as u8), 80),
            ))
        })
        .collect()
}

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
    let (_, _, te) = super::super::read_idx_images(&dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
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
    std::fs::create_dir_all(input.join("b")).unwrap();
    write_pcap(&input.join("b").join("good.pcap"), &sessions(4, 1));
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
    std::fs::remove_dir_all(input.join("b")).unwrap();
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
    std::fs::create_dir_all(input.join("b")).unwrap();
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
        write_pcap(&input.join("a").join("g.pcap"), &recs[..15]);
        write_pcap(&input.join("b").join("g.pcap"), &recs[15..]);
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
        eprintln!(
            "SKIPPED real_captures_from_python3_dpkt: {} not found (apt-get install python3-dpkt)",
            src.display()
        );
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

/// Two classes, `a` (3 sessions) and `b` (4 sessions), one capture each, under `tmp/in`.
fn two_classes(tmp: &Path) -> PathBuf {
    let input = tmp.join("in");
    for (class, n, salt) in [("a", 3, 1), ("b", 4, 2)] {
        std::fs::create_dir_all(input.join(class)).unwrap();
        write_pcap(
            &input.join(class).join(format!("{class}.pcap")),
            &sessions(n, salt),
        );
    }
    input
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_default();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

/// Link loops (`a/up -> ..`, `b/side -> ../a`, `a/self -> .`, a folder linking back to its
/// parent), a second link to a capture and a link to another class's capture: the walk ends,
/// every capture is read once, and under the class it lies in.
#[cfg(unix)]
#[test]
fn symlink_loops_end_and_no_capture_is_read_twice_or_misfiled() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let input = two_classes(tmp.path());
    let clean = from_pcap(&PcapOptions::new(&input, tmp.path().join("clean"))).unwrap();
    let (a, b) = (input.join("a"), input.join("b"));
    symlink("..", a.join("up")).unwrap();
    symlink("../a", b.join("side")).unwrap();
    symlink(".", a.join("self")).unwrap();
    symlink("a.pcap", a.join("again.pcap")).unwrap();
    std::fs::create_dir(a.join("sub")).unwrap();
    symlink("..", a.join("sub").join("back")).unwrap();
    symlink("../a/a.pcap", b.join("stolen.pcap")).unwrap();
    symlink("nowhere.pcap", b.join("dangling.pcap")).unwrap();
    let started = std::time::Instant::now();
    let rep = from_pcap(&PcapOptions::new(&input, tmp.path().join("out"))).unwrap();
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
    assert_eq!(rep.files, 2, "{rep}");
    for (got, want) in rep.classes.iter().zip(&clean.classes) {
        assert_eq!(
            (got.files, got.packets, got.sessions, got.train + got.test),
            (
                want.files,
                want.packets,
                want.sessions,
                want.train + want.test
            ),
            "{rep}"
        );
    }
    assert_eq!(rep.packets, clean.packets);
    let not_followed = rep.links_not_followed.join("\n");
    for link in [
        "up",
        "side",
        "self",
        "again.pcap",
        "back",
        "stolen.pcap",
        "dangling.pcap",
    ] {
        assert!(
            not_followed.contains(link),
            "{link} missing in:\n{not_followed}"
        );
    }
    assert!(
        format!("{rep}").contains("link not followed"),
        "the summary lists them: {rep}"
    );
}

/// A link inside a class that stays inside it is followed (once); a class folder may itself
/// be a link to captures elsewhere.
#[cfg(unix)]
#[test]
fn links_inside_a_class_and_linked_class_folders_are_followed() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let input = two_classes(tmp.path());
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("deep")).unwrap();
    write_pcap(&elsewhere.join("deep").join("c.pcap"), &sessions(3, 3));
    symlink(&elsewhere, input.join("c")).unwrap();
    std::fs::create_dir(input.join("a").join("more")).unwrap();
    write_pcap(
        &input.join("a").join("more").join("m.pcap"),
        &sessions(2, 4),
    );
    symlink("more", input.join("a").join("shortcut")).unwrap();
    let rep = from_pcap(&PcapOptions::new(&input, tmp.path().join("out"))).unwrap();
    let files: Vec<usize> = rep.classes.iter().map(|c| c.files).collect();
    assert_eq!(files, vec![2, 1, 1], "{rep}");
    assert_eq!(rep.classes[2].name, "c");
    assert_eq!(rep.classes[2].train + rep.classes[2].test, 3, "{rep}");
    assert_eq!(
        rep.links_not_followed.len(),
        1,
        "{:?}",
        rep.links_not_followed
    );
    assert!(rep.links_not_followed[0].contains("shortcut"));
}

/// A class folder that leads to the input (or above it), or into another class, is an error
/// before any capture is read.
#[cfg(unix)]
#[test]
fn class_folders_that_hold_the_input_or_overlap_are_errors() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let input = two_classes(tmp.path());
    let out = tmp.path().join("out");
    symlink(".", input.join("loop")).unwrap();
    let e = format!(
        "{:#}",
        from_pcap(&PcapOptions::new(&input, &out)).unwrap_err()
    );
    assert!(
        e.contains("loop") && e.contains("holds the input folder"),
        "{e}"
    );
    std::fs::remove_file(input.join("loop")).unwrap();
    symlink("/", input.join("root")).unwrap();
    let e = format!(
        "{:#}",
        from_pcap(&PcapOptions::new(&input, &out)).unwrap_err()
    );
    assert!(
        e.contains("root") && e.contains("holds the input folder"),
        "{e}"
    );
    std::fs::remove_file(input.join("root")).unwrap();
    symlink("a", input.join("z")).unwrap();
    let e = format!(
        "{:#}",
        from_pcap(&PcapOptions::new(&input, &out)).unwrap_err()
    );
    assert!(e.contains("overlap"), "{e}");
    assert!(!out.exists(), "nothing is written");
}

/// `--len` beyond the longest network input is refused at once, before any capture is read.
#[test]
fn len_longer_than_a_network_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let input = two_classes(tmp.path());
    let out = tmp.path().join("out");
    let mut o = PcapOptions::new(&input, &out);
    o.len = 100_000_000;
    let started = std::time::Instant::now();
    let e = format!("{:#}", from_pcap(&o).unwrap_err());
    assert!(started.elapsed().as_secs() < 5);
    assert!(
        e.contains("--len 100000000") && e.contains(&format!("at most {MAX_LEN}")),
        "{e}"
    );
    assert!(!out.exists());
    o.len = MAX_LEN;
    from_pcap(&o).unwrap();
}

/// A non-empty `--out` is refused (and left as it was); `force` replaces the dataset in it,
/// old IDX files of other names included, and leaves other files alone.
#[test]
fn non_empty_out_is_refused_and_force_replaces_the_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let input = two_classes(tmp.path());
    let out = tmp.path().join("out");
    let mut o = PcapOptions::new(&input, &out);
    o.len = 100;
    from_pcap(&o).unwrap();
    // An old raw IDX file (the loader prefers it over the new .gz), a note of the user's and
    // a staging folder of a killed conversion.
    std::fs::write(out.join("train-images-idx3-ubyte"), b"old").unwrap();
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    std::fs::create_dir(out.join(".nas-from-pcap-4000000000")).unwrap();
    // A link named like a dataset file: the link goes, what it leads to stays.
    let theirs = tmp.path().join("theirs");
    std::fs::write(&theirs, b"keep").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&theirs, out.join("t10k-images-idx3-ubyte")).unwrap();
    let before = snapshot(&out);
    o.len = 64;
    let e = format!("{:#}", from_pcap(&o).unwrap_err());
    assert!(e.contains("not empty") && e.contains("--force"), "{e}");
    assert_eq!(
        snapshot(&out),
        before,
        "a refused conversion changes nothing"
    );

    o.force = true;
    let rep = from_pcap(&o).unwrap();
    assert!(!out.join("train-images-idx3-ubyte").exists());
    assert!(std::fs::symlink_metadata(out.join("t10k-images-idx3-ubyte")).is_err());
    assert_eq!(std::fs::read(&theirs).unwrap(), b"keep");
    assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"mine");
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "no staging folder is left: {names:?}");
    let splits = super::super::load_dir(&out, &Default::default()).unwrap();
    assert_eq!(splits.train.n() + splits.test.n(), rep.train + rep.test);
    assert_eq!(
        read_out(&out).4,
        64,
        "the new samples are read, not the old ones"
    );
}

/// A conversion that fails after reading (here: a class with too few samples) leaves no
/// trace: a new `--out` is not created, an existing one keeps its dataset.
#[test]
fn a_failed_conversion_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let input = two_classes(tmp.path());
    write_pcap(&input.join("a").join("a.pcap"), &sessions(1, 1));
    let out = tmp.path().join("new").join("out");
    let e = format!(
        "{:#}",
        from_pcap(&PcapOptions::new(&input, &out)).unwrap_err()
    );
    assert!(e.contains("at least 2 per class"), "{e}");
    assert!(!out.exists(), "{e}");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("t10k-labels-idx1-ubyte.gz"), b"old").unwrap();
    let before = snapshot(&out);
    let mut o = PcapOptions::new(&input, &out);
    o.force = true;
    from_pcap(&o).unwrap_err();
    assert_eq!(snapshot(&out), before);
}

/// A class whose captures give no sample says why: no readable packet (and which file could
/// not be read), or no packet joining a session (and what they were).
#[test]
fn too_few_samples_say_where_the_packets_went() {
    let tmp = tempfile::tempdir().unwrap();
    let input = two_classes(tmp.path());
    let out = tmp.path().join("out");
    // A valid header, then a record claiming 4 GB.
    let a = input.join("a").join("a.pcap");
    write_pcap(&a, &[]);
    let mut bytes = std::fs::read(&a).unwrap();
    for v in [0u32, 0, u32::MAX, u32::MAX] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.extend_from_slice(&[0xab; 64]);
    std::fs::write(&a, bytes).unwrap();
    let e = format!(
        "{:#}",
        from_pcap(&PcapOptions::new(&input, &out)).unwrap_err()
    );
    assert!(
        e.contains("no readable packet") && e.contains("could not be read to the end"),
        "{e}"
    );
    assert!(
        e.contains("a.pcap: unreadable record after 0 packets"),
        "{e}"
    );
    // Only ARP frames.
    write_pcap(&a, &[full(arp()), full(arp())]);
    let e = format!(
        "{:#}",
        from_pcap(&PcapOptions::new(&input, &out)).unwrap_err()
    );
    assert!(
        e.contains("none of the 2 packets") && e.contains("2 not TCP/UDP"),
        "{e}"
    );
    // Sessions, all empty under l7.
    write_pcap(
        &a,
        &[
            full(tcp4([MAC_A, MAC_B], C1, S1, 1, &[])),
            full(tcp4([MAC_B, MAC_A], S1, C1, 1, &[])),
        ],
    );
    let mut o = PcapOptions::new(&input, &out);
    o.layers = Layers::L7;
    let e = format!("{:#}", from_pcap(&o).unwrap_err());
    assert!(e.contains("made 1 session(s): 1 empty"), "{e}");
    assert!(!out.exists());
}

/// One class folder is refused before anything is read, naming the class.
#[test]
fn one_class_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let input = two_classes(tmp.path());
    std::fs::remove_dir_all(input.join("b")).unwrap();
    let out = tmp.path().join("out");
    let e = format!(
        "{:#}",
        from_pcap(&PcapOptions::new(&input, &out)).unwrap_err()
    );
    assert!(
        e.contains("one class folder, \"a\"") && e.contains("at least 2 classes"),
        "{e}"
    );
    assert!(!out.exists());
}

/// The observer hears the input's size, each file, and the end of reading; the stage itself
/// prints nothing.
#[test]
fn the_observer_hears_each_file() {
    let tmp = tempfile::tempdir().unwrap();
    let input = two_classes(tmp.path());
    let mut events = Vec::new();
    let rep = from_pcap_observed(
        &PcapOptions::new(&input, tmp.path().join("out")),
        &mut |p| {
            events.push(match p {
                PcapProgress::Reading { files, bytes } => format!("reading {files} {bytes}"),
                PcapProgress::File { path, done } => format!(
                    "file {} {done}",
                    path.file_name().unwrap().to_string_lossy()
                ),
                PcapProgress::Read { done } => format!("read {done}"),
                PcapProgress::Writing => "writing".to_string(),
            })
        },
    )
    .unwrap();
    let size_a = std::fs::metadata(input.join("a").join("a.pcap"))
        .unwrap()
        .len();
    let want = vec![
        format!("reading 2 {}", rep.bytes),
        "file a.pcap 0".to_string(),
        format!("read {size_a}"),
        format!("file b.pcap {size_a}"),
        format!("read {}", rep.bytes),
        "writing".to_string(),
    ];
    assert_eq!(events, want);
}
