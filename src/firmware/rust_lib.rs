//! The Rust kernel in firmware: the generated `no_std` crates wrapped in a staticlib behind
//! C entry points, built with cargo for the profile's Rust target.

use super::*;

pub(crate) const RUST_CARGO_TEMPLATE: &str = include_str!("../../firmware/rust/Cargo.toml.tera");
pub(crate) const RUST_LIB_TEMPLATE: &str = include_str!("../../firmware/rust/lib.rs.tera");
/// The package of the generated staticlib (`lib<name>.a`).
pub const RUST_LIB_CRATE: &str = "nas_fw_kernels";
/// `[profile.release]` of the staticlib: what a firmware release build uses.
pub const RUST_PROFILE: &[&str] = &[
    "opt-level = \"s\"",
    "panic = \"abort\"",
    "lto = true",
    "codegen-units = 1",
    "debug = false",
    "incremental = false",
];

/// How to get a Rust target's standard library.
pub fn rust_install_hint(rust_target: &str) -> String {
    format!("install it with `rustup target add {rust_target}`")
}

/// The Rust toolchain `nas verify` builds the Rust kernel with.
#[derive(Debug, Clone)]
pub struct RustTools {
    /// `rustc --version`.
    pub rustc: String,
}

pub(crate) fn rust_command(tool: &str) -> Command {
    let mut c = Command::new(tool);
    // Deterministic builds: the caller's flags, target and profile overrides do not apply.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k == "RUSTFLAGS"
            || k == "CARGO_ENCODED_RUSTFLAGS"
            || k == "CARGO_TARGET_DIR"
            || k.starts_with("CARGO_BUILD_")
            || k.starts_with("CARGO_PROFILE_")
        {
            c.env_remove(k.as_ref());
        }
    }
    c
}

