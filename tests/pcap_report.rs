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

/// `captures/<class>/c.pcap` under `dir`, one capture of `sessions` sessions per class (the
/// salt makes each class's bytes its own); returns the captures folder.
fn captures(dir: &Path, classes: [(&str, u8); 2], sessions: u16) -> std::path::PathBuf {
    let input = dir.join("captures");
    for (class, salt) in classes {
        std::fs::create_dir_all(input.join(class)).unwrap();
        capture(&input.join(class).join("c.pcap"), sessions, salt);
    }
    input
}

#[test]
fn from_pcap_then_inspect_shows_the_class_names() {
    let tmp = tempfile::tempdir().unwrap();
    let input = captures(tmp.path(), [("browsing", 1), ("streaming", 77)], 10);
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

    // Bad input: an error naming the file, no panic, and the dataset already there intact.
    let before = std::fs::read(out.join("classes.json")).unwrap();
    std::fs::write(input.join("browsing").join("bad.pcap"), b"not a capture").unwrap();
    let o = nas(&[
        "data",
        "from-pcap",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--force",
    ]);
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("bad.pcap") && !t.contains("panicked"),
        "{t}"
    );
    assert_eq!(std::fs::read(out.join("classes.json")).unwrap(), before);
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

/// The command line refuses what would make no dataset, before reading anything: a `--len`
/// no network takes, `--max-per-class 0`, `--limit-per-class 0` (search and train), and a
/// non-empty `--out` without `--force`.
#[test]
fn bad_counts_and_a_non_empty_out_are_refused_with_the_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let input = captures(tmp.path(), [("x", 3), ("y", 99)], 4);
    let out = tmp.path().join("data");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let base = ["data", "from-pcap", "--input", i, "--out", o];
    for (extra, says) in [
        (&["--len", "100000000"][..], "at most 1048576"),
        (&["--len", "0"][..], "at least 1"),
        (&["--max-per-class", "0"][..], "at least 1"),
    ] {
        let r = nas(&[&base[..], extra].concat());
        let t = text(&r);
        assert_eq!(r.status.code(), Some(2), "{extra:?}: {t}");
        assert!(
            t.contains(says) && !t.contains("panicked"),
            "{extra:?}: {t}"
        );
        assert!(!out.exists(), "{extra:?}");
    }
    for cmd in ["search", "train"] {
        let r = nas(&[cmd, "--data", o, "--limit-per-class", "0"]);
        let t = text(&r);
        assert_eq!(r.status.code(), Some(2), "{cmd}: {t}");
        assert!(
            t.contains("--limit-per-class") && t.contains("at least 1"),
            "{cmd}: {t}"
        );
    }

    let r = nas(&base);
    assert!(r.status.success(), "{}", text(&r));
    let before = std::fs::read(out.join("classes.json")).unwrap();
    let r = nas(&[&base[..], &["--len", "64"]].concat());
    let t = text(&r);
    assert!(
        !r.status.success() && t.contains("not empty") && t.contains("--force"),
        "{t}"
    );
    assert_eq!(std::fs::read(out.join("classes.json")).unwrap(), before);
    let r = nas(&[&base[..], &["--len", "64", "--force"]].concat());
    assert!(r.status.success(), "{}", text(&r));
    let r = nas(&["data", "inspect", o]);
    assert!(text(&r).contains("64 bytes"), "{}", text(&r));
}

/// A symlink loop in the capture tree ends, and the summary names the links not followed.
#[cfg(unix)]
#[test]
fn a_symlink_loop_in_the_captures_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let input = captures(tmp.path(), [("a", 5), ("b", 9)], 4);
    std::os::unix::fs::symlink("..", input.join("a").join("up")).unwrap();
    std::os::unix::fs::symlink("../a", input.join("b").join("side")).unwrap();
    let out = tmp.path().join("data");
    let r = nas(&[
        "data",
        "from-pcap",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(r.status.success(), "{}", text(&r));
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(j["files"], 2);
    assert_eq!(j["classes"][0]["packets"], 12);
    assert_eq!(j["links_not_followed"].as_array().unwrap().len(), 2, "{j}");
}
