//! Verification: build, measure, emulate and compare one kernel, or the C and Rust kernels
//! side by side.

use super::*;

/// Cross-compile `spec` with `weights` for `target` (the kernel in `opts.lang`), measure the
/// ELF, and (when asked and the profile has an emulator) run it under QEMU against the host
/// reference. A model that does not
/// fit is a report with `fits == false`; errors are reserved for the tools failing, and keep
/// the build directory for inspection.
pub fn verify(
    spec: &NetSpec,
    weights: &Weights,
    target: &Target,
    limits: &Limits,
    opts: &Options,
) -> Result<KernelReport> {
    let lowered = crate::lower::lower_weights(spec, weights)?;
    let input_len = spec.input_len * spec.input_channels;
    ensure!(!opts.samples.inputs.is_empty(), "no samples to run");
    for (i, x) in opts.samples.inputs.iter().enumerate() {
        ensure!(
            x.len() == input_len,
            "sample {i} has {} bytes, the network reads {input_len}",
            x.len()
        );
    }
    check_toolchain()?;
    let mut dir = BuildDir::new(opts.build_dir.as_deref())?;
    match verify_in(&dir.path, spec, weights, &lowered, target, limits, opts) {
        Ok(mut report) => {
            report.build_dir = dir.keep.then(|| dir.path.clone());
            Ok(report)
        }
        Err(e) => {
            dir.keep = true;
            Err(e.context(format!("build files kept in {}", dir.path.display())))
        }
    }
}

pub(crate) fn verify_in(
    d: &Path,
    spec: &NetSpec,
    weights: &Weights,
    lowered: &crate::lower::Lowered,
    target: &Target,
    budget: &Limits,
    opts: &Options,
) -> Result<KernelReport> {
    let plan = &lowered.plan;
    let means = opts.quant.as_ref().map_or(0, |q| q.requantizing_means());
    let estimate: Cost = cost::cost_deployed(plan, target, budget, opts.dtype(), means);
    let compiled = compile(d, spec, weights, lowered, target, opts, &estimate)?;
    let (chip, overflows) = link_for_chip(d, target, &compiled.objects)?;
    let links_for_chip = overflows.is_empty();
    let image = ElfImage::parse(&std::fs::read(&chip.elf)?, chip.flash, chip.ram)
        .with_context(|| format!("reading {}", chip.elf.display()))?;
    let bd = breakdown(
        &image,
        &compiled.kernel_symbols,
        opts.lang,
        &compiled.kernel,
    );
    let (emulation, emulation_skipped) = match emulator_to_run(target, opts, links_for_chip) {
        Err(reason) => (None, Some(reason)),
        Ok(emu) => {
            let built = Built {
                objects: &compiled.objects,
                chip: &chip,
                image: &image,
                kernel: &compiled.kernel,
            };
            (
                Some(emulate_and_compare(d, target, emu, lowered, opts, built)?),
                None,
            )
        }
    };
    let stack_peak = emulation.as_ref().and_then(|e| e.stack_peak_bytes);
    let measured = measure(&image, &bd, &estimate, stack_peak);
    let limits = footprint_limits(target, budget);
    let violations = violations(&overflows, &measured, &limits);
    let fits = violations.is_empty();
    let ok = fits
        && emulation
            .as_ref()
            .is_none_or(|e| e.bit_exact == e.samples && e.predict_agrees);
    Ok(KernelReport {
        lang: opts.lang,
        dtype: opts.dtype(),
        kernel: compiled.kernel,
        target: target.name.clone(),
        core: target.core.clone(),
        fpu: target.fpu,
        network: spec.summary(),
        layers: plan.layers.len(),
        executed_macs: estimate.executed_macs,
        compiler: GCC.to_string(),
        cflags: compiled.cflags,
        rust: compiled.rust,
        build_dir: None,
        estimate: estimate_report(&estimate),
        limits,
        links_for_chip,
        overflows,
        image,
        breakdown: bd,
        measured,
        emulation,
        emulation_skipped,
        violations,
        fits,
        ok,
    })
}

