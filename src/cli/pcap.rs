//! `nas data from-pcap`: packet captures → an IDX dataset.

use crate::data::pcap::{from_pcap, Grouping, Layers, PcapOptions};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Input layout: DIR/<class name>/*.pcap|*.pcapng|*.cap (searched recursively).\n\
    Writes train-*/t10k-* IDX files (gzip) and classes.json, ready for `nas search --data OUT`.\n\n\
    Example (the paper's SessionL7 preprocessing):\n  \
    nas data from-pcap --input captures/ --out data/mine --by session --layers l7 --len 784"
)]
pub struct FromPcapArgs {
    /// Directory with one sub-folder of captures per class (the folder name is the class name)
    #[arg(long)]
    pub input: PathBuf,
    /// Output dataset directory
    #[arg(long)]
    pub out: PathBuf,
    /// Group packets into bidirectional sessions or one-direction flows (by 5-tuple)
    #[arg(long, value_enum, default_value_t = Grouping::Session)]
    pub by: Grouping,
    /// Bytes of each packet to keep: the whole frame, or the TCP/UDP payload only
    #[arg(long, value_enum, default_value_t = Layers::All)]
    pub layers: Layers,
    /// Sample length: the first LEN bytes of each session, zero-padded
    #[arg(long, default_value_t = 784)]
    pub len: usize,
    /// Replace MAC and IP addresses by per-session pseudonyms (default: on)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub anonymize: bool,
    /// Share of each class held out as the test split (stratified)
    #[arg(long, default_value_t = 0.1)]
    pub test_fraction: f64,
    /// Keep at most this many samples per class (a seeded random subset)
    #[arg(long)]
    pub max_per_class: Option<usize>,
    /// Seed of the subset and the split
    #[arg(long, default_value_t = crate::data::DEFAULT_SEED)]
    pub seed: u64,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: FromPcapArgs) -> Result<()> {
    let opts = PcapOptions {
        input: a.input,
        out: a.out,
        by: a.by,
        layers: a.layers,
        len: a.len,
        anonymize: a.anonymize,
        test_fraction: a.test_fraction,
        max_per_class: a.max_per_class,
        seed: a.seed,
        progress: !a.json,
    };
    let r = from_pcap(&opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{r}");
    }
    Ok(())
}