/// Check that cargo and rustc run and that the standard library of `rust_target` is installed.
/// The error says how to install what is missing.
pub fn check_rust(rust_target: &str) -> Result<RustTools> {
    let no_rust = |e: String| {
        anyhow::anyhow!(
            "cannot build the Rust kernel: {e}; install Rust with rustup (https://rustup.rs), then {}",
            rust_install_hint(rust_target)
        )
    };
    let run = |tool: &str, args: &[&str]| -> Result<String> {
        let out = rust_command(tool)
            .args(args)
            .output()
            .map_err(|e| no_rust(format!("cannot run {tool} ({e})")))?;
        if !out.status.success() {
            return Err(no_rust(format!(
                "`{tool} {}` failed: {}",
                args.join(" "),
                tail(&String::from_utf8_lossy(&out.stderr), 5)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    run("cargo", &["--version"])?;
    let rustc = run("rustc", &["--version"])?;
    let sysroot = PathBuf::from(run("rustc", &["--print", "sysroot"])?);
    let lib = sysroot.join("lib/rustlib").join(rust_target).join("lib");
    let has_core = std::fs::read_dir(&lib).is_ok_and(|d| {
        d.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("libcore-") && n.ends_with(".rlib")
        })
    });
    ensure!(
        has_core,
        "the Rust target {rust_target} is not installed for {rustc} (no core library in {}): {}",
        lib.display(),
        rust_install_hint(rust_target)
    );
    Ok(RustTools { rustc })
}

/// rustc's code-generation flags for a profile: `-C target-cpu=` the profile's core (GCC's
/// `-mcpu` names are LLVM's for Cortex-M), so that the Rust kernel is tuned for the core the C
/// kernel is compiled for. (LLVM's cortex-m7 also assumes a double-precision FPU; the kernel
/// does single-precision arithmetic only, so that changes no instruction on an FPv5-SP core.)
pub fn rustflags(target: &Target) -> Vec<String> {
    vec!["-C".to_string(), format!("target-cpu={}", target.core)]
}

/// How the Rust kernel of a report was built.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RustBuild {
    pub rust_target: String,
    /// `rustc --version`.
    pub rustc: String,
    pub rustflags: Vec<String>,
    /// The staticlib's `[profile.release]`.
    pub profile: Vec<String>,
    pub library: PathBuf,
    /// Kernels in the library (one unless it was shared between verifications).
    pub kernels_in_library: usize,
    /// Wall time of `cargo build`.
    pub build_seconds: f64,
}

/// A network to build into a Rust firmware library.
#[derive(Debug, Clone, Copy)]
pub struct RustKernel<'a> {
    /// Crate name and symbol prefix (`NAME_infer`, `NAME_arena`); sanitised.
    pub name: &'a str,
    pub spec: &'a NetSpec,
    pub weights: &'a Weights,
    /// Deploy in int8 (the network quantized); `None`: float32.
    pub quant: Option<&'a QuantLowered>,
}

/// A built Rust firmware library: one staticlib holding one or more generated kernels, each
/// behind C entry points named like the C kernel's. Linked into the C harness by [`verify`].
#[derive(Debug)]
pub struct RustLib {
    /// The target profile it was built for.
    pub target: String,
    pub build: RustBuild,
    /// (name, fingerprint of the network's constants) of each kernel.
    pub(crate) kernels: Vec<(String, u64)>,
    /// Symbols the library's own code defines (not `compiler_builtins`).
    pub(crate) kernel_symbols: BTreeSet<String>,
    /// Keeps a temporary build directory alive as long as the library.
    pub(crate) _dir: BuildDir,
}

impl RustLib {
    /// Names of the kernels it holds.
    pub fn kernel_names(&self) -> Vec<&str> {
        self.kernels.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The kernel built from exactly these constants.
    pub(crate) fn find(
        &self,
        lowered: &crate::lower::Lowered,
        quant: Option<&QuantLowered>,
    ) -> Option<&str> {
        let f = match quant {
            Some(q) => fingerprint_int8(q),
            None => fingerprint(lowered),
        };
        self.kernels
            .iter()
            .find(|(_, g)| *g == f)
            .map(|(n, _)| n.as_str())
    }
}

/// A hash of a quantized network: plan and int8 constants.
pub(crate) fn fingerprint_int8(q: &QuantLowered) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{:?}", q.plan).hash(&mut h);
    for l in &q.layers {
        l.weights.hash(&mut h);
        l.bias.hash(&mut h);
        l.multiplier.hash(&mut h);
        l.shift.hash(&mut h);
        l.output.zero_point.hash(&mut h);
        l.output.scale.to_bits().hash(&mut h);
    }
    h.finish()
}

/// A hash of a lowered network: plan and constants, bit for bit.
pub(crate) fn fingerprint(lowered: &crate::lower::Lowered) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{:?}", lowered.plan).hash(&mut h);
    for l in &lowered.layers {
        for v in l.weights.iter().chain(&l.bias) {
            v.to_bits().hash(&mut h);
        }
        l.weights.len().hash(&mut h);
    }
    h.finish()
}

/// Generate the kernels' crates and the staticlib wrapping them in `dir` (a temporary
/// directory when `None`), and build it with `cargo build --release --target` for the
/// profile's `toolchain.rust_target`. The cargo target directory is `dir/target`.
pub fn build_rust_lib(
    target: &Target,
    kernels: &[RustKernel],
    dir: Option<&Path>,
) -> Result<RustLib> {
    ensure!(!kernels.is_empty(), "no kernels to build");
    let rust_target = target.toolchain.rust_target.clone();
    let tools = check_rust(&rust_target)?;
    let mut dir = BuildDir::new(dir)?;
    match build_rust_lib_in(&dir.path, target, kernels, &tools) {
        Ok((build, names, kernel_symbols)) => Ok(RustLib {
            target: target.name.clone(),
            build,
            kernels: names,
            kernel_symbols,
            _dir: dir,
        }),
        Err(e) => {
            dir.keep = true;
            Err(e.context(format!("build files kept in {}", dir.path.display())))
        }
    }
}

pub(crate) type BuiltLib = (RustBuild, Vec<(String, u64)>, BTreeSet<String>);