/// The profile's emulator when the firmware is to run under it, else why it is not run.
fn emulator_to_run<'t>(
    target: &'t Target,
    opts: &Options,
    links_for_chip: bool,
) -> std::result::Result<&'t crate::target::Emulator, String> {
    match (&target.emulator, opts.emulate, links_for_chip) {
        (_, false, _) => Err("not requested (--no-emulate)".to_string()),
        (None, _, _) => Err(format!(
            "the profile {} has no [emulator] section",
            target.name
        )),
        (_, _, false) => Err("the image does not fit the chip".to_string()),
        (Some(emu), true, true) => Ok(emu),
    }
}

/// Run the firmware under QEMU and compare its logits with the host reference.
fn emulate_and_compare(
    d: &Path,
    target: &Target,
    emu: &crate::target::Emulator,
    lowered: &crate::lower::Lowered,
    opts: &Options,
    built: Built,
) -> Result<Emulation> {
    let (rep, run, what, cycles) = run_emulator(d, target, emu, &built, opts.timeout)
        .context("running the firmware under QEMU")?;
    let e = compare(
        &|x: &[u8]| host_reference(lowered, opts.quant.as_deref(), x),
        &opts.samples,
        &rep,
        &run,
        &emu.machine,
        what,
        &lowered.plan,
    )
    .map(|mut e| {
        let macs = e.executed_macs.max(1) as f64;
        match cycles {
            Ok(c) => {
                e.cycles_per_mac = Some(c.cycles / macs);
                e.cycle_ms = Some(c.cycles / target.clock_hz as f64 * 1e3);
                e.cycles = Some(c);
            }
            Err(why) => e.cycles_skipped = Some(why),
        }
        e
    })?;
    Ok(e)
}

/// The model's share of the image, against the estimate: the image less the harness and the
/// stack reservation, plus the stack (measured under QEMU when `stack_peak` is known).
fn measure(
    image: &ElfImage,
    bd: &Breakdown,
    estimate: &Cost,
    stack_peak: Option<u64>,
) -> ElfFootprint {
    let stack_bytes = stack_peak.unwrap_or(estimate.stack_bytes);
    let flash_bytes = image.flash_bytes - bd.harness_flash_bytes;
    let ram_bytes = image.ram_bytes - bd.harness_ram_bytes - bd.stack_reserved_bytes + stack_bytes;
    ElfFootprint {
        flash_bytes,
        ram_bytes,
        code_bytes: flash_bytes - bd.weights_bytes,
        stack_bytes,
        stack_measured: stack_peak.is_some(),
        flash_error_pct: pct(estimate.flash_bytes, flash_bytes),
        ram_error_pct: pct(estimate.ram_bytes, ram_bytes),
    }
}

/// The model's budgets next to the chip's memory.
fn footprint_limits(target: &Target, budget: &Limits) -> MemoryBudget {
    MemoryBudget {
        max_flash_bytes: budget.max_flash_bytes,
        max_ram_bytes: budget.max_ram_bytes,
        chip_flash_bytes: target.memory.flash_bytes,
        chip_ram_bytes: target.memory.ram_bytes,
    }
}

/// Why the model does not fit: the regions the linker overflowed, then the budgets exceeded.
fn violations(
    overflows: &[Overflow],
    measured: &ElfFootprint,
    limits: &MemoryBudget,
) -> Vec<String> {
    let mut violations = Vec::new();
    for o in overflows {
        let size = if o.region == "RAM" {
            limits.chip_ram_bytes
        } else {
            limits.chip_flash_bytes
        };
        violations.push(format!(
            "region {} overflowed by {} bytes (ld): the firmware image needs {} bytes of the chip's {size}",
            o.region,
            o.bytes,
            o.bytes + size
        ));
    }
    let (flash_bytes, ram_bytes) = (measured.flash_bytes, measured.ram_bytes);
    if flash_bytes > limits.max_flash_bytes {
        violations.push(format!(
            "region FLASH: the model takes {flash_bytes} bytes, over its budget of {} bytes by {} bytes",
            limits.max_flash_bytes,
            flash_bytes - limits.max_flash_bytes
        ));
    }
    if ram_bytes > limits.max_ram_bytes {
        violations.push(format!(
            "region RAM: the model takes {ram_bytes} bytes, over its budget of {} bytes by {} bytes",
            limits.max_ram_bytes,
            ram_bytes - limits.max_ram_bytes
        ));
    }
    violations
}

