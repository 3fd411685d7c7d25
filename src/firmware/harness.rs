//! The bare-metal harness around the kernel: linker script, configuration header, embedded
//! samples, and compiling it all.

use super::*;

/// Render the linker script for a memory map.
pub fn linker_script(target: &Target, purpose: &str, flash: Region, ram: Region) -> Result<String> {
    let mut ctx = tera::Context::new();
    // Text in comments goes through the one escaping owner, checked profile or not.
    ctx.insert("target", &crate::codegen::comment_safe(&target.name));
    ctx.insert("purpose", &crate::codegen::comment_safe(purpose));
    ctx.insert("flash_origin", &format!("{:#010x}", flash.origin));
    ctx.insert("flash_length", &flash.length);
    ctx.insert("ram_origin", &format!("{:#010x}", ram.origin));
    ctx.insert("ram_length", &ram.length);
    ctx.insert("stack_bytes", &target.toolchain.stack_bytes);
    tera::Tera::one_off(LINK_TEMPLATE, &ctx, false)
        .context("internal: rendering firmware/link.ld.tera")
}

/// The harness's configuration: the kernel's entry points (`NAME_infer`, `NAME_predict`), from
/// the generated C header or declared for the Rust staticlib.
pub(crate) fn config_header(
    target: &Target,
    spec: &NetSpec,
    samples: usize,
    lang: Lang,
    kernel: &str,
) -> Result<String> {
    let mut ctx = tera::Context::new();
    ctx.insert("target", &crate::codegen::comment_safe(&target.name));
    ctx.insert("kernel_lang", lang.label());
    ctx.insert(
        "model_header",
        &match lang {
            Lang::C => format!("{kernel}.h"),
            Lang::Rust => String::new(),
        },
    );
    ctx.insert("infer_fn", &format!("{kernel}_infer"));
    ctx.insert("predict_fn", &format!("{kernel}_predict"));
    ctx.insert("input_len", &(spec.input_len * spec.input_channels));
    ctx.insert("classes", &spec.classes);
    ctx.insert("samples", &samples);
    ctx.insert("has_fpu", &u8::from(target.fpu));
    tera::Tera::one_off(CONFIG_TEMPLATE, &ctx, false)
        .context("internal: rendering firmware/nas_config.h.tera")
}

/// The embedded samples as C (data only).
pub(crate) fn samples_source(samples: &Samples, len: usize) -> String {
    let mut s = String::from("/* Test samples embedded by `nas verify`. Generated; do not edit. */\n#include <stdint.h>\n\n");
    let _ = writeln!(
        s,
        "const uint8_t nas_samples[{}][{len}] = {{",
        samples.inputs.len()
    );
    for x in &samples.inputs {
        s.push_str("    {");
        for (i, chunk) in x.chunks(24).enumerate() {
            if i > 0 {
                s.push_str("\n     ");
            }
            let line: Vec<String> = chunk.iter().map(|b| b.to_string()).collect();
            s.push_str(&line.join(", "));
            s.push(',');
        }
        s.push_str("},\n");
    }
    s.push_str("};\n");
    s
}

/// The compiled objects of one firmware.
pub(crate) struct Compiled {
    /// Object files (and the Rust staticlib), relative to the build directory or absolute.
    pub(crate) objects: Vec<String>,
    /// Symbols the kernel's object file (or the Rust library's own code) defines.
    pub(crate) kernel_symbols: BTreeSet<String>,
    /// The flags every C object was compiled with.
    pub(crate) cflags: Vec<String>,
    /// The kernel's name, the prefix of its symbols.
    pub(crate) kernel: String,
    pub(crate) rust: Option<RustBuild>,
}

/// The harness's C sources, compiled into `nas_harness_*.o`.
const HARNESS_C: [&str; 4] = [
    "nas_harness_startup.c",
    "nas_harness_semihost.c",
    "nas_harness_main.c",
    "nas_harness_samples.c",
];

/// Write the harness and the samples to `d` and compile them, with the kernel: the generated C
/// kernel, compiled with the target's flags and [`COMMON_CFLAGS`] only (the harness gets a few
/// more), or the Rust staticlib (from `opts.rust_lib`, else built here in `d/rust-lib`).
pub(crate) fn compile(
    d: &Path,
    spec: &NetSpec,
    weights: &Weights,
    lowered: &crate::lower::Lowered,
    target: &Target,
    opts: &Options,
    estimate: &Cost,
) -> Result<Compiled> {
    let (kernel, rust_lib) = match opts.lang {
        Lang::C => (
            write_c_kernel(d, spec, weights, target, opts, estimate)?,
            None,
        ),
        Lang::Rust => {
            let (name, lib) = rust_kernel(d, spec, weights, lowered, target, opts)?;
            (name, Some(lib))
        }
    };
    write_harness(d, spec, target, opts, &kernel)?;
    let mut cflags: Vec<String> = target.toolchain.cflags.clone();
    cflags.extend(COMMON_CFLAGS.iter().map(|s| s.to_string()));
    compile_c(d, &cflags, &kernel, opts.lang)?;
    let (objects, kernel_symbols, rust) = objects_to_link(d, &kernel, rust_lib.as_deref())?;
    Ok(Compiled {
        objects,
        kernel_symbols,
        cflags,
        kernel,
        rust,
    })
}

