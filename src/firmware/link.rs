//! Linking for the chip's memory map (and for unbounded memory to measure an image that
//! overflows), and running the image under the profile's emulator.

use super::*;

/// `region `RAM' overflowed by 1234 bytes` lines of ld's output.
pub fn parse_overflows(ld_stderr: &str) -> Vec<Overflow> {
    let mut v: Vec<Overflow> = Vec::new();
    for line in ld_stderr.lines() {
        let Some(i) = line.find("region `") else {
            continue;
        };
        let rest = &line[i + "region `".len()..];
        let Some(end) = rest.find('\'') else { continue };
        let region = rest[..end].to_string();
        let Some(j) = rest.find("overflowed by ") else {
            continue;
        };
        let num: String = rest[j + "overflowed by ".len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if let Ok(bytes) = num.parse() {
            if !v.iter().any(|o| o.region == region) {
                v.push(Overflow { region, bytes });
            }
        }
    }
    v
}

pub(crate) struct Linked {
    pub(crate) elf: PathBuf,
    pub(crate) flash: Region,
    pub(crate) ram: Region,
}

/// Link the objects for a memory map. `Ok(Err(overflows, stderr))` when regions overflow.
pub(crate) fn link(
    dir: &Path,
    target: &Target,
    objects: &[String],
    stem: &str,
    purpose: &str,
    flash: Region,
    ram: Region,
) -> Result<std::result::Result<Linked, (Vec<Overflow>, String)>> {
    let script = format!("{stem}.ld");
    write(dir, &script, &linker_script(target, purpose, flash, ram)?)?;
    let elf = format!("{stem}.elf");
    let mut args: Vec<String> = target.toolchain.cflags.clone();
    args.extend(LINK_FLAGS.iter().map(|s| s.to_string()));
    args.extend([
        "-T".into(),
        script,
        format!("-Wl,-Map={stem}.map"),
        "-o".into(),
        elf.clone(),
    ]);
    args.extend(objects.iter().cloned());
    match run_tool(dir, &args)? {
        Ok(()) => Ok(Ok(Linked {
            elf: dir.join(elf),
            flash,
            ram,
        })),
        Err(stderr) => {
            let overflows = parse_overflows(&stderr);
            if overflows.is_empty() {
                let hint = if stderr.contains("nano.specs") {
                    format!("\n{}", emulate::INSTALL_HINT)
                } else {
                    String::new()
                };
                bail!(
                    "linking the firmware failed ({GCC} {}):\n{}{hint}",
                    args.join(" "),
                    tail(&stderr, 20)
                );
            }
            Ok(Err((overflows, stderr)))
        }
    }
}

/// Regions large enough for any model, to measure an image that does not fit the chip.
pub(crate) fn unbounded(origin: u64, other: u64) -> Region {
    let cap: u64 = 0x1000_0000;
    let room = if other > origin { other - origin } else { cap };
    Region {
        origin,
        length: cap.min(room).min((1u64 << 32) - origin),
    }
}

/// Link for the chip's memory map. When a region overflows, link again with unbounded memory
/// so that the image can still be measured, and return the overflows ld reported.
pub(crate) fn link_for_chip(
    d: &Path,
    target: &Target,
    objects: &[String],
) -> Result<(Linked, Vec<Overflow>)> {
    let m = &target.memory;
    let flash = Region {
        origin: m.flash_origin,
        length: m.flash_bytes,
    };
    let ram = Region {
        origin: m.ram_origin,
        length: m.ram_bytes,
    };
    match link(
        d,
        target,
        objects,
        "chip",
        "the chip's memory map",
        flash,
        ram,
    )? {
        Ok(l) => Ok((l, Vec::new())),
        Err((overflows, _)) => {
            let l = link(
                d,
                target,
                objects,
                "unbounded",
                "unbounded memory, to measure an image that overflows the chip",
                unbounded(m.flash_origin, m.ram_origin),
                unbounded(m.ram_origin, m.flash_origin),
            )?
            .map_err(|(_, e)| {
                anyhow::anyhow!("linking with unbounded memory failed:\n{}", tail(&e, 20))
            })?;
            Ok((l, overflows))
        }
    }
}

/// A linked firmware: its objects, the image linked for the chip, and the kernel's name (its
/// entry point is `{kernel}_infer`).
pub(crate) struct Built<'a> {
    pub(crate) objects: &'a [String],
    pub(crate) chip: &'a Linked,
    pub(crate) image: &'a ElfImage,
    pub(crate) kernel: &'a str,
}

