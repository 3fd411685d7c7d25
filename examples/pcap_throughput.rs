//! Throughput of `nas data from-pcap` on a large generated capture.
//!
//! `cargo run --release --example pcap_throughput -- [MEGABYTES]` (default 200) writes two
//! class folders of pcap files with many interleaved TCP and UDP sessions (IPv4 and IPv6,
//! packet sizes 60-1500 B) into a temporary directory, then converts them with `--layers all`
//! (anonymized) and with `--layers l7`, and prints MB/s for each.

use etherparse::PacketBuilder;
use nas::data::pcap::{from_pcap, Layers, PcapOptions};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let mb: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200);
    let tmp = tempfile::tempdir()?;
    let input = tmp.path().join("captures");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let payload: Vec<u8> = (0..1500).map(|_| rng.random()).collect();
    let per_class = mb * 1_000_000 / 2;
    for class in ["web", "voip"] {
        std::fs::create_dir_all(input.join(class))?;
        let file = std::fs::File::create(input.join(class).join("big.pcap"))?;
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..Default::default()
        };
        let mut w = PcapWriter::with_header(std::io::BufWriter::new(file), header)?;
        let mut written = 0u64;
        let mut frame = Vec::with_capacity(1600);
        let mut t = 0u64;
        while written < per_class {
            // 5,000 sessions alive at a time, each a few dozen packets.
            let s: u32 = rng.random_range(0..5_000) + (written / 4_000_000) as u32 * 5_000;
            let client = (s.to_be_bytes(), 1024 + (s % 60_000) as u16);
            let server = ([10, 0, (s % 7) as u8, 1], 443u16);
            let (a, b) = if rng.random_bool(0.5) {
                (client, server)
            } else {
                (server, client)
            };
            let n = rng.random_range(20..1400);
            frame.clear();
            let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
            if s % 5 == 0 {
                let mut a6 = [0u8; 16];
                a6[..4].copy_from_slice(&a.0);
                let mut b6 = [0u8; 16];
                b6[..4].copy_from_slice(&b.0);
                eth.ipv6(a6, b6, 64)
                    .udp(a.1, b.1)
                    .write(&mut frame, &payload[..n])?;
            } else {
                eth.ipv4(a.0, b.0, 64)
                    .tcp(a.1, b.1, t as u32, 65_000)
                    .write(&mut frame, &payload[..n])?;
            }
            t += 1;
            w.write_packet(&PcapPacket::new(
                Duration::from_micros(t),
                frame.len() as u32,
                &frame,
            ))?;
            written += 16 + frame.len() as u64;
        }
    }
    for (layers, name) in [(Layers::All, "all layers, anonymized"), (Layers::L7, "l7")] {
        let mut o = PcapOptions::new(&input, tmp.path().join(format!("out-{name}")));
        o.layers = layers;
        let r = from_pcap(&o)?;
        println!(
            "{name}: {:.1} MB, {} packets, {} samples in {:.2} s: {:.1} MB/s",
            r.bytes as f64 / 1e6,
            r.packets,
            r.train + r.test,
            r.seconds,
            r.mb_per_sec()
        );
    }
    Ok(())
}