/// Generate the C kernel (float, or int8 when `opts.quant` is set) into `d`; its name.
fn write_c_kernel(
    d: &Path,
    spec: &NetSpec,
    weights: &Weights,
    target: &Target,
    opts: &Options,
    estimate: &Cost,
) -> Result<String> {
    let note = Provenance::new("nas verify").with_footprint(target, estimate.clone());
    let files = match &opts.quant {
        Some(q) => crate::codegen::int8::generate_c_int8(spec, q, KERNEL_NAME, &note)?,
        None => codegen::generate_c(spec, weights, KERNEL_NAME, &note)?,
    };
    codegen::write_files(&files, d)?;
    Ok(KERNEL_NAME.to_string())
}

/// The Rust library holding this network (`opts.rust_lib`, else one built in `d/rust-lib`) and
/// the name of its kernel there.
fn rust_kernel(
    d: &Path,
    spec: &NetSpec,
    weights: &Weights,
    lowered: &crate::lower::Lowered,
    target: &Target,
    opts: &Options,
) -> Result<(String, Arc<RustLib>)> {
    let lib = match &opts.rust_lib {
        Some(lib) => {
            ensure!(
                lib.target == target.name,
                "the Rust library was built for {}, not {}",
                lib.target,
                target.name
            );
            lib.clone()
        }
        None => Arc::new(build_rust_lib(
            target,
            &[RustKernel {
                name: KERNEL_NAME,
                spec,
                weights,
                quant: opts.quant.as_deref(),
            }],
            Some(&d.join("rust-lib")),
        )?),
    };
    let name = lib.find(lowered, opts.quant.as_deref()).with_context(|| {
        format!(
            "the Rust library {} holds no kernel with these weights (it has {})",
            lib.build.library.display(),
            lib.kernel_names().join(", ")
        )
    })?;
    Ok((name.to_string(), lib))
}

/// Write the harness's sources, its configuration and the embedded samples to `d`.
fn write_harness(
    d: &Path,
    spec: &NetSpec,
    target: &Target,
    opts: &Options,
    kernel: &str,
) -> Result<()> {
    let samples = &opts.samples;
    for (name, text) in HARNESS_SOURCES {
        write(d, name, text)?;
    }
    let input_len = spec.input_len * spec.input_channels;
    write(
        d,
        "nas_config.h",
        &config_header(target, spec, samples.inputs.len(), opts.lang, kernel)?,
    )?;
    write(
        d,
        "nas_harness_samples.c",
        &samples_source(samples, input_len),
    )
}

/// Compile the harness, and the C kernel when the kernel is C, concurrently in `d`.
fn compile_c(d: &Path, cflags: &[String], kernel: &str, lang: Lang) -> Result<()> {
    let mut kernel_args = cflags.to_vec();
    kernel_args.extend([
        "-c".into(),
        format!("{kernel}.c"),
        "-o".into(),
        format!("{kernel}.o"),
    ]);
    let mut harness_args = cflags.to_vec();
    harness_args.extend(HARNESS_CFLAGS.iter().map(|s| s.to_string()));
    harness_args.extend(["-I.".into(), "-c".into()]);
    harness_args.extend(HARNESS_C.iter().map(|s| s.to_string()));
    let (k, h) = std::thread::scope(|s| {
        let k = (lang == Lang::C).then(|| s.spawn(|| run_tool(d, &kernel_args)));
        let h = run_tool(d, &harness_args);
        (k.map(|k| k.join().expect("compiler thread")), h)
    });
    if let Some(Err(e)) = k.transpose()? {
        bail!(
            "compiling the generated kernel failed ({GCC} {}):\n{}",
            kernel_args.join(" "),
            tail(&e, 20)
        );
    }
    if let Err(e) = h? {
        bail!(
            "compiling the firmware harness failed ({GCC} {}):\n{}",
            harness_args.join(" "),
            tail(&e, 20)
        );
    }
    Ok(())
}

/// The objects to link (the C kernel's first, the Rust staticlib last), the symbols the kernel
/// defines, and how the Rust kernel was built.
fn objects_to_link(
    d: &Path,
    kernel: &str,
    rust_lib: Option<&RustLib>,
) -> Result<(Vec<String>, BTreeSet<String>, Option<RustBuild>)> {
    let mut objects: Vec<String> = HARNESS_C.iter().map(|c| c.replace(".c", ".o")).collect();
    match rust_lib {
        None => {
            let kernel_o = format!("{kernel}.o");
            objects.insert(0, kernel_o.clone());
            let symbols = crate::elf::defined_symbols(&std::fs::read(d.join(&kernel_o))?)
                .context("reading the kernel's object file")?;
            Ok((objects, symbols, None))
        }
        Some(lib) => {
            let a = lib.build.library.to_str().with_context(|| {
                format!(
                    "the Rust library's path {} is not UTF-8",
                    lib.build.library.display()
                )
            })?;
            objects.push(a.to_string());
            Ok((objects, lib.kernel_symbols.clone(), Some(lib.build.clone())))
        }
    }
}
