//! `nas verify` end to end: cross-compile generated kernels into firmware, measure the ELF, run
//! it under QEMU. Needs `arm-none-eabi-gcc`, newlib and `qemu-system-arm`
//! (`apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm`), the real
//! ISCX test samples in `../shared/data` (relative to the crate root) and, for the Rust kernel,
//! the profiles' Rust targets (`rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi`;
//! a test tries that once itself and fails with the command when it does not work).

use nas::firmware::{self, KernelReport, Lang, Options, RustKernel, RustLib, Samples};
use nas::net::{Block, NetSpec, Padding, PoolKind};
use nas::weights::Weights;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

const HINT: &str = "`nas verify` tests need the Arm toolchain and QEMU: apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm";

fn require_tools() {
    for tool in ["arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "{tool} is missing. {HINT}");
    }
}

fn data_dir() -> PathBuf {
    nas::data::shared_data_dir().join("iscx-vpn2016-12class-sessionl7")
}

/// A few real ISCX test samples from different parts of the t10k file.
fn real_samples(n: usize) -> Samples {
    let path = data_dir().join("t10k-images-idx3-ubyte.gz");
    assert!(
        path.is_file(),
        "the ISCX test samples are missing: {} (see ../shared/data/README.md)",
        path.display()
    );
    let (count, len, data) = nas::data::read_idx_images(&path).expect("read the ISCX t10k images");
    let labels = nas::data::read_idx_labels(&data_dir().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let idx: Vec<usize> = (0..n).map(|i| i * (count / n) + 7).collect();
    Samples {
        source: format!("{n} ISCX t10k samples"),
        inputs: idx
            .iter()
            .map(|&i| data[i * len..(i + 1) * len].to_vec())
            .collect(),
        labels: Some(idx.iter().map(|&i| labels[i]).collect()),
    }
}

fn net(blocks: Vec<Block>) -> NetSpec {
    let spec = NetSpec::from_blocks(784, 12, blocks);
    spec.validate().unwrap();
    spec
}

/// Three blocks, max pooling, 'valid' padding in the middle (≈ 46 K parameters).
fn three_block() -> NetSpec {
    net(vec![
        Block::new(16, 5, 2, Padding::Same),
        Block::new(48, 4, 2, Padding::Valid).with_pool(PoolKind::Max, 2),
        Block::new(64, 3, 1, Padding::Same).with_pool(PoolKind::Avg, 2),
    ])
}

/// A paper-sized network: four blocks, ≈ 87 K parameters, 4.7 M MACs.
fn paper_sized() -> NetSpec {
    net(vec![
        Block::new(32, 5, 2, Padding::Same),
        Block::new(64, 5, 4, Padding::Same).with_pool(PoolKind::Max, 2),
        Block::new(128, 5, 1, Padding::Same),
        Block::new(128, 2, 1, Padding::Same).with_pool(PoolKind::Max, 2),
    ])
}

/// A small net for the Cortex-M0+ (≈ 7 K parameters).
fn small() -> NetSpec {
    net(vec![
        Block::new(8, 6, 3, Padding::Same),
        Block::new(24, 4, 2, Padding::Valid).with_pool(PoolKind::Avg, 3),
        Block::new(32, 3, 2, Padding::Same),
        Block::new(40, 3, 1, Padding::Valid),
    ])
}

/// `arm-none-eabi-size` of an ELF: `-A` sections (name → size, address) and `-B` totals.
/// (name, size, address) of each section.
type SizeSections = Vec<(String, u64, u64)>;

fn size_tool(elf: &Path) -> (SizeSections, (u64, u64, u64)) {
    let a = Command::new("arm-none-eabi-size")
        .arg("-A")
        .arg("-d")
        .arg(elf)
        .output()
        .unwrap();
    assert!(a.status.success());
    let sections = String::from_utf8_lossy(&a.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[0].starts_with('.')).then(|| {
                (
                    f[0].to_string(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                )
            })
        })
        .collect();
    let b = Command::new("arm-none-eabi-size")
        .arg("-B")
        .arg("-d")
        .arg(elf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&b.stdout);
    let f: Vec<u64> = text
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .take(3)
        .map(|x| x.parse().unwrap())
        .collect();
    (sections, (f[0], f[1], f[2]))
}