pub(crate) fn build_rust_lib_in(
    d: &Path,
    target: &Target,
    kernels: &[RustKernel],
    tools: &RustTools,
) -> Result<BuiltLib> {
    let rust_target = &target.toolchain.rust_target;
    let mut names: Vec<(String, u64)> = Vec::new();
    let mut ctx_kernels = Vec::new();
    for k in kernels {
        let name = codegen::sanitize_identifier(k.name)?;
        ensure!(
            name != RUST_LIB_CRATE && !names.iter().any(|(n, _)| *n == name),
            "kernel name {name} is used twice"
        );
        let (ctx, constants) = write_kernel_crate(d, target, k, &name)?;
        ctx_kernels.push(ctx);
        names.push((name, constants));
    }
    write_lib_crate(d, target, &ctx_kernels)?;

    let flags = rustflags(target);
    let d = std::path::absolute(d).with_context(|| format!("resolving {}", d.display()))?;
    let target_dir = d.join("target");
    let build_seconds = cargo_build(&d, &target_dir, rust_target, &flags)?;
    let library = target_dir
        .join(rust_target)
        .join("release")
        .join(format!("lib{RUST_LIB_CRATE}.a"));
    let kernel_symbols = library_symbols(&library, &names)?;
    let build = RustBuild {
        rust_target: rust_target.clone(),
        rustc: tools.rustc.clone(),
        rustflags: flags,
        profile: RUST_PROFILE.iter().map(|s| s.to_string()).collect(),
        library,
        kernels_in_library: names.len(),
        build_seconds,
    };
    Ok((build, names, kernel_symbols))
}

/// Generate one kernel's crate in `d/name`; its entry in the staticlib's templates, and the
/// fingerprint of its constants.
fn write_kernel_crate(
    d: &Path,
    target: &Target,
    k: &RustKernel,
    name: &str,
) -> Result<(BTreeMap<&'static str, String>, u64)> {
    let lowered = crate::lower::lower_weights(k.spec, k.weights)?;
    let dtype = if k.quant.is_some() {
        Dtype::Int8
    } else {
        Dtype::F32
    };
    let means = k.quant.map_or(0, |q| q.requantizing_means());
    let estimate = cost::cost_deployed(&lowered.plan, target, &target.limits(), dtype, means);
    let note = Provenance::new("nas verify").with_footprint(target, estimate.clone());
    let files = match k.quant {
        Some(q) => crate::codegen::int8::generate_rust_int8(k.spec, q, name, &note)?,
        None => codegen::generate_rust(k.spec, k.weights, name, &note)?,
    };
    codegen::write_files(&files, &d.join(name))?;
    let mut c = BTreeMap::new();
    c.insert("name", name.to_string());
    c.insert("crate_name", name.to_string());
    c.insert("arena_bytes", estimate.arena_bytes.to_string());
    // The float crates also take inputs already scaled to [0, 1], unless they embed bytes.
    let scaled_input = k.quant.is_none() && k.spec.input.is_scale();
    c.insert("infer_f32", scaled_input.to_string());
    // The int8 crates' SMLAD path, on cores that have it.
    let dsp = k.quant.is_some() && target.has_dsp();
    c.insert("features", if dsp { "\"dsp\"" } else { "" }.to_string());
    let constants = match k.quant {
        Some(q) => fingerprint_int8(q),
        None => fingerprint(&lowered),
    };
    Ok((c, constants))
}