/// Run the firmware under the profile's emulator: the chip's image when the emulator has the
/// chip's memory map, else the same objects relinked at the emulator's addresses (checked to
/// have the same sizes). Returns the harness's report, the run and which image ran.
pub(crate) fn run_emulator(
    d: &Path,
    target: &Target,
    emu: &crate::target::Emulator,
    built: &Built,
    timeout: Duration,
) -> Result<(
    emulate::HarnessOutput,
    emulate::QemuRun,
    String,
    std::result::Result<emulate::mix::CycleEstimate, String>,
)> {
    emulate::check_qemu(&emu.machine)?;
    let (objects, chip, image) = (built.objects, built.chip, built.image);
    let infer_symbol = format!("{}_infer", built.kernel);
    let infer_symbol = infer_symbol.as_str();
    let m = &target.memory;
    let flash_origin = emu.flash_origin.unwrap_or(m.flash_origin);
    let ram_origin = emu.ram_origin.unwrap_or(m.ram_origin);
    let (elf, what, ran) = if flash_origin == m.flash_origin && ram_origin == m.ram_origin {
        (
            chip.elf.clone(),
            "the image linked for the chip".to_string(),
            image.clone(),
        )
    } else {
        let flash = Region {
            origin: flash_origin,
            length: m.flash_bytes,
        };
        let ram = Region {
            origin: ram_origin,
            length: m.ram_bytes,
        };
        let l = link(
            d,
            target,
            objects,
            "emulator",
            &format!("QEMU {}", emu.machine),
            flash,
            ram,
        )?
        .map_err(|(_, e)| anyhow::anyhow!("linking for the emulator failed:\n{}", tail(&e, 20)))?;
        let emu_image = ElfImage::parse(&std::fs::read(&l.elf)?, l.flash, l.ram)?;
        ensure!(
            emu_image.flash_bytes == image.flash_bytes && emu_image.ram_bytes == image.ram_bytes,
            "internal: the emulator's image ({} B flash, {} B RAM) differs in size from the chip's ({} B, {} B)",
            emu_image.flash_bytes,
            emu_image.ram_bytes,
            image.flash_bytes,
            image.ram_bytes
        );
        (
            l.elf,
            format!("relinked at flash {flash_origin:#x} / RAM {ram_origin:#x} (same objects and sizes)"),
            emu_image,
        )
    };
    let run = emulate::run_qemu(&elf, &emu.machine, timeout, d)?;
    let report = emulate::parse(&run)?;
    let cycles = cycle_estimate(d, target, emu, &elf, &ran, infer_symbol, timeout);
    Ok((report, run, what, cycles))
}

/// The image's instruction mix under QEMU with nas's plugin, in cycles on the profile's core
/// (`Err`: why there is no estimate; the verification itself does not depend on it).
fn cycle_estimate(
    d: &Path,
    target: &Target,
    emu: &crate::target::Emulator,
    elf: &Path,
    image: &ElfImage,
    infer_symbol: &str,
    timeout: Duration,
) -> std::result::Result<emulate::mix::CycleEstimate, String> {
    use emulate::mix;
    if crate::target::CoreTiming::of(&target.core).is_none() {
        return Err(format!(
            "no instruction timings for the core {}",
            target.core
        ));
    }
    let plugin = mix::plugin_path()?;
    let on = image
        .symbol(infer_symbol)
        .ok_or_else(|| format!("no symbol {infer_symbol} in the image"))?
        .addr;
    // The kernel returns to main (the samples) or to the stack measurement.
    let off: Vec<(u64, u64)> = image
        .symbols
        .iter()
        .filter(|s| s.name == "main" || s.name.starts_with("nas_stack_peak"))
        .map(|s| (s.addr, s.addr + s.size))
        .collect();
    let skip: Vec<(u64, u64)> = image
        .sections
        .iter()
        .filter(|s| s.name == ".harness")
        .map(|s| (s.vma, s.vma + s.size))
        .collect();
    if off.is_empty() || skip.is_empty() {
        return Err("no harness code (main, .harness) found in the image".to_string());
    }
    let r = |x: Region| (x.origin, x.origin + x.length);
    let gate = mix::Gate {
        on,
        off,
        skip,
        flash: r(image.flash),
        ram: r(image.ram),
        // The first sample's inference: the mix barely depends on the data, and the rest of
        // the run then goes at full speed.
        inferences: 1,
    };
    let flash = target.flash_timing.as_ref();
    let m = mix::run(elf, &emu.machine, &plugin, &gate, flash, timeout, d)
        .map_err(|e| format!("{e:#}"))?;
    mix::estimate(&m, &target.core, flash).map_err(|e| format!("{e:#}"))
}