/// The cost model's figures as reported.
fn estimate_report(estimate: &Cost) -> Estimate {
    Estimate {
        flash_bytes: estimate.flash_bytes,
        ram_bytes: estimate.ram_bytes,
        weights_bytes: estimate.weights_bytes,
        code_bytes: estimate.code_bytes,
        arena_bytes: estimate.arena_bytes,
        stack_bytes: estimate.stack_bytes,
        scratch_bytes: estimate.scratch_bytes,
        instructions: estimate.instructions,
        instructions_worst_error_pct: estimate.latency_model.map(|l| l.worst_error_pct),
        latency_ms: estimate.latency_ms,
    }
}

/// Logits and predicted class of one sample on the host.
pub(crate) type HostReference<'a> = dyn Fn(&[u8]) -> (Vec<f32>, usize) + 'a;

/// The host reference's logits and class for one sample: the int8 reference when the network
/// is quantized, else the float one.
pub(crate) fn host_reference(
    lowered: &crate::lower::Lowered,
    quant: Option<&QuantLowered>,
    x: &[u8],
) -> (Vec<f32>, usize) {
    match quant {
        Some(q) => {
            let o = crate::quant::reference_int8(q, x);
            let class = o.predict();
            (o.logits, class)
        }
        None => {
            let l = crate::lower::reference_logits(lowered, x);
            let class = crate::metrics::argmax(&l);
            (l, class)
        }
    }
}

/// Compare the emulated logits with the host reference.
pub(crate) fn compare(
    reference: &HostReference,
    samples: &Samples,
    rep: &emulate::HarnessOutput,
    run: &emulate::QemuRun,
    machine: &str,
    image: String,
    plan: &plan::Plan,
) -> Result<Emulation> {
    let mut bit_exact = 0;
    let mut mismatches = Vec::new();
    let mut correct = 0;
    let mut predict_agrees = true;
    for inf in &rep.inferences {
        let input = reported_input(samples, inf, plan.classes)?;
        let (reference, class) = reference(input);
        match mismatch(inf, &reference) {
            None => bit_exact += 1,
            Some(m) => mismatches.push(m),
        }
        if let Some(labels) = &samples.labels {
            correct += usize::from(labels[inf.index] as usize == class);
        }
        if inf.index == 0 {
            predict_agrees = rep.predicted == Some(class as u32);
        }
    }
    let (instructions, median) = instruction_counts(rep)?;
    let executed_macs: u64 = plan.layers.iter().map(|l| l.executed_macs()).sum();
    Ok(Emulation {
        machine: machine.to_string(),
        image,
        command: run.command.clone(),
        samples_source: samples.source.clone(),
        samples: rep.inferences.len(),
        bit_exact,
        mismatches,
        predict_agrees,
        correct: samples.labels.as_ref().map(|_| correct),
        instructions,
        instructions_per_inference: median,
        executed_macs,
        instructions_per_mac: median as f64 / executed_macs.max(1) as f64,
        ticks_per_instruction: rep.calibration.ticks_per_instruction(),
        stack_peak_bytes: rep.stack_peak_bytes,
        wall_seconds: run.wall.as_secs_f64(),
        cycles: None,
        cycles_per_mac: None,
        cycle_ms: None,
        cycles_skipped: None,
    })
}

