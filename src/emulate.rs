//! Running `nas verify` firmware under `qemu-system-arm` and reading what it reports.
//!
//! The harness (`firmware/main.c`) prints lines starting with `@nas` through ARM semihosting
//! (QEMU writes them to its standard error) and exits with SYS_EXIT_EXTENDED, which becomes
//! QEMU's exit status.
//!
//! Instruction counting: QEMU runs with `-icount shift=N`, so its virtual clock advances exactly
//! 2^N ns per executed instruction. The firmware reads SysTick (clocked from that virtual clock,
//! extended past 24 bits by counting reloads) around each inference and around a calibration
//! loop of known length (2 instructions per iteration). Ticks per instruction follow from the
//! calibration, so no board clock needs to be known; with N = 6 a tick is at most one
//! instruction for any SysTick clock of 15.6 MHz or more (25 MHz on the MPS2 boards, 168 MHz on
//! netduinoplus2), and the count is exact to within one instruction plus the SysTick handler's
//! few instructions per reload (one reload per 1.5-10 M instructions). The cost of reading the
//! timer, measured by an empty bracket, is subtracted. DWT's cycle counter is not implemented
//! by QEMU, and Debian's QEMU ships no TCG plugins, hence this method.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The emulator binary.
pub const QEMU: &str = "qemu-system-arm";
/// `-icount shift`: 2^6 = 64 ns of virtual time per instruction.
pub const ICOUNT_SHIFT: u32 = 6;
/// How to install what `nas verify` needs.
pub const INSTALL_HINT: &str =
    "install the Arm cross toolchain and QEMU: `apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm`";

/// Check that QEMU is installed and knows `machine`.
pub fn check_qemu(machine: &str) -> Result<()> {
    let out = Command::new(QEMU)
        .args(["-machine", "help"])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {QEMU} ({e}); {INSTALL_HINT}"))?;
    if !out.status.success() {
        bail!("{QEMU} -machine help failed; {INSTALL_HINT}");
    }
    let list = String::from_utf8_lossy(&out.stdout);
    if !list
        .lines()
        .any(|l| l.split_whitespace().next() == Some(machine))
    {
        bail!("{QEMU} has no machine '{machine}' (see `{QEMU} -machine help`); the target profile's [emulator] machine must be one of them");
    }
    Ok(())
}

/// The raw outcome of one QEMU run.
#[derive(Debug, Clone)]
pub struct QemuRun {
    /// QEMU's exit status (`None` when killed on timeout or by a signal).
    pub status: Option<i32>,
    pub timed_out: bool,
    pub wall: Duration,
    /// Everything QEMU wrote to stdout and stderr (semihosting output included).
    pub output: String,
    /// The command line, for messages.
    pub command: String,
}

/// Run `elf` on `machine` with semihosting and instruction counting; kill it after `timeout`.
/// Output goes to files in `workdir` (no pipes to fill up).
pub fn run_qemu(elf: &Path, machine: &str, timeout: Duration, workdir: &Path) -> Result<QemuRun> {
    let out_path = workdir.join(format!("qemu-{machine}.log"));
    let out = std::fs::File::create(&out_path)
        .with_context(|| format!("cannot create {}", out_path.display()))?;
    let err = out.try_clone()?;
    let icount = format!("shift={ICOUNT_SHIFT}");
    let elf = elf.to_str().context("firmware path is not UTF-8")?;
    let args = [
        "-M",
        machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "null",
        "-icount",
        &icount,
        "-semihosting-config",
        "enable=on,target=native",
        "-kernel",
        elf,
    ];
    let command = format!("{QEMU} {}", args.join(" "));
    let start = Instant::now();
    let mut child = Command::new(QEMU)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {QEMU} ({e}); {INSTALL_HINT}"))?;
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = start.elapsed();
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    Ok(QemuRun {
        status: if timed_out { None } else { status.code() },
        timed_out,
        wall,
        output,
        command,
    })
}

/// One inference as the firmware reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inference {
    pub index: usize,
    /// SysTick ticks between the timer reads around the call.
    pub ticks: u64,
    /// Bit patterns of the logits.
    pub logits: Vec<u32>,
}

/// The calibration the firmware measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Calibration {
    pub n1: u64,
    pub ticks1: u64,
    pub n2: u64,
    pub ticks2: u64,
    /// Ticks of an empty bracket (reading the timer twice).
    pub empty_ticks: u64,
}

impl Calibration {
    /// SysTick ticks per executed instruction (the loop runs 2 instructions per iteration).
    pub fn ticks_per_instruction(&self) -> f64 {
        (self.ticks2 as f64 - self.ticks1 as f64) / (2.0 * (self.n2 as f64 - self.n1 as f64))
    }

    /// Instructions executed inside a bracket that measured `ticks`, the timer reads excluded.
    pub fn instructions(&self, ticks: u64) -> u64 {
        let t = ticks.saturating_sub(self.empty_ticks) as f64;
        (t / self.ticks_per_instruction()).round() as u64
    }
}

/// Everything the harness reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub samples: usize,
    pub input_len: usize,
    pub classes: usize,
    pub calibration: Calibration,
    pub inferences: Vec<Inference>,
    /// `model_predict` on sample 0.
    pub predicted: Option<u32>,
    /// Stack peak of one inference, in bytes.
    pub stack_peak_bytes: Option<u64>,
}

fn hex(tok: Option<&str>, what: &str) -> Result<u64> {
    let t = tok.with_context(|| format!("missing {what}"))?;
    u64::from_str_radix(t, 16).with_context(|| format!("bad {what} '{t}'"))
}

