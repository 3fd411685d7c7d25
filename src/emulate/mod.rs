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
//! by QEMU, hence this method. The executed instruction mix, and the cycles it would take on the
//! core, come from a second run with nas's own TCG plugin ([`mix`]).

pub mod mix;

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

/// QEMU's arguments to run `elf` on `machine`: no display, monitor or serial port, semihosting
/// to the host (the harness's output and exit status).
pub(crate) fn machine_args(machine: &str, elf: &Path) -> Result<Vec<String>> {
    let elf = elf.to_str().context("firmware path is not UTF-8")?;
    Ok([
        "-M",
        machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "null",
        "-semihosting-config",
        "enable=on,target=native",
        "-kernel",
        elf,
    ]
    .map(str::to_string)
    .to_vec())
}

/// Run `elf` on `machine` with semihosting and instruction counting; kill it after `timeout`.
/// Output goes to files in `workdir` (no pipes to fill up).
pub fn run_qemu(elf: &Path, machine: &str, timeout: Duration, workdir: &Path) -> Result<QemuRun> {
    let out_path = workdir.join(format!("qemu-{machine}.log"));
    let out = std::fs::File::create(&out_path)
        .with_context(|| format!("cannot create {}", out_path.display()))?;
    let err = out.try_clone()?;
    let mut args = machine_args(machine, elf)?;
    args.extend(["-icount".to_string(), format!("shift={ICOUNT_SHIFT}")]);
    let command = format!("{QEMU} {}", args.join(" "));
    let start = Instant::now();
    let mut child = Command::new(QEMU)
        .args(args)
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

/// Instructions of the firmware's SysTick handler, run once per timer reload.
pub const SYSTICK_HANDLER_INSTRUCTIONS: u64 = 5;

/// Two timer readings around a measured piece of code: ticks since the timer started, the
/// reloads in bits 24 and up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    pub fn ticks(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    /// SysTick reloads (handler runs) inside the span.
    pub fn reloads(&self) -> u64 {
        (self.end >> 24).saturating_sub(self.start >> 24)
    }
}

/// One inference as the firmware reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inference {
    pub index: usize,
    /// Timer readings around the call.
    pub span: Span,
    /// Bit patterns of the logits.
    pub logits: Vec<u32>,
}

/// The calibration the firmware measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Calibration {
    /// `spin(n1)`: 2 × n1 instructions in the loop.
    pub n1: u64,
    pub spin1: Span,
    pub n2: u64,
    pub spin2: Span,
    /// Reading the timer twice.
    pub empty: Span,
}

impl Calibration {
    /// SysTick ticks per executed instruction: the two spins differ by 2 × (n2 − n1) loop
    /// instructions (and by the handler's instructions, should a reload fall in one of them).
    pub fn ticks_per_instruction(&self) -> f64 {
        let handler = SYSTICK_HANDLER_INSTRUCTIONS as f64;
        let dt = self.spin2.ticks() as f64 - self.spin1.ticks() as f64;
        let di = 2.0 * (self.n2 as f64 - self.n1 as f64)
            + handler * (self.spin2.reloads() as f64 - self.spin1.reloads() as f64);
        dt / di
    }

    /// Instructions executed inside `span`, without the timer reads and the SysTick handler.
    pub fn instructions(&self, span: Span) -> u64 {
        let r = self.ticks_per_instruction();
        let handler = SYSTICK_HANDLER_INSTRUCTIONS as f64;
        let own = |s: Span| s.ticks() as f64 / r - handler * s.reloads() as f64;
        (own(span) - own(self.empty)).round().max(0.0) as u64
    }
}

/// Everything the harness reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HarnessOutput {
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

/// The last lines of a run's output, for messages.
fn output_tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// What the `@nas` lines of a run said, before it is checked to be complete.
#[derive(Default)]
struct Reported {
    /// Samples, input length and classes.
    start: Option<(usize, usize, usize)>,
    cal: Option<Calibration>,
    inferences: Vec<Inference>,
    predicted: Option<u32>,
    stack: Option<u64>,
    ended: bool,
}

impl Reported {
    /// Read the `@nas` lines of `output`.
    fn read(output: &str) -> Result<Reported> {
        let mut r = Reported::default();
        for line in output.lines().filter(|l| l.starts_with("@nas ")) {
            r.line(line)
                .with_context(|| format!("malformed firmware output line '{line}'"))?;
        }
        Ok(r)
    }

    /// Take in one `@nas` line.
    fn line(&mut self, line: &str) -> Result<()> {
        let mut t = line.split_whitespace().skip(1);
        match t.next().unwrap_or("") {
            "start" => self.start = Some(parse_start(&mut t)?),
            "cal" => self.cal = Some(parse_calibration(&mut t)?),
            "out" => self.inferences.push(parse_inference(&mut t)?),
            "predict" => self.predicted = Some(hex(t.next(), "class")? as u32),
            "stack" => self.stack = Some(hex(t.next(), "stack bytes")?),
            "end" => self.ended = true,
            _ => {}
        }
        Ok(())
    }
}

/// `@nas start SAMPLES INPUT_LEN CLASSES`, in hex.
fn parse_start<'a>(t: &mut impl Iterator<Item = &'a str>) -> Result<(usize, usize, usize)> {
    let s = hex(t.next(), "samples")?;
    let l = hex(t.next(), "input length")?;
    let c = hex(t.next(), "classes")?;
    Ok((s as usize, l as usize, c as usize))
}