/// Build, measure and run one network on one target, and check everything the issue asks for.
/// Returns the report and the worst estimate error (percent, absolute).
fn check(spec: &NetSpec, target: &str, seed: u64, samples: usize) -> (KernelReport, f64) {
    check_kernel(spec, target, seed, samples, None)
}

/// [`check`] for the C kernel (`rust_lib` `None`) or the Rust kernel of a library that holds
/// `spec` with the weights of `seed`. The cost model's estimate is calibrated for the C kernel:
/// its 2 % bound is checked for C only.
fn check_kernel(
    spec: &NetSpec,
    target: &str,
    seed: u64,
    samples: usize,
    rust_lib: Option<Arc<RustLib>>,
) -> (KernelReport, f64) {
    require_tools();
    let target = nas::target::resolve(target).unwrap();
    let weights = Weights::random(spec, seed);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(real_samples(samples));
    opts.build_dir = Some(dir.path().to_path_buf());
    if let Some(lib) = rust_lib {
        opts.lang = Lang::Rust;
        opts.rust_lib = Some(lib);
    }
    let lang = opts.lang;
    let r = firmware::verify(spec, &weights, &target, &target.limits(), &opts).unwrap();
    assert_eq!(r.lang, lang);
    let what = format!(
        "{} kernel {} on {}",
        lang.label(),
        spec.summary(),
        target.name
    );
    assert!(
        r.links_for_chip && r.fits,
        "{what}: {:?}\n{}",
        r.violations,
        r.table()
    );

    // 1. The object crate's flash and RAM equal what arm-none-eabi-size reports.
    let (sections, (text, data, bss)) = size_tool(&dir.path().join("chip.elf"));
    for s in &r.image.sections {
        let (_, size, addr) = sections
            .iter()
            .find(|(n, _, _)| *n == s.name)
            .unwrap_or_else(|| panic!("{what}: size -A lacks section {}", s.name));
        assert_eq!(
            (*size, *addr),
            (s.size, s.vma),
            "{what}: section {}",
            s.name
        );
    }
    // Every allocated section of non-zero size is accounted for (the others are metadata).
    let alloc: Vec<_> = sections
        .iter()
        .filter(|(n, size, _)| {
            *size > 0
                && !n.starts_with(".comment")
                && !n.starts_with(".ARM.attributes")
                && !n.starts_with(".debug")
        })
        .collect();
    assert_eq!(
        alloc.len(),
        r.image.sections.len(),
        "{what}: {sections:?} vs {:?}",
        r.image.sections
    );
    let flash_from_size: u64 = sections
        .iter()
        .filter(|(n, _, _)| r.image.sections.iter().any(|s| s.in_flash && s.name == *n))
        .map(|x| x.1)
        .sum();
    let ram_from_size: u64 = sections
        .iter()
        .filter(|(n, _, _)| r.image.sections.iter().any(|s| s.in_ram && s.name == *n))
        .map(|x| x.1)
        .sum();
    assert_eq!(
        r.image.flash_bytes, flash_from_size,
        "{what}: flash vs size -A"
    );
    assert_eq!(r.image.ram_bytes, ram_from_size, "{what}: RAM vs size -A");
    assert_eq!(
        r.image.flash_bytes,
        text + data,
        "{what}: flash vs size -B text + data"
    );
    assert_eq!(
        r.image.ram_bytes,
        data + bss,
        "{what}: RAM vs size -B data + bss"
    );

    // 2. The arena symbol is exactly the cost model's arena.
    let cost = nas::net::cost::cost(
        &nas::net::plan::lower(spec).unwrap(),
        &target,
        &target.limits(),
    );
    assert_eq!(r.breakdown.arena_bytes, cost.arena_bytes, "{what}: arena");
    assert_eq!(
        r.breakdown.weights_bytes, cost.weights_bytes,
        "{what}: weights"
    );

    // 3. Estimates within 2 % of the model's share of the ELF.
    let worst = r
        .measured
        .flash_error_pct
        .abs()
        .max(r.measured.ram_error_pct.abs());
    assert!(
        worst <= 2.0 || lang == Lang::Rust,
        "{what}: estimate off by more than 2 %: flash {} vs {} ({:+.2} %), RAM {} vs {} ({:+.2} %)",
        r.estimate.flash_bytes,
        r.measured.flash_bytes,
        r.measured.flash_error_pct,
        r.estimate.ram_bytes,
        r.measured.ram_bytes,
        r.measured.ram_error_pct
    );

    // 4. QEMU's logits equal the host reference bit for bit on real test samples.
    let em = r
        .emulation
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: not emulated: {:?}", r.emulation_skipped));
    assert_eq!(em.samples, samples);
    assert_eq!(em.bit_exact, samples, "{what}: {:?}", em.mismatches);
    assert!(
        em.predict_agrees,
        "{what}: model_predict disagrees with the reference"
    );
    assert!(
        em.stack_peak_bytes
            .is_some_and(|s| s > 0 && s < target.toolchain.stack_bytes),
        "{what}: stack {:?}",
        em.stack_peak_bytes
    );
    assert!(
        em.instructions_per_inference >= em.executed_macs,
        "{what}: {} instructions",
        em.instructions_per_inference
    );
    assert!(r.ok);
    eprintln!(
        "{what}: flash {} (est {}, {:+.2} %), RAM {} (est {}, {:+.2} %), code {}, {} instr/inference, {:.2}/MAC",
        r.measured.flash_bytes,
        r.estimate.flash_bytes,
        r.measured.flash_error_pct,
        r.measured.ram_bytes,
        r.estimate.ram_bytes,
        r.measured.ram_error_pct,
        r.measured.code_bytes,
        em.instructions_per_inference,
        em.instructions_per_mac
    );
    (r, worst)
}

