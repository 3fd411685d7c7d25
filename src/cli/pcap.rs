//! `nas data from-pcap`: packet captures → an IDX dataset, with a progress bar on stderr.

use crate::data::pcap::{from_pcap_observed, Grouping, Layers, PcapOptions, PcapProgress, MAX_LEN};
use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Input layout: DIR/<class name>/*.pcap|*.pcapng|*.cap (searched recursively), at \
    least 2 classes.\n\
    A class folder may be a symbolic link; inside it, a link (to a folder or a file) is followed \
    only when it leads to a place inside the same class folder, and each folder and file is read \
    once, so link loops end and no capture is filed under a class it is not under. The links not \
    followed are listed.\n\
    Writes train-*/t10k-* IDX files (gzip) and classes.json, ready for `nas search --data OUT`, \
    into a new or empty OUT (--force replaces the dataset in a non-empty one).\n\n\
    Example (the paper's SessionL7 preprocessing):\n  \
    nas data from-pcap --input captures/ --out data/mine --by session --layers l7 --len 784"
)]
pub struct FromPcapArgs {
    /// Directory with one sub-folder of captures per class (the folder name is the class name)
    #[arg(long)]
    pub input: PathBuf,
    /// Output dataset directory: new or empty, unless --force
    #[arg(long)]
    pub out: PathBuf,
    /// Replace the dataset in a non-empty --out (its IDX files and classes.json; other files stay)
    #[arg(long)]
    pub force: bool,
    /// Group packets into bidirectional sessions or one-direction flows (by 5-tuple)
    #[arg(long, value_enum, default_value_t = Grouping::Session)]
    pub by: Grouping,
    /// Bytes of each packet to keep: the whole frame, or the TCP/UDP payload only
    #[arg(long, value_enum, default_value_t = Layers::All)]
    pub layers: Layers,
    /// Sample length: the first LEN bytes of each session, zero-padded (1 to 1048576, the
    /// longest input a network takes)
    #[arg(long, default_value_t = 784, value_parser = sample_len)]
    pub len: usize,
    /// Replace MAC and IP addresses by per-session pseudonyms (default: on)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub anonymize: bool,
    /// Share of each class held out as the test split (stratified)
    #[arg(long, default_value_t = 0.1)]
    pub test_fraction: f64,
    /// Keep at most this many samples per class (a seeded random subset; at least 1)
    #[arg(long, value_parser = super::at_least_one)]
    pub max_per_class: Option<usize>,
    /// Seed of the subset and the split
    #[arg(long, default_value_t = crate::data::DEFAULT_SEED)]
    pub seed: u64,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
}

/// A `--len`: 1 to [`MAX_LEN`].
fn sample_len(s: &str) -> std::result::Result<usize, String> {
    let n = super::at_least_one(s)?;
    if n > MAX_LEN {
        return Err(format!(
            "{n} is longer than any network's input: at most {MAX_LEN} bytes"
        ));
    }
    Ok(n)
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
        force: a.force,
    };
    let bar = progress_bar(!a.json);
    let r = from_pcap_observed(&opts, &mut |p| match p {
        PcapProgress::Reading { bytes, .. } => bar.set_length(bytes),
        PcapProgress::File { path, done } => {
            bar.set_message(path.display().to_string());
            bar.set_position(done);
        }
        PcapProgress::Read { done } => bar.set_position(done),
        PcapProgress::Writing => bar.finish_and_clear(),
    });
    bar.finish_and_clear();
    let r = r?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r)?)?;
    } else {
        outln!("{r}")?;
    }
    Ok(())
}

/// The bar over the input bytes, drawn on stderr only when `wanted` and stderr is a terminal.
fn progress_bar(wanted: bool) -> ProgressBar {
    use std::io::IsTerminal;
    let bar = ProgressBar::with_draw_target(
        Some(0),
        if wanted && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} ETA {eta}  {wide_msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
