//! The user's path from captures to a report, through the binary: `nas data from-pcap` on
//! captures built here, `data inspect` showing the class names, and `nas report` with its
//! errors. (The report's plots are checked in detail by the library's `report` tests.)

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .output()
        .expect("run nas")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `sessions` TCP sessions of three packets each, distinct payloads, in one pcap.
fn capture(path: &Path, sessions: u16, salt: u8) {
    let mut w = PcapWriter::with_header(Vec::new(), PcapHeader::default()).unwrap();
    for s in 0..sessions {
        for k in 0..3u8 {
            let pb = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(20000 + s, 443, k as u32, 1000);
            let payload: Vec<u8> = (0..200).map(|i| salt ^ (i as u8) ^ (s as u8) ^ k).collect();
            let mut f = Vec::new();
            pb.write(&mut f, &payload).unwrap();
            w.write_packet(&PcapPacket::new(Duration::ZERO, f.len() as u32, &f))
                .unwrap();
        }
    }
    std::fs::write(path, w.into_writer()).unwrap();
}

#[test]
fn from_pcap_then_inspect_shows_the_class_names() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("captures");
    for (class, salt) in [("browsing", 1u8), ("streaming", 77)] {
        std::fs::create_dir_all(input.join(class)).unwrap();
        capture(&input.join(class).join("c.pcap"), 10, salt);
    }
    let out = tmp.path().join("data");
    let o = nas(&[
        "data",
        "from-pcap",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--layers",
        "l7",
        "--len",
        "400",
        "--test-fraction",
        "0.2",
        "--max-per-class",
        "8",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["train"], 12);
    assert_eq!(r["test"], 4);
    assert_eq!(r["classes"][1]["name"], "streaming");
    assert_eq!(r["classes"][1]["capped"], 2);

    let o = nas(&["data", "inspect", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("browsing") && t.contains("streaming"), "{t}");
    assert!(t.contains("400 bytes"), "{t}");

    // Bad input: an error naming the file, no panic.
    std::fs::write(input.join("browsing").join("bad.pcap"), b"not a capture").unwrap();
    let o = nas(&[
        "data",
        "from-pcap",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("bad.pcap") && !t.contains("panicked"),
        "{t}"
    );
}

#[test]
fn report_of_a_directory_that_is_not_a_run_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let o = nas(&["report", "--run", tmp.path().to_str().unwrap()]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("not a run directory") && !t.contains("panicked"),
        "{t}"
    );
}