#[test]
fn stm32f401re_smart_start_three_block_and_paper_sized() {
    let mut worst: f64 = 0.0;
    for (i, spec) in [NetSpec::smart_start(784, 12), three_block(), paper_sized()]
        .iter()
        .enumerate()
    {
        worst = worst.max(check(spec, "stm32f401re", 11 + i as u64, 3).1);
    }
    eprintln!("stm32f401re: worst estimate error {worst:.2} %");
}

/// First convs that the float kernel sweeps filter by filter (one channel of raw bytes, at
/// most 4 taps, no pooling) with padded windows at both ends or at one, and a last group of
/// fewer than four filters: bit-exact, and the estimates within bounds, on the M4 and M7 (the
/// smart start's sweep, no padding, is in the tests above).
#[test]
fn first_conv_sweep_with_padded_windows() {
    let nets = [
        net(vec![
            Block::new(6, 4, 1, Padding::Same),
            Block::new(16, 3, 4, Padding::Same).with_pool(PoolKind::Max, 2),
        ]),
        net(vec![
            Block::new(5, 3, 2, Padding::Same),
            Block::new(12, 4, 4, Padding::Valid),
        ]),
        net(vec![
            Block::new(9, 2, 2, Padding::Valid),
            Block::new(12, 4, 4, Padding::Same).with_pool(PoolKind::Avg, 2),
        ]),
    ];
    for (i, spec) in nets.iter().enumerate() {
        let plan = nas::net::plan::lower(spec).unwrap();
        let swept = nas::net::latency::swept_conv(&plan).expect("a swept first conv");
        let windows = nas::net::latency::sweep_windows(swept).unwrap();
        assert!(!windows.is_empty(), "{}", spec.summary());
        for target in ["stm32f401re", "stm32f746ng"] {
            check(spec, target, 41 + i as u64, 2);
        }
    }
}

#[test]
fn stm32f746ng_relinked_for_the_emulator() {
    let mut worst: f64 = 0.0;
    for (i, spec) in [NetSpec::smart_start(784, 12), paper_sized()]
        .iter()
        .enumerate()
    {
        let (r, w) = check(spec, "stm32f746ng", 21 + i as u64, 3);
        assert!(r.emulation.unwrap().image.starts_with("relinked"));
        worst = worst.max(w);
    }
    eprintln!("stm32f746ng: worst estimate error {worst:.2} %");
}