/// `@nas cal N1 SPIN1 N2 SPIN2 EMPTY`, in hex: each span two timer readings, each reading two
/// 32-bit halves.
fn parse_calibration<'a>(t: &mut impl Iterator<Item = &'a str>) -> Result<Calibration> {
    let mut v = Vec::new();
    for _ in 0..14 {
        v.push(hex(t.next(), "calibration")?);
    }
    let w = |i: usize| (v[i] << 32) | v[i + 1];
    Ok(Calibration {
        n1: v[0],
        spin1: Span {
            start: w(1),
            end: w(3),
        },
        n2: v[5],
        spin2: Span {
            start: w(6),
            end: w(8),
        },
        empty: Span {
            start: w(10),
            end: w(12),
        },
    })
}

/// `@nas out INDEX SPAN LOGITS...`, in hex: the span two timer readings in 32-bit halves, the
/// logits' bit patterns.
fn parse_inference<'a>(t: &mut impl Iterator<Item = &'a str>) -> Result<Inference> {
    let index = hex(t.next(), "index")? as usize;
    let mut w = [0u64; 4];
    for x in &mut w {
        *x = hex(t.next(), "timer reading")?;
    }
    let logits = t
        .map(|x| u32::from_str_radix(x, 16).map_err(anyhow::Error::from))
        .collect::<Result<Vec<u32>>>()?;
    Ok(Inference {
        index,
        span: Span {
            start: (w[0] << 32) | w[1],
            end: (w[2] << 32) | w[3],
        },
        logits,
    })
}

/// Fail when the run timed out or the firmware faulted.
fn check_not_stopped(run: &QemuRun) -> Result<()> {
    if run.timed_out {
        bail!(
            "the firmware did not finish within {:.0} s under QEMU ({}); output so far:\n{}",
            run.wall.as_secs_f64(),
            run.command,
            output_tail(&run.output)
        );
    }
    if let Some(line) = run.output.lines().find(|l| l.starts_with("@nas fault")) {
        bail!(
            "the firmware faulted under QEMU ({line}: exception number in hex); output:\n{}",
            output_tail(&run.output)
        );
    }
    Ok(())
}

/// Parse the `@nas` lines of a run; fail with the run's output when it did not end cleanly.
pub fn parse(run: &QemuRun) -> Result<HarnessOutput> {
    check_not_stopped(run)?;
    let r = Reported::read(&run.output)?;
    let status = run.status.map_or("killed".to_string(), |s| s.to_string());
    if !r.ended || run.status != Some(0) {
        bail!(
            "the firmware did not run to its end under QEMU (exit status {status}; {}); output:\n{}",
            run.command,
            output_tail(&run.output)
        );
    }
    let (samples, input_len, classes) = r.start.context("the firmware did not report its start")?;
    let calibration = r
        .cal
        .context("the firmware did not report its calibration")?;
    if calibration.ticks_per_instruction() <= 0.0 {
        bail!("instruction-count calibration failed: the timer did not advance ({calibration:?}); is SysTick running under QEMU's -icount?");
    }
    let inferences = r.inferences;
    if inferences.len() != samples || inferences.iter().any(|i| i.logits.len() != classes) {
        bail!(
            "the firmware reported {} inferences for {samples} samples (or logits of the wrong length)",
            inferences.len()
        );
    }
    Ok(HarnessOutput {
        samples,
        input_len,
        classes,
        calibration,
        inferences,
        predicted: r.predicted,
        stack_peak_bytes: r.stack,
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

    // Readings from netduinoplus2 (168 MHz SysTick, 64 ns per instruction): 10.752 ticks per
    // instruction; the second inference spans a reload at 2^24.
    const GOOD: &str = "@nas start 00000002 00000310 00000002\n\
        @nas cal 000003e8 00000000 00000010 00000000 000054f2 00018a88 00000000 00005500 00000000 002179e1 00000000 002179f0 00000000 00217ab2\n\
        @nas out 00000000 00000000 00300000 00000000 003a312b 3f800000 00000000\n\
        @nas out 00000001 00000000 00ff0000 00000000 0109312b 00000000 bf800000\n\
        @nas predict 00000000\n@nas stack 00000014\n@nas end\n";

    #[test]
    fn parses_a_clean_run() {
        let r = parse(&run(GOOD, Some(0))).unwrap();
        assert_eq!((r.samples, r.input_len, r.classes), (2, 784, 2));
        assert_eq!(r.inferences[1].logits, vec![0, 0xbf80_0000]);
        assert_eq!(r.stack_peak_bytes, Some(20));
        let c = r.calibration;
        // 200,000 instructions took 2,150,399 ticks: 10.752 per instruction.
        let tpi = c.ticks_per_instruction();
        assert!((tpi - 10.752).abs() < 1e-3, "{tpi}");
        assert_eq!(c.empty.ticks(), 0xc2);
        assert_eq!(r.inferences[0].span.reloads(), 0);
        assert_eq!(
            c.instructions(r.inferences[0].span),
            ((0xa312b - 0xc2) as f64 / tpi).round() as u64
        );
        // Across a reload the handler's 5 instructions are not the kernel's.
        let s = r.inferences[1].span;
        assert_eq!((s.ticks(), s.reloads()), (0xa312b, 1));
        assert_eq!(
            c.instructions(s),
            ((0xa312b - 0xc2) as f64 / tpi - 5.0).round() as u64
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
