//! `nas verify --board-log FILE`: a board project's UART capture, checked against the model
//! being verified, and its measured cycles printed beside the emulator's count and the estimate.

use super::verify::thousands;
use crate::firmware::Verification;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// `--board-log`: read and check the capture, before any build.
pub(super) fn read(
    path: &Path,
    spec: &crate::net::NetSpec,
    dtype: crate::net::Dtype,
    target: &str,
) -> Result<crate::project::log::BoardLog> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read --board-log {}", path.display()))?;
    let log = crate::project::log::BoardLog::parse(&String::from_utf8_lossy(&bytes))
        .with_context(|| format!("--board-log {}", path.display()))?;
    let ours = crate::codegen::comment_safe(&spec.summary());
    if log.network != ours {
        bail!(
            "--board-log {} is a capture of another network ({}), not of this model ({ours})",
            path.display(),
            log.network
        );
    }
    if log.dtype() != Some(dtype.label()) {
        bail!(
            "--board-log {} is a capture of the {} kernel ({}), but this verifies the {} one \
             (--dtype)",
            path.display(),
            log.dtype().unwrap_or("unknown"),
            log.provenance,
            dtype.label()
        );
    }
    if !log.provenance.ends_with(&format!("target {target}")) {
        bail!(
            "--board-log {} is not a capture of a project for {target} ({}): pass its --target",
            path.display(),
            log.provenance
        );
    }
    Ok(log)
}

/// The board's figures beside the emulator's and the estimate's.
pub(super) fn table(log: &crate::project::log::BoardLog, path: &Path, v: &Verification) -> String {
    let mut s = String::new();
    let n = log.samples.len();
    let mean = log.mean_cycles();
    let (lo, hi) = (
        log.samples.iter().map(|x| x.cycles).min().unwrap_or(0),
        log.samples.iter().map(|x| x.cycles).max().unwrap_or(0),
    );
    let _ = writeln!(
        s,
        "\nboard log {}: {} at {} Hz ({}), cycles by {}, {n} samples",
        path.display(),
        log.board,
        thousands(log.clock_hz),
        log.clock_note,
        log.timer
    );
    let macs = v.primary.executed_macs.max(1) as f64;
    let _ = writeln!(
        s,
        "  measured on the board: {} cycles per inference (range {}–{}) = {:.3} ms, {:.2} cycles/executed MAC",
        thousands(mean.round() as u64),
        thousands(lo),
        thousands(hi),
        1e3 * mean / log.clock_hz.max(1) as f64,
        mean / macs
    );
    if let Some(em) = &v.primary.emulation {
        let _ = writeln!(
            s,
            "  against QEMU's {} instructions per inference: {:.3} cycles per instruction",
            thousands(em.instructions_per_inference),
            mean / em.instructions_per_inference.max(1) as f64
        );
        if let Some(c) = &em.cycles {
            let _ = writeln!(
                s,
                "  the cycle estimate from QEMU's instruction mix: {} cycles ({:+.1} % against the board)",
                thousands(c.cycles.round() as u64),
                100.0 * (c.cycles - mean) / mean.max(1.0)
            );
        }
    }
    if let (Some(est), Some(ms)) = (
        v.primary.estimate.instructions,
        v.primary.estimate.latency_ms,
    ) {
        let _ = writeln!(
            s,
            "  the cost model's latency: {} instructions, {:.3} ms at the profile's clock ({:+.1} % against the board)",
            thousands(est),
            ms,
            100.0 * (ms - 1e3 * mean / log.clock_hz.max(1) as f64) / (1e3 * mean / log.clock_hz.max(1) as f64).max(1e-9)
        );
    }
    let labelled: Vec<_> = log
        .samples
        .iter()
        .filter_map(|x| x.expected.map(|e| e == x.predicted))
        .collect();
    let _ = writeln!(
        s,
        "  the board agrees with the host reference on {}/{n} samples{}",
        log.agreeing(),
        if labelled.is_empty() {
            String::new()
        } else {
            format!(
                "; {}/{} classified as labelled",
                labelled.iter().filter(|c| **c).count(),
                labelled.len()
            )
        }
    );
    if !log.by_dwt() {
        let _ = writeln!(
            s,
            "  (no DWT cycle counter counted: SysTick did, which follows the host's clock under an \
             emulator: such cycles are not the chip's)"
        );
    }
    if log.clock_note.contains("did not lock") {
        let _ = writeln!(
            s,
            "  (the PLL did not lock: the board ran on its internal oscillator, not at the profile's clock)"
        );
    }
    s
}
