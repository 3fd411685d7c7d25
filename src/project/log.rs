//! What a board project prints over its UART, read back (`nas verify --board-log FILE`): the
//! network and board lines, one line per sample (prediction, host reference, expected class,
//! cycles) and the closing lines. The format is `firmware/project/{c,rust}/main.*`'s; anything
//! else in the capture (a terminal's own messages, a reset's garbage) is skipped, but a capture
//! without the network, the board or the end line is refused: it is not a whole run.

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

/// One sample's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogSample {
    pub index: usize,
    pub predicted: usize,
    /// The host reference's prediction, as embedded at export.
    pub host: usize,
    /// The label, when the sample had one.
    pub expected: Option<usize>,
    pub cycles: u64,
}

/// A whole run of a board project, as its UART printed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoardLog {
    /// The network's summary (ASCII arrows, as the firmware prints it).
    pub network: String,
    /// What the project was generated from (`C int8 kernel from RUN by nas …`).
    pub provenance: String,
    pub board: String,
    pub clock_hz: u64,
    /// What the firmware said of its clock (e.g. that the PLL did not lock).
    pub clock_note: String,
    /// `DWT CYCCNT` or `SysTick`.
    pub timer: String,
    pub samples: Vec<LogSample>,
}

impl BoardLog {
    /// Read a capture.
    pub fn parse(text: &str) -> Result<BoardLog> {
        let mut network = None;
        let mut provenance = None;
        let mut board = None;
        let mut samples = Vec::new();
        let mut done = false;
        for (no, raw) in text.lines().enumerate() {
            // A capture may start mid-line or hold a terminal's escapes: take from the marker.
            let line = raw.trim_end_matches('\r');
            let at = |m: &str| line.find(m).map(|i| &line[i..]);
            let ctx = || format!("line {}: {line:?}", no + 1);
            if let Some(l) = at("nas: board ") {
                board = Some(board_line(l).with_context(ctx)?);
            } else if at("nas: done").is_some() {
                done = true;
            } else if at("nas: fault").is_some() || at("nas: panic").is_some() {
                bail!("{}: the firmware stopped on a fault", ctx());
            } else if let Some(l) = at("nas: ") {
                // The network is the first `nas:` line; the provenance the second.
                let text = l["nas: ".len()..].trim().to_string();
                if network.is_none() {
                    network = Some(text);
                } else if provenance.is_none() && board.is_none() {
                    provenance = Some(text);
                }
            } else if let Some(l) = at("sample ") {
                samples.push(sample(l).with_context(ctx)?);
            }
        }
        let network = network
            .context("no `nas: <network>` line: is this a capture of a board project's UART?")?;
        let provenance = provenance
            .context("no provenance line (`nas: C int8 kernel from …`) after the network's")?;
        let (board, clock_hz, clock_note, timer) =
            board.context("no `nas: board …` line: capture from the board's reset on")?;
        ensure!(!samples.is_empty(), "no `sample …` lines in the capture");
        ensure!(
            done,
            "the capture ends before `nas: done`: keep capturing until the board prints it"
        );
        for (i, s) in samples.iter().enumerate() {
            ensure!(
                s.index == i,
                "sample lines out of order or missing: line of sample {} where {i} was due \
                 (capture from the board's reset on, once)",
                s.index
            );
        }
        Ok(BoardLog {
            network,
            provenance,
            board,
            clock_hz,
            clock_note,
            timer,
            samples,
        })
    }

    /// The kernel's element type, `f32` or `int8`, from the provenance line.
    pub fn dtype(&self) -> Option<&str> {
        let mut words = self.provenance.split_whitespace();
        words.next()?;
        words.next()
    }

    /// Mean cycles per inference.
    pub fn mean_cycles(&self) -> f64 {
        self.samples.iter().map(|s| s.cycles as f64).sum::<f64>() / self.samples.len() as f64
    }

    /// The samples whose prediction is the host reference's.
    pub fn agreeing(&self) -> usize {
        self.samples
            .iter()
            .filter(|s| s.predicted == s.host)
            .count()
    }

    /// Whether the cycles are the core clock's as measured by the DWT (SysTick counts the same
    /// clock, but under an emulator follows the host's).
    pub fn by_dwt(&self) -> bool {
        self.timer == "DWT CYCCNT"
    }
}