/// Parse the `@nas` lines of a run; fail with the run's output when it did not end cleanly.
pub fn parse(run: &QemuRun) -> Result<Report> {
    let tail = || {
        let lines: Vec<&str> = run.output.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    if run.timed_out {
        bail!(
            "the firmware did not finish within {:.0} s under QEMU ({}); output so far:\n{}",
            run.wall.as_secs_f64(),
            run.command,
            tail()
        );
    }
    if let Some(line) = run.output.lines().find(|l| l.starts_with("@nas fault")) {
        bail!(
            "the firmware faulted under QEMU ({line}: exception number in hex); output:\n{}",
            tail()
        );
    }
    let mut start = None;
    let mut cal = None;
    let mut inferences = Vec::new();
    let mut predicted = None;
    let mut stack = None;
    let mut ended = false;
    for line in run.output.lines().filter(|l| l.starts_with("@nas ")) {
        let mut t = line.split_whitespace().skip(1);
        let what = t.next().unwrap_or("");
        let ctx = || format!("malformed firmware output line '{line}'");
        match what {
            "start" => {
                let s = hex(t.next(), "samples").with_context(ctx)?;
                let l = hex(t.next(), "input length").with_context(ctx)?;
                let c = hex(t.next(), "classes").with_context(ctx)?;
                start = Some((s as usize, l as usize, c as usize));
            }
            "cal" => {
                let mut v = Vec::new();
                for _ in 0..8 {
                    v.push(hex(t.next(), "calibration").with_context(ctx)?);
                }
                cal = Some(Calibration {
                    n1: v[0],
                    ticks1: (v[1] << 32) | v[2],
                    n2: v[3],
                    ticks2: (v[4] << 32) | v[5],
                    empty_ticks: (v[6] << 32) | v[7],
                });
            }
            "out" => {
                let index = hex(t.next(), "index").with_context(ctx)? as usize;
                let hi = hex(t.next(), "ticks").with_context(ctx)?;
                let lo = hex(t.next(), "ticks").with_context(ctx)?;
                let logits = t
                    .map(|x| u32::from_str_radix(x, 16).with_context(ctx))
                    .collect::<Result<Vec<u32>>>()?;
                inferences.push(Inference {
                    index,
                    ticks: (hi << 32) | lo,
                    logits,
                });
            }
            "predict" => predicted = Some(hex(t.next(), "class").with_context(ctx)? as u32),
            "stack" => stack = Some(hex(t.next(), "stack bytes").with_context(ctx)?),
            "end" => ended = true,
            _ => {}
        }
    }
    let status = run.status.map_or("killed".to_string(), |s| s.to_string());
    if !ended || run.status != Some(0) {
        bail!(
            "the firmware did not run to its end under QEMU (exit status {status}; {}); output:\n{}",
            run.command,
            tail()
        );
    }
    let (samples, input_len, classes) = start.context("the firmware did not report its start")?;
    let calibration = cal.context("the firmware did not report its calibration")?;
    if calibration.ticks_per_instruction() <= 0.0 {
        bail!("instruction-count calibration failed: the timer did not advance ({calibration:?}); is SysTick running under QEMU's -icount?");
    }
    if inferences.len() != samples || inferences.iter().any(|i| i.logits.len() != classes) {
        bail!(
            "the firmware reported {} inferences for {samples} samples (or logits of the wrong length)",
            inferences.len()
        );
    }
    Ok(Report {
        samples,
        input_len,
        classes,
        calibration,
        inferences,
        predicted,
        stack_peak_bytes: stack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(output: &str, status: Option<i32>) -> QemuRun {
        QemuRun {
            status,
            timed_out: status.is_none(),
            wall: Duration::from_millis(10),
            output: output.to_string(),
            command: "qemu".into(),
        }
    }

    const GOOD: &str = "@nas start 00000002 00000310 00000002\n\
        @nas cal 000003e8 00000000 000054e2 00018a88 00000000 002124e1 00000000 000000c2\n\
        @nas out 00000000 00000000 000a312b 3f800000 00000000\n\
        @nas out 00000001 00000000 000a312a 00000000 bf800000\n\
        @nas predict 00000000\n@nas stack 00000014\n@nas end\n";

    #[test]
    fn parses_a_clean_run() {
        let r = parse(&run(GOOD, Some(0))).unwrap();
        assert_eq!((r.samples, r.input_len, r.classes), (2, 784, 2));
        assert_eq!(r.inferences[1].logits, vec![0, 0xbf80_0000]);
        assert_eq!(r.stack_peak_bytes, Some(20));
        // 200,000 instructions took 2,150,399 ticks: 10.752 per instruction (64 ns at 168 MHz).
        let tpi = r.calibration.ticks_per_instruction();
        assert!((tpi - 10.752).abs() < 1e-3, "{tpi}");
        assert_eq!(
            r.calibration.instructions(0xa312b),
            ((0xa312b - 0xc2) as f64 / tpi).round() as u64
        );
    }

    #[test]
    fn failures_are_reported_with_output() {
        let e = parse(&run("@nas start 1 1 1\n", Some(1)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exit status 1") && e.contains("@nas start"),
            "{e}"
        );
        let e = parse(&run("", None)).unwrap_err().to_string();
        assert!(e.contains("did not finish"), "{e}");
        let e = parse(&run("@nas fault 00000003\n", Some(3)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("faulted"), "{e}");
    }
}