#[test]
fn stm32g071rb_soft_float() {
    let mut worst: f64 = 0.0;
    for (i, spec) in [NetSpec::smart_start(784, 12), small()].iter().enumerate() {
        let (r, w) = check(spec, "stm32g071rb", 31 + i as u64, 2);
        assert!(
            r.breakdown.runtime_bytes > 0,
            "soft-float routines expected on the M0+"
        );
        worst = worst.max(w);
    }
    eprintln!("stm32g071rb: worst estimate error {worst:.2} %");
}

/// A directory like `nas train` writes, for the F401RE: its configuration, and the spec with
/// random weights as its delivered model.
fn write_run(dir: &Path, spec: &NetSpec, seed: u64) {
    use nas::search::rundir::{TrainRunConfig, TRAIN_CONFIG};
    let target = nas::target::resolve("stm32f401re").unwrap();
    let cfg = TrainRunConfig {
        tool_version: "tests/verify.rs".into(),
        limits: target.limits(),
        target,
        data: nas::search::DataSource::Synthetic { seed },
        seed,
        spec: spec.clone(),
        train: nas::train::TrainConfig::delivery(),
        val_fraction: 0.11,
        metric: nas::search::Metric::WeightedF1,
        init: None,
        qat_epochs: 0,
        dtype: nas::net::Dtype::F32,
    };
    std::fs::create_dir_all(dir.join("best")).unwrap();
    std::fs::write(
        dir.join(TRAIN_CONFIG),
        serde_json::to_string_pretty(&cfg).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("best/spec.json"), spec.to_json()).unwrap();
    Weights::random(spec, seed)
        .save(&dir.join("best/weights.safetensors"))
        .unwrap();
}

fn nas() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nas"))
}

