//! Reading capture files: pcap and pcapng records (through `pcap-file`) and their link types.
//! Each packet goes to a [`PacketSink`]; how far the file has been read goes to a callback.

use super::frame::{Link, PacketSink};
use anyhow::{bail, Context, Result};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use std::io::Read;
use std::path::Path;

/// What reading one capture file found.
pub(super) struct FileStats {
    /// The file's size.
    pub bytes: u64,
    pub packets: u64,
    /// Why the file ended early, when a record could not be read.
    pub cut_short: Option<String>,
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// How often (in packets) the bytes read so far are reported.
const PROGRESS_EVERY: u64 = 4096;

/// Packets and bytes read from one file, reported every [`PROGRESS_EVERY`] packets.
struct ReadCounter<'a> {
    report: &'a mut dyn FnMut(u64),
    done: u64,
    packets: u64,
}

impl ReadCounter<'_> {
    /// One packet of `bytes` bytes (record header included) was read.
    fn tick(&mut self, bytes: u64) {
        self.done += bytes;
        self.packets += 1;
        if self.packets % PROGRESS_EVERY == 0 {
            (self.report)(self.done);
        }
    }
}

/// Reads one capture file into `sink`, telling `progress` every few thousand packets how many
/// of the file's bytes have been read.
pub(super) fn read_capture(
    path: &Path,
    sink: &mut dyn PacketSink,
    progress: &mut dyn FnMut(u64),
) -> Result<FileStats> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut f, &mut magic)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if got < 4 {
        bail!(
            "{}: not a capture file: {} bytes, shorter than any pcap or pcapng header",
            path.display(),
            got
        );
    }
    // pcap-file reads through its own 8 MB buffer.
    let reader = std::io::Cursor::new(magic).chain(f);
    let mut progress = ReadCounter {
        report: progress,
        done: 0,
        packets: 0,
    };
    let cut_short = if magic == PCAPNG_MAGIC {
        read_pcapng(reader, path, sink, &mut progress)?
    } else {
        read_pcap(reader, path, sink, &mut progress)?
    };
    Ok(FileStats {
        bytes: size,
        packets: progress.packets,
        cut_short,
    })
}

/// Reads the blocks of a pcapng file; returns why it ended early, if it did.
fn read_pcapng(
    reader: impl Read,
    path: &Path,
    sink: &mut dyn PacketSink,
    progress: &mut ReadCounter,
) -> Result<Option<String>> {
    let mut r = PcapNgReader::new(reader)
        .map_err(|e| anyhow::anyhow!("{}: not a valid pcapng file: {e}", path.display()))?;
    // Link types of the section's interfaces, by interface id.
    let mut links: Vec<DataLink> = r.interfaces().iter().map(|i| i.linktype).collect();
    loop {
        let block = match r.next_block() {
            None => return Ok(None),
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                return Ok(Some(format!(
                    "unreadable block after {} packets: {e}",
                    progress.packets
                )))
            }
        };
        let Some((iface, data)) = block_packet(&block, &mut links) else {
            continue;
        };
        match links.get(iface).copied().and_then(link_of) {
            Some(l) => sink.packet(l, data),
            None => sink.unsupported_link(),
        }
        progress.tick(data.len() as u64 + 32);
    }
}

/// The interface id and bytes of a packet block; `None` for the other blocks, after noting
/// the interfaces that section and interface blocks start or add.
fn block_packet<'b>(block: &'b Block, links: &mut Vec<DataLink>) -> Option<(usize, &'b [u8])> {
    match block {
        Block::SectionHeader(_) => {
            links.clear();
            None
        }
        Block::InterfaceDescription(i) => {
            links.push(i.linktype);
            None
        }
        Block::EnhancedPacket(p) => Some((p.interface_id as usize, p.data.as_ref())),
        Block::SimplePacket(p) => Some((0, p.data.as_ref())),
        Block::Packet(p) => Some((p.interface_id as usize, p.data.as_ref())),
        _ => None,
    }
}

/// Reads the records of a pcap file; returns why it ended early, if it did.
fn read_pcap(
    reader: impl Read,
    path: &Path,
    sink: &mut dyn PacketSink,
    progress: &mut ReadCounter,
) -> Result<Option<String>> {
    let mut r = PcapReader::new(reader).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a pcap or pcapng file (or its header is corrupt): {e}",
            path.display()
        )
    })?;
    let dl = r.header().datalink;
    let Some(link) = link_of(dl) else {
        bail!(
            "{}: link type {:?} is not supported (Ethernet, Linux cooked capture, BSD loopback \
             and raw IPv4/IPv6 are)",
            path.display(),
            dl
        );
    };
    // Raw records: pcap-file's checked packets reject `orig_len > snaplen`, which every
    // capture made with a short snap length has.
    loop {
        match r.next_raw_packet() {
            None => return Ok(None),
            Some(Ok(p)) => {
                sink.packet(link, &p.data);
                progress.tick(p.data.len() as u64 + 16);
            }
            Some(Err(e)) => {
                return Ok(Some(format!(
                    "unreadable record after {} packets: {e}",
                    progress.packets
                )))
            }
        }
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The [`Link`] of a capture's link type, when this reader slices it.
fn link_of(dl: DataLink) -> Option<Link> {
    Some(match dl {
        DataLink::ETHERNET => Link::Ethernet,
        DataLink::LINUX_SLL => Link::LinuxSll,
        DataLink::NULL | DataLink::LOOP => Link::Null,
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Link::Ip,
        _ => return None,
    })
}