/// `sample 3: predicted 5, host 5, expected 5, cycles 1234`
fn sample(line: &str) -> Result<LogSample> {
    let (head, rest) = line
        .split_once(": ")
        .context("a sample line is `sample N: …`")?;
    let index = head["sample ".len()..]
        .trim()
        .parse()
        .context("sample number")?;
    let field = |key: &str| -> Result<&str> {
        rest.split(", ")
            .find_map(|f| f.strip_prefix(key))
            .map(str::trim)
            .with_context(|| format!("no `{key}…` field"))
    };
    let num = |key: &str| -> Result<u64> {
        let v = field(key)?;
        v.parse()
            .with_context(|| format!("`{key}{v}` is not a number"))
    };
    let expected = match field("expected ")? {
        "-" => None,
        v => Some(
            v.parse()
                .with_context(|| format!("`expected {v}` is not a class"))?,
        ),
    };
    Ok(LogSample {
        index,
        predicted: num("predicted ")? as usize,
        host: num("host ")? as usize,
        expected,
        cycles: num("cycles ")?,
    })
}

/// `nas: board NAME, clock HZ Hz (NOTE), cycles by TIMER`
fn board_line(line: &str) -> Result<(String, u64, String, String)> {
    let rest = &line["nas: board ".len()..];
    let (name, rest) = rest
        .split_once(", clock ")
        .context("no `, clock …` in the board line")?;
    let (hz, rest) = rest.split_once(" Hz (").context("no clock in Hz")?;
    let (note, timer) = rest
        .rsplit_once("), cycles by ")
        .context("no `cycles by …` in the board line")?;
    let hz = hz.trim().parse().context("the clock is not a number")?;
    Ok((
        name.to_string(),
        hz,
        note.to_string(),
        timer.trim().to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\r\n\x1b[0mnas: 784 -> emb4 -> [8k4s4 same] -> gap -> dense 12\r\n\
        nas: C int8 kernel from runs/r by nas 0.1.0, target stm32f401re\r\n\
        nas: board NUCLEO-F401RE, clock 84000000 Hz (HSE 8 MHz bypass -> PLL), cycles by DWT CYCCNT\r\n\
        sample 0: predicted 3, host 3, expected 3, cycles 1000\r\n\
        sample 1: predicted 2, host 1, expected -, cycles 3000\r\n\
        nas: accuracy 1/1 = 100.00 %\r\n\
        nas: host reference agrees on 1/2 samples: the kernel computes something else here\r\n\
        nas: mean 2000 cycles per inference = 0.023 ms at 84000000 Hz\r\n\
        nas: done\r\n";

    #[test]
    fn a_capture_reads_back() {
        let log = BoardLog::parse(LOG).unwrap();
        assert_eq!(
            log.network,
            "784 -> emb4 -> [8k4s4 same] -> gap -> dense 12"
        );
        assert_eq!(log.board, "NUCLEO-F401RE");
        assert_eq!(log.dtype(), Some("int8"));
        assert_eq!(log.clock_hz, 84_000_000);
        assert_eq!(log.clock_note, "HSE 8 MHz bypass -> PLL");
        assert!(log.by_dwt());
        assert_eq!(log.samples.len(), 2);
        assert_eq!(log.samples[1].expected, None);
        assert_eq!(log.mean_cycles(), 2000.0);
        assert_eq!(log.agreeing(), 1);
    }

    #[test]
    fn partial_or_foreign_captures_are_refused() {
        let cut = &LOG[..LOG.find("nas: done").unwrap()];
        let err = BoardLog::parse(cut).unwrap_err().to_string();
        assert!(err.contains("nas: done"), "{err}");
        let err = BoardLog::parse("hello\r\nworld\r\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("board project"), "{err}");
        let bad = LOG.replace("cycles 3000", "cycles 3x00");
        let err = format!("{:#}", BoardLog::parse(&bad).unwrap_err());
        assert!(err.contains("line 6") && err.contains("3x00"), "{err}");
        let gap = LOG.replace("sample 1:", "sample 2:");
        assert!(BoardLog::parse(&gap).is_err());
        let fault = LOG.replace("nas: done", "nas: fault");
        assert!(BoardLog::parse(&fault).is_err());
    }
}