#[test]
fn over_budget_model_fails_naming_region_and_overflow() {
    require_tools();
    // 64 filters at stride 1 over 784 bytes: a 200 KB activation, twice the F401's 96 KB RAM.
    let spec = net(vec![
        Block::new(64, 3, 1, Padding::Same),
        Block::new(16, 3, 2, Padding::Same),
    ]);
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &spec, 5);
    let out = nas()
        .args(["verify", "--run"])
        .arg(dir.path())
        .args(["--target", "stm32f401re", "--samples", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("does not fit stm32f401re"), "{stderr}");
    assert!(stderr.contains("region RAM overflowed by"), "{stderr}");
    let over: u64 = stderr
        .split("region RAM overflowed by ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The overflow is the image's RAM over the chip's: arena + harness + stack reservation.
    let arena = nas::net::plan::lower(&spec).unwrap().arena_bytes as u64;
    assert!(
        over > arena - 98_304 && over < arena - 98_304 + 8_192,
        "{over} vs arena {arena}"
    );
    assert!(stdout.contains("fits stm32f401re: NO"), "{stdout}");

    // Fits the chip's 96 KB but not the model's 88 KB budget (arena 92,512 bytes): it links and
    // runs, and still fails, naming the budget.
    let spec = net(vec![
        Block::new(28, 3, 1, Padding::Same),
        Block::new(6, 3, 4, Padding::Same),
    ]);
    let arena = nas::net::plan::lower(&spec).unwrap().arena_bytes as u64;
    assert_eq!(arena, 92_512);
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &spec, 6);
    let out = nas()
        .args([
            "verify",
            "--target",
            "stm32f401re",
            "--samples",
            "1",
            "--run",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1/1 samples bit-exact"), "{stdout}");
    let over = stderr
        .split("region RAM: the model takes ")
        .nth(1)
        .unwrap_or_else(|| panic!("{stderr}"));
    let taken: u64 = over.split(' ').next().unwrap().parse().unwrap();
    assert!(
        over.contains(&format!(
            "over its budget of 90112 bytes by {} bytes",
            taken - 90_112
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("overflowed"), "{stderr}");
}

#[test]
fn cli_json_for_a_run_directory() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let spec = NetSpec::smart_start(784, 12);
    write_run(dir.path(), &spec, 9);
    let out = nas()
        .args([
            "verify",
            "--json",
            "--samples",
            "2",
            "--target",
            "stm32f401re",
            "--data",
        ])
        .arg(data_dir())
        .arg("--run")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["target"], "stm32f401re");
    assert_eq!(v["lang"], "c");
    assert_eq!(v["fits"], true);
    assert_eq!(v["emulation"]["bit_exact"], 2);
    assert_eq!(v["breakdown"]["arena_bytes"], 28_464);
    assert!(v["emulation"]["samples_source"]
        .as_str()
        .unwrap()
        .contains("test samples"));
    // By default the Rust kernel is verified next to the C kernel (the target is installed:
    // the Rust kernel tests fail otherwise).
    let rust = &v["rust_kernel"];
    assert_eq!(rust["lang"], "rust", "{v}");
    assert_eq!(rust["fits"], true);
    assert_eq!(rust["emulation"]["bit_exact"], 2);
    assert_eq!(rust["breakdown"]["arena_bytes"], 28_464);
    assert_eq!(rust["rust"]["rust_target"], "thumbv7em-none-eabihf");
    assert_eq!(v["notes"], serde_json::json!([]));

    // The table, with the build files kept: C in the directory, Rust in its rust/.
    let keep = dir.path().join("keep");
    let out = nas()
        .args([
            "verify",
            "--samples",
            "1",
            "--target",
            "stm32f401re",
            "--keep",
        ])
        .arg(&keep)
        .arg("--run")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(keep.join("chip.elf").is_file() && keep.join("rust/chip.elf").is_file());
    let side = stdout
        .split("kernels side by side on stm32f401re")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    for row in [
        "flash (B)",
        "RAM (B)",
        "instructions/inference",
        "instructions/MAC",
    ] {
        assert!(side.contains(row), "{side}");
    }
    assert!(
        side.contains("28,464 (= plan)    28,464 (= plan)"),
        "{side}"
    );
    assert!(side.contains("1/1                1/1"), "{side}");
}

#[test]
fn missing_toolchain_names_the_packages() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &NetSpec::smart_start(784, 12), 1);
    let out = nas()
        .args(["verify", "--run"])
        .arg(dir.path())
        .env("PATH", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm")
            && stderr.contains("arm-none-eabi-gcc"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// The Rust kernel in the same harness
// ---------------------------------------------------------------------------------------------

/// Fail, with the command that installs it, when the Rust target is missing (after trying that
/// command once).
fn require_rust_target(rust_target: &str) {
    if firmware::check_rust(rust_target).is_err() {
        let _ = Command::new("rustup")
            .args(["target", "add", rust_target])
            .status();
    }
    if let Err(e) = firmware::check_rust(rust_target) {
        panic!("the Rust kernel tests need the Rust target {rust_target}: {e:#}");
    }
}

/// Build one staticlib holding every `(spec, seed)` of a target as kernels `k0`, `k1`, … (one
/// cargo build for all of them), then verify each one's firmware as [`check_kernel`] does, and
/// check that it computes what the C kernel computes, bit for bit.
fn check_rust(target: &str, nets: &[(NetSpec, u64)], samples: usize) -> Vec<KernelReport> {
    require_tools();
    let t = nas::target::resolve(target).unwrap();
    require_rust_target(&t.toolchain.rust_target);
    let weights: Vec<Weights> = nets
        .iter()
        .map(|(s, seed)| Weights::random(s, *seed))
        .collect();
    let names: Vec<String> = (0..nets.len()).map(|i| format!("k{i}")).collect();
    let kernels: Vec<RustKernel> = nets
        .iter()
        .zip(&weights)
        .zip(&names)
        .map(|(((spec, _), weights), name)| RustKernel {
            name,
            spec,
            weights,
            quant: None,
        })
        .collect();
    let lib = Arc::new(firmware::build_rust_lib(&t, &kernels, None).unwrap());
    assert_eq!(lib.kernel_names(), names);
    assert_eq!(lib.build.rust_target, t.toolchain.rust_target);
    nets.iter()
        .zip(&names)
        .map(|((spec, seed), name)| {
            let (r, _) = check_kernel(spec, target, *seed, samples, Some(lib.clone()));
            let what = format!("Rust kernel {} on {target}", spec.summary());
            assert_eq!(&r.kernel, name);
            assert_eq!(r.rust.as_ref().unwrap().kernels_in_library, nets.len());
            // The arena symbol is the crate's `ARENA_BYTES`, the plan's arena.
            let arena = nas::net::plan::lower(spec).unwrap().arena_bytes as u64;
            let sym = r.image.symbol(&format!("{name}_arena")).unwrap();
            assert_eq!(
                (sym.size, r.breakdown.arena_bytes),
                (arena, arena),
                "{what}"
            );
            assert!(r.image.symbol_in_ram(sym), "{what}: arena not in RAM");
            // No other kernel of the library reached the image.
            for other in names.iter().filter(|n| *n != name) {
                assert!(
                    r.image.symbol(&format!("{other}_infer")).is_none(),
                    "{what}: {other} linked in too"
                );
            }
            assert!(r.breakdown.kernel_code_bytes > 0, "{what}");
            r
        })
        .collect()
}

#[test]
fn rust_kernel_stm32f401re_smart_start_and_three_block() {
    let reports = check_rust(
        "stm32f401re",
        &[(NetSpec::smart_start(784, 12), 41), (three_block(), 42)],
        3,
    );
    for r in &reports {
        assert!(r
            .rust
            .as_ref()
            .unwrap()
            .rustflags
            .join(" ")
            .contains("target-cpu=cortex-m4"));
    }
    // The same network in C: as bit-exact with the host reference, hence with the Rust
    // kernel, and the same weight tables.
    let (c, _) = check(&NetSpec::smart_start(784, 12), "stm32f401re", 41, 3);
    assert_eq!(c.emulation.unwrap().bit_exact, 3);
    assert_eq!(
        c.breakdown.weights_bytes,
        reports[0].breakdown.weights_bytes
    );
}

#[test]
fn rust_kernel_stm32g071rb_soft_float() {
    let reports = check_rust(
        "stm32g071rb",
        &[(NetSpec::smart_start(784, 12), 51), (small(), 52)],
        2,
    );
    for r in &reports {
        // Soft-float from Rust's compiler_builtins: counted as runtime, not kernel code.
        assert!(
            r.breakdown
                .runtime_functions
                .iter()
                .any(|f| f.name.starts_with("__aeabi_f")),
            "{:?}",
            r.breakdown.runtime_functions
        );
    }
}

#[test]
fn rust_kernel_stm32f746ng_relinked_for_the_emulator() {
    let reports = check_rust("stm32f746ng", &[(paper_sized(), 61)], 2);
    assert!(reports[0]
        .emulation
        .as_ref()
        .unwrap()
        .image
        .starts_with("relinked"));
}

#[test]
fn missing_rust_target_is_a_note_with_both_and_an_error_with_rust() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &NetSpec::smart_start(784, 12), 3);
    // A profile whose Rust target no toolchain has.
    let profile = nas::target::builtin()
        .into_iter()
        .find(|t| t.name == "stm32f401re")
        .unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("targets/stm32f401re.toml"),
    )
    .unwrap()
    .replace(
        &format!("rust_target = \"{}\"", profile.toolchain.rust_target),
        "rust_target = \"thumbv7em-nas-missing-eabihf\"",
    );
    assert!(text.contains("thumbv7em-nas-missing-eabihf"));
    let toml = dir.path().join("board.toml");
    std::fs::write(&toml, text).unwrap();
    let verify = |lang: &str| {
        nas()
            .args(["verify", "--samples", "1", "--lang", lang, "--target"])
            .arg(&toml)
            .arg("--run")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let hint = "rustup target add thumbv7em-nas-missing-eabihf";
    let out = verify("both");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("C kernel") && !stdout.contains("Rust kernel:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("NOTE: the Rust kernel was not built") && stdout.contains(hint),
        "{stdout}"
    );
    assert!(stderr.contains(hint), "{stderr}");
    let out = verify("rust");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(hint), "{stderr}");
}