/// The sample an inference the firmware reported ran on, once its index and its number of
/// logits are checked.
fn reported_input<'s>(
    samples: &'s Samples,
    inf: &emulate::Inference,
    classes: usize,
) -> Result<&'s [u8]> {
    let input = samples.inputs.get(inf.index).with_context(|| {
        format!(
            "the firmware reported sample {} of {}: its output is corrupt",
            inf.index,
            samples.inputs.len()
        )
    })?;
    anyhow::ensure!(
        inf.logits.len() == classes,
        "the firmware reported {} logits for sample {}, the network has {} classes",
        inf.logits.len(),
        inf.index,
        classes
    );
    Ok(input)
}

/// How an inference's logits differ from the reference; `None` when equal bit for bit.
fn mismatch(inf: &emulate::Inference, reference: &[f32]) -> Option<Mismatch> {
    let differing = reference
        .iter()
        .zip(&inf.logits)
        .filter(|(r, &g)| r.to_bits() != g)
        .count();
    if differing == 0 {
        return None;
    }
    let got: Vec<f32> = inf.logits.iter().map(|&b| f32::from_bits(b)).collect();
    let max_abs_diff = reference
        .iter()
        .zip(&got)
        .map(|(r, g)| (f64::from(*r) - f64::from(*g)).abs())
        .fold(0.0, f64::max);
    Some(Mismatch {
        index: inf.index,
        classes_differing: differing,
        max_abs_diff,
    })
}

/// Instructions of each inference, and their median.
fn instruction_counts(rep: &emulate::HarnessOutput) -> Result<(Vec<u64>, u64)> {
    let instructions: Vec<u64> = rep
        .inferences
        .iter()
        .map(|i| rep.calibration.instructions(i.span))
        .collect();
    let mut sorted = instructions.clone();
    sorted.sort_unstable();
    let median = *sorted
        .get(sorted.len() / 2)
        .context("the firmware reported no inference")?;
    Ok((instructions, median))
}

/// Verify the kernels `which` asks for: the C kernel and the Rust kernel are built and run
/// concurrently, each in a directory of its own (with `opts.build_dir`: the C firmware in it,
/// the Rust firmware in its `rust/`). [`Kernels::Both`] without the profile's Rust target
/// installed verifies the C kernel and says in `notes` how to install it; [`Kernels::Rust`]
/// fails then.
pub fn verify_langs(
    spec: &NetSpec,
    weights: &Weights,
    target: &Target,
    limits: &Limits,
    opts: &Options,
    which: Kernels,
) -> Result<Verification> {
    let mut notes = Vec::new();
    let want_rust = which != Kernels::C;
    let rust_ok = if want_rust {
        match check_rust(&target.toolchain.rust_target) {
            Ok(_) => true,
            Err(e) if which == Kernels::Both => {
                notes.push(format!(
                    "the Rust kernel was not built, only the C kernel: {e:#}"
                ));
                false
            }
            Err(e) => return Err(e),
        }
    } else {
        false
    };
    let with = |lang: Lang, sub: Option<&str>| {
        let mut o = opts.clone();
        o.lang = lang;
        if let (Some(d), Some(sub)) = (&opts.build_dir, sub) {
            o.build_dir = Some(d.join(sub));
        }
        o
    };
    let (primary, rust_report) = match (which, rust_ok) {
        (Kernels::Rust, _) => (
            verify(spec, weights, target, limits, &with(Lang::Rust, None))?,
            None,
        ),
        (_, false) => (
            verify(spec, weights, target, limits, &with(Lang::C, None))?,
            None,
        ),
        (_, true) => {
            let c_opts = with(Lang::C, None);
            let rust_opts = with(Lang::Rust, Some("rust"));
            let (c, r) = std::thread::scope(|s| {
                let r = s.spawn(|| verify(spec, weights, target, limits, &rust_opts));
                let c = verify(spec, weights, target, limits, &c_opts);
                (c, r.join().expect("Rust verification thread"))
            });
            (c?, Some(r.context("the Rust kernel")?))
        }
    };
    Ok(Verification {
        primary,
        rust_report,
        notes,
    })
}