/// Write the staticlib wrapping the kernels' crates: its `Cargo.toml` and `lib.rs`.
fn write_lib_crate(
    d: &Path,
    target: &Target,
    ctx_kernels: &[BTreeMap<&'static str, String>],
) -> Result<()> {
    let mut ctx = tera::Context::new();
    ctx.insert("target", &crate::codegen::comment_safe(&target.name));
    ctx.insert(
        "rust_target",
        &crate::codegen::comment_safe(&target.toolchain.rust_target),
    );
    ctx.insert("crate_name", RUST_LIB_CRATE);
    ctx.insert("kernels", ctx_kernels);
    ctx.insert("profile", RUST_PROFILE);
    write(
        d,
        "Cargo.toml",
        &tera::Tera::one_off(RUST_CARGO_TEMPLATE, &ctx, false)
            .context("internal: rendering firmware/rust/Cargo.toml.tera")?,
    )?;
    write(
        d,
        "lib.rs",
        &tera::Tera::one_off(RUST_LIB_TEMPLATE, &ctx, false)
            .context("internal: rendering firmware/rust/lib.rs.tera")?,
    )
}

/// [`write_lib_crate`] without kernels, for the tests of what reaches its files.
#[cfg(test)]
pub(crate) fn write_lib_crate_for_test(d: &Path, target: &Target) -> Result<()> {
    write_lib_crate(d, target, &[])
}

/// `cargo build --release` the staticlib in `d` (absolute) for `rust_target` with `flags`;
/// the build's wall time in seconds.
fn cargo_build(d: &Path, target_dir: &Path, rust_target: &str, flags: &[String]) -> Result<f64> {
    let manifest = d.join("Cargo.toml");
    let args: Vec<&std::ffi::OsStr> = vec![
        "build".as_ref(),
        "--release".as_ref(),
        "--offline".as_ref(),
        "--quiet".as_ref(),
        "--target".as_ref(),
        rust_target.as_ref(),
        "--manifest-path".as_ref(),
        manifest.as_ref(),
        "--target-dir".as_ref(),
        target_dir.as_ref(),
    ];
    // Run from this process's directory, as `check_rust` did: rustup picks the same toolchain.
    let start = Instant::now();
    let out = rust_command("cargo")
        .args(&args)
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"))
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run cargo ({e})"))?;
    let build_seconds = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "building the Rust kernel failed (cargo {} with rustflags {}):\n{}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            flags.join(" "),
            tail(&String::from_utf8_lossy(&out.stderr), 30)
        );
    }
    Ok(build_seconds)
}

/// The symbols the staticlib's own code defines (not `compiler_builtins`), checked to hold
/// each kernel's `NAME_infer` and `NAME_arena`.
fn library_symbols(library: &Path, names: &[(String, u64)]) -> Result<BTreeSet<String>> {
    let data = std::fs::read(library)
        .with_context(|| format!("cargo built no library {}", library.display()))?;
    let members = crate::elf::archive_members(&data)
        .with_context(|| format!("reading {}", library.display()))?;
    let kernel_symbols: BTreeSet<String> = members
        .into_iter()
        .filter(|m| !m.name.starts_with("compiler_builtins"))
        .flat_map(|m| m.symbols)
        .collect();
    for (name, _) in names {
        ensure!(
            kernel_symbols.contains(&format!("{name}_infer"))
                && kernel_symbols.contains(&format!("{name}_arena")),
            "internal: {} does not define {name}_infer and {name}_arena",
            library.display()
        );
    }
    Ok(kernel_symbols)
}

/// Whether a symbol of a Rust kernel crate `krate` is one of its weight tables: a static of its
/// `weights` module (the mangled path holds `<len>krate` and `7weights`, legacy and v0 alike).
pub(crate) fn is_rust_weight(symbol: &str, krate: &str) -> bool {
    symbol.contains(&format!("{}{krate}", krate.len())) && symbol.contains("7weights")
}

/// A readable name for a mangled Rust symbol (legacy `_ZN…E` mangling: the path without the
/// hash); other names unchanged.
pub fn demangle(symbol: &str) -> String {
    let Some(mut rest) = symbol.strip_prefix("_ZN") else {
        return symbol.to_string();
    };
    let mut parts: Vec<String> = Vec::new();
    while let Some(c) = rest.chars().next() {
        if c == 'E' {
            break;
        }
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(n) = digits.parse::<usize>() else {
            return symbol.to_string();
        };
        rest = &rest[digits.len()..];
        if rest.len() < n {
            return symbol.to_string();
        }
        let part = &rest[..n];
        rest = &rest[n..];
        let is_hash = part.len() == 17
            && part.starts_with('h')
            && part[1..].chars().all(|c| c.is_ascii_hexdigit());
        if !is_hash {
            parts.push(
                part.replace("$LT$", "<")
                    .replace("$GT$", ">")
                    .replace("$u20$", " ")
                    .replace("$RF$", "&")
                    .replace("$C$", ",")
                    .replace("..", "::"),
            );
        }
    }
    if parts.is_empty() {
        symbol.to_string()
    } else {
        parts.join("::")
    }
}
