//! Export end to end: generate C and Rust kernels for several architectures, build them with the
//! host toolchains, run them on real samples and compare with the host reference (bit for bit)
//! and with burn's inference of the same weights (1e-4 absolute, identical argmax).
//!
//! Needs `cc`, `cargo`, the ISCX dataset in `../shared/data/` and, for the cross-compilation
//! tests, `arm-none-eabi-gcc` and the `thumbv7em-none-eabihf` Rust target. Each test says how to
//! get what it misses instead of skipping.

use nas::codegen::{generate_c, generate_rust, sanitize_identifier, write_files, Provenance};
use nas::lower::{lower_weights, reference_logits, reference_logits_f32, Lowered};
use nas::metrics::argmax;
use nas::net::{Block, NetSpec, Padding, PoolKind};
use nas::weights::Weights;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const HOSTILE_NAME: &str = "foo-bar; system(\"rm -rf /\")";
const TOL: f32 = 1e-4;
/// Samples per class compared logit by logit.
const PER_CLASS: usize = 5;

fn data_dir() -> PathBuf {
    nas::data::shared_data_dir().join("iscx-vpn2016-12class-sessionl7")
}

/// The ISCX test split: (samples, labels, len).
fn test_split() -> &'static (Vec<u8>, Vec<u8>, usize) {
    static DATA: OnceLock<(Vec<u8>, Vec<u8>, usize)> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = data_dir();
        assert!(
            dir.is_dir(),
            "the ISCX dataset is missing: expected {} (see ../shared/data/README.md)",
            dir.display()
        );
        let (n, len, samples) =
            nas::data::read_idx_images(&dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
        let labels = nas::data::read_idx_labels(&dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
        assert_eq!(labels.len(), n);
        (samples, labels, len)
    })
}

/// The first `PER_CLASS` test samples of each class, concatenated.
fn compare_samples() -> (Vec<u8>, usize) {
    let (samples, labels, len) = test_split();
    let mut taken = [0usize; 256];
    let mut out = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        if taken[l as usize] < PER_CLASS {
            taken[l as usize] += 1;
            out.extend_from_slice(&samples[i * len..(i + 1) * len]);
        }
    }
    let n = out.len() / len;
    (out, n)
}

/// Five blocks mixing valid/same padding, strides 1, 2, 3, 4 and 6, max and average pooling:
/// 784 →(k7 s1 valid) 778 →(k5 s2 same) 389 →max2 194 →(k3 s3 valid) 64 →avg3 21 →(k4 s4 same) 6
/// →(k2 s6 valid) 1.
fn five_block() -> NetSpec {
    let spec = NetSpec::from_blocks(
        784,
        12,
        vec![
            Block::new(16, 7, 1, Padding::Valid),
            Block::new(24, 5, 2, Padding::Same).with_pool(PoolKind::Max, 2),
            Block::new(32, 3, 3, Padding::Valid).with_pool(PoolKind::Avg, 3),
            Block::new(24, 4, 4, Padding::Same),
            Block::new(16, 2, 6, Padding::Valid),
        ],
    );
    assert_eq!(spec.shapes().unwrap().last().unwrap().out_len, 1);
    spec
}

/// Random block lists (small filters, to keep compile times short), corrected into valid specs.
fn random_spec(seed: u64) -> NetSpec {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let depth = rng.random_range(1..=5);
    let blocks = (0..depth)
        .map(|_| {
            let pool = rng.random_bool(0.5).then(|| {
                let kind = if rng.random_bool(0.5) {
                    PoolKind::Max
                } else {
                    PoolKind::Avg
                };
                (kind, rng.random_range(2..=3))
            });
            let padding = if rng.random_bool(0.5) {
                Padding::Valid
            } else {
                Padding::Same
            };
            let b = Block::new(
                rng.random_range(4..=24),
                rng.random_range(2..=8),
                rng.random_range(1..=6),
                padding,
            );
            match pool {
                Some((kind, size)) => b.with_pool(kind, size),
                None => b,
            }
        })
        .collect();
    let spec = NetSpec::from_blocks(784, 12, blocks);
    spec.validate().unwrap();
    spec
}

struct Case {
    /// The `--name` given to the generator (sanitised into `ident`).
    name: String,
    ident: String,
    spec: NetSpec,
    weights: Weights,
    lowered: Lowered,
}

/// Every architecture under test; the first is the smart start with the default name.
fn cases() -> Vec<Case> {
    let mut v: Vec<(String, NetSpec)> = vec![
        ("model".into(), NetSpec::smart_start(784, 12)),
        ("five-block".into(), five_block()),
        (HOSTILE_NAME.into(), five_block()),
    ];
    for i in 0..10 {
        v.push((format!("random {i}"), random_spec(100 + i)));
    }
    v.into_iter()
        .enumerate()
        .map(|(i, (name, spec))| {
            let weights = Weights::random(&spec, 1000 + i as u64);
            let lowered = lower_weights(&spec, &weights).unwrap();
            Case {
                ident: sanitize_identifier(&name).unwrap(),
                name,
                spec,
                weights,
                lowered,
            }
        })
        .collect()
}

fn note() -> Provenance {
    Provenance::new("tests/export.rs")
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({cmd:?}): {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tempdir() -> tempfile::TempDir {
    let mut d = tempfile::TempDir::with_prefix("nas-export-").unwrap();
    if std::env::var_os("NAS_KEEP_TMP").is_some() {
        eprintln!("keeping {}", d.path().display());
        d.disable_cleanup(true);
    }
    d
}

/// Outputs of a driver: (model, sample, kind) → values (bit patterns for logits, class for `p`).
type Rows = HashMap<(usize, usize, char), Vec<u32>>;

fn parse_rows(text: &str) -> (Rows, Option<f64>) {
    let mut rows = Rows::new();
    let mut ns = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f[0] == "ns" {
            ns = Some(f[1].parse().unwrap());
            continue;
        }
        let kind = f[2].chars().next().unwrap();
        let vals = f[3..]
            .iter()
            .map(|x| {
                if kind == 'p' {
                    x.parse().unwrap()
                } else {
                    u32::from_str_radix(x, 16).unwrap()
                }
            })
            .collect();
        rows.insert((f[0].parse().unwrap(), f[1].parse().unwrap(), kind), vals);
    }
    (rows, ns)
}

/// Check a driver's rows bit for bit against the host reference.
fn check_against_reference(lang: &str, cases: &[Case], rows: &Rows, samples: &[u8], n: usize) {
    for (m, c) in cases.iter().enumerate() {
        let len = c.spec.input_len;
        for s in 0..n {
            let x = &samples[s * len..(s + 1) * len];
            let want = reference_logits(&c.lowered, x);
            let xf: Vec<f32> = x.iter().map(|&b| b as f32 / 255.0).collect();
            let want_f = reference_logits_f32(&c.lowered, &xf);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let got = rows
                .get(&(m, s, 'u'))
                .unwrap_or_else(|| panic!("{lang}: no row for model {m} sample {s}"));
            assert_eq!(
                got,
                &bits(&want),
                "{lang} {} ({}) sample {s}: u8 logits differ from the reference",
                c.name,
                c.spec.summary()
            );
            assert_eq!(
                rows[&(m, s, 'f')],
                bits(&want_f),
                "{lang} {} sample {s}: f32 logits differ",
                c.name
            );
            assert_eq!(
                rows[&(m, s, 'p')],
                vec![argmax(&want) as u32],
                "{lang} {} sample {s}: predict",
                c.name
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// C
// ---------------------------------------------------------------------------------------------

fn c_driver(cases: &[Case]) -> String {
    let mut s = String::from(
        "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <time.h>\n",
    );
    for c in cases {
        s += &format!("#include \"{}.h\"\n", c.ident);
    }
    s += r#"
static void row(int m, long s, char kind, const float *l, int k)
{
    int i;
    printf("%d %ld %c", m, s, kind);
    for (i = 0; i < k; ++i) {
        uint32_t u;
        memcpy(&u, &l[i], sizeof u);
        printf(" %08lx", (unsigned long)u);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    static unsigned char buf[1 << 22];
    long n, s;
    size_t got;
    FILE *f;
    if (argc != 4) return 2;
    f = fopen(argv[1], "rb");
    if (!f) return 3;
    got = fread(buf, 1, sizeof buf, f);
    fclose(f);
    n = atol(argv[2]);
    if (strcmp(argv[3], "time") == 0) {
        clock_t t0 = clock();
        int p = 0;
        for (s = 0; s < n; ++s) p += model_predict(buf + s * MODEL_INPUT_LEN);
        printf("ns %f\n", (double)(clock() - t0) / CLOCKS_PER_SEC * 1e9 / (double)n);
        for (s = 0; s < n; ++s) printf("0 %ld p %d\n", s, model_predict(buf + s * MODEL_INPUT_LEN));
        return p < 0;
    }
"#;
    for (m, c) in cases.iter().enumerate() {
        let (id, up) = (&c.ident, c.ident.to_ascii_uppercase());
        s += &format!(
            r#"    {{
        static float l[{up}_NUM_CLASSES];
        static float xf[{up}_INPUT_LEN];
        if (got < (size_t)n * {up}_INPUT_LEN) return 4;
        for (s = 0; s < n; ++s) {{
            const uint8_t *x = buf + s * {up}_INPUT_LEN;
            int i;
            {id}_infer(x, l);
            row({m}, s, 'u', l, {up}_NUM_CLASSES);
            for (i = 0; i < {up}_INPUT_LEN; ++i) xf[i] = (float)x[i] / 255.0f;
            {id}_infer_f32(xf, l);
            row({m}, s, 'f', l, {up}_NUM_CLASSES);
            printf("%d %ld p %d\n", {m}, s, {id}_predict(x));
        }}
    }}
"#
        );
    }
    s += "    return 0;\n}\n";
    s
}

/// Generate every case's C into `dir` and build one driver with the host `cc`.
/// Host C flags: strict C99, and no FMA contraction so results are bit-exact with the reference.
const HOST_CFLAGS: [&str; 7] = [
    "-std=c99",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-O2",
    "-ffp-contract=off",
];

fn build_c(cases: &[Case], dir: &Path) -> PathBuf {
    let mut sources = Vec::new();
    for c in cases {
        let files = generate_c(&c.spec, &c.weights, &c.name, &note()).unwrap();
        write_files(&files, dir).unwrap();
        sources.push(dir.join(format!("{}.c", c.ident)));
    }
    std::fs::write(dir.join("driver.c"), c_driver(cases)).unwrap();
    let exe = dir.join("driver");
    run_ok(
        Command::new("cc")
            .args(HOST_CFLAGS)
            .arg("-o")
            .arg(&exe)
            .arg(dir.join("driver.c"))
            .args(&sources),
        "cc (is a C compiler installed? apt-get install gcc)",
    );
    exe
}

// ---------------------------------------------------------------------------------------------
// Rust
// ---------------------------------------------------------------------------------------------

fn rust_driver(cases: &[Case]) -> String {
    let mut s = String::from(
        r#"use std::io::Write;

fn row(out: &mut impl Write, m: usize, s: usize, kind: char, l: &[f32]) {
    write!(out, "{m} {s} {kind}").unwrap();
    for v in l {
        write!(out, " {:08x}", v.to_bits()).unwrap();
    }
    writeln!(out).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&args[1]).unwrap();
    let n: usize = args[2].parse().unwrap();
    let out = &mut std::io::BufWriter::new(std::io::stdout().lock());
    if args[3] == "time" {
        let mut arena = Box::new(model::Arena::new());
        let x = |s: usize| -> &[u8; model::INPUT_LEN] { data[s * model::INPUT_LEN..][..model::INPUT_LEN].try_into().unwrap() };
        let t0 = std::time::Instant::now();
        let mut p = 0;
        for s in 0..n {
            p += model::predict(&mut arena, x(s));
        }
        writeln!(out, "ns {}", t0.elapsed().as_nanos() as f64 / n as f64).unwrap();
        for s in 0..n {
            writeln!(out, "0 {s} p {}", model::predict(&mut arena, x(s))).unwrap();
        }
        assert!(p < usize::MAX);
        return;
    }
"#,
    );
    for (m, c) in cases.iter().enumerate() {
        let id = &c.ident;
        s += &format!(
            r#"    {{
        let mut arena = Box::new({id}::Arena::new());
        let mut l = [0.0f32; {id}::NUM_CLASSES];
        for s in 0..n {{
            let x: &[u8; {id}::INPUT_LEN] = data[s * {id}::INPUT_LEN..][..{id}::INPUT_LEN].try_into().unwrap();
            {id}::infer(&mut arena, x, &mut l);
            row(out, {m}, s, 'u', &l);
            let xf: [f32; {id}::INPUT_LEN] = std::array::from_fn(|i| x[i] as f32 / 255.0);
            {id}::infer_f32(&mut arena, &xf, &mut l);
            row(out, {m}, s, 'f', &l);
            writeln!(out, "{m} {{s}} p {{}}", {id}::predict(&mut arena, x)).unwrap();
        }}
    }}
"#
        );
    }
    s += "}\n";
    s
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Settings of the outer build must not leak into the generated crates' builds.
    for v in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        c.env_remove(v);
    }
    c.env("CARGO_NET_OFFLINE", "true");
    c
}

/// Generate every case's crate under `dir` and build one driver binary depending on all of them.
fn build_rust(cases: &[Case], dir: &Path) -> PathBuf {
    let mut deps = String::new();
    for c in cases {
        let files = generate_rust(&c.spec, &c.weights, &c.name, &note()).unwrap();
        write_files(&files, &dir.join(&c.ident)).unwrap();
        deps += &format!("{} = {{ path = \"../{}\" }}\n", c.ident, c.ident);
    }
    let drv = dir.join("driver");
    std::fs::create_dir_all(drv.join("src")).unwrap();
    std::fs::write(
        drv.join("Cargo.toml"),
        format!(
            "[package]\nname = \"driver\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\n{deps}\n[workspace]\n\n[profile.release]\ndebug = false\nincremental = false\n"
        ),
    )
    .unwrap();
    std::fs::write(drv.join("src/main.rs"), rust_driver(cases)).unwrap();
    let target = dir.join("target");
    run_ok(
        cargo()
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(drv.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .env("RUSTFLAGS", "-D warnings"),
        "cargo build of the generated crates",
    );
    target.join("release/driver")
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// C and Rust kernels of 13 networks against the host reference (bit for bit) and burn (1e-4,
/// same argmax) on real samples; then the smart start on the whole test split: same predictions
/// as burn, and host inference times.
#[test]
fn generated_kernels_match_reference_and_burn() {
    let cases = cases();
    let (samples, n) = compare_samples();
    let tmp = tempdir();
    let sample_file = tmp.path().join("samples.bin");
    std::fs::write(&sample_file, &samples).unwrap();

    // Build both in parallel: cc in this thread, cargo in another.
    let (c_exe, rs_exe) = std::thread::scope(|sc| {
        let rs = sc.spawn(|| build_rust(&cases, &tmp.path().join("rs")));
        let c = build_c(&cases, &tmp.path().join("c"));
        (c, rs.join().unwrap())
    });

    let n_arg = n.to_string();
    for (lang, exe) in [("C", &c_exe), ("Rust", &rs_exe)] {
        let out = run_ok(
            Command::new(exe).arg(&sample_file).arg(&n_arg).arg("all"),
            lang,
        );
        let (rows, _) = parse_rows(&out);
        check_against_reference(lang, &cases, &rows, &samples, n);
    }

    // burn: the same weights through the trainer's model.
    for c in &cases {
        let burn = nas::train::model::infer_logits(&c.spec, &c.weights, &samples, n).unwrap();
        let k = c.spec.classes;
        let mut worst = 0.0f32;
        for s in 0..n {
            let x = &samples[s * 784..(s + 1) * 784];
            let want = &burn[s * k..(s + 1) * k];
            let xf: Vec<f32> = x.iter().map(|&b| b as f32 / 255.0).collect();
            for got in [
                reference_logits(&c.lowered, x),
                reference_logits_f32(&c.lowered, &xf),
            ] {
                for j in 0..k {
                    let d = (got[j] - want[j]).abs();
                    worst = worst.max(d);
                    assert!(
                        d <= TOL,
                        "{} ({}) sample {s} logit {j}: kernel {} vs burn {}",
                        c.name,
                        c.spec.summary(),
                        got[j],
                        want[j]
                    );
                }
                assert_eq!(
                    argmax(&got),
                    argmax(want),
                    "{} sample {s}: argmax differs from burn",
                    c.name
                );
            }
        }
        eprintln!(
            "{:<22} max |kernel - burn| = {worst:.2e}  {}",
            c.ident,
            c.spec.summary()
        );
    }

    // The smart start on the whole test split: predictions equal burn's, and timings.
    let (all, labels, len) = test_split();
    let n_all = labels.len();
    let all_file = tmp.path().join("all.bin");
    std::fs::write(&all_file, all).unwrap();
    let t0 = std::time::Instant::now();
    let burn =
        nas::train::model::infer_logits(&cases[0].spec, &cases[0].weights, all, n_all).unwrap();
    let burn_ns = t0.elapsed().as_nanos() as f64 / n_all as f64;
    let burn_pred: Vec<u32> = burn.chunks(12).map(|l| argmax(l) as u32).collect();
    let accuracy = |p: &[u32]| {
        p.iter()
            .zip(labels)
            .filter(|(a, b)| **a == **b as u32)
            .count() as f64
            / n_all as f64
    };
    let mut report =
        format!("smart start, {n_all} test samples of length {len}: burn {burn_ns:.0} ns/sample");
    for (lang, exe) in [("C", &c_exe), ("Rust", &rs_exe)] {
        let (rows, ns) = parse_rows(&run_ok(
            Command::new(exe)
                .arg(&all_file)
                .arg(n_all.to_string())
                .arg("time"),
            lang,
        ));
        let pred: Vec<u32> = (0..n_all).map(|s| rows[&(0, s, 'p')][0]).collect();
        let diff = pred.iter().zip(&burn_pred).filter(|(a, b)| a != b).count();
        assert_eq!(
            diff, 0,
            "{lang}: {diff} of {n_all} predictions differ from burn's"
        );
        assert_eq!(accuracy(&pred), accuracy(&burn_pred));
        report += &format!(", {lang} {:.0} ns/sample", ns.unwrap());
    }
    eprintln!(
        "{report} (accuracy of these random weights: {:.4})",
        accuracy(&burn_pred)
    );
}

/// A hostile --name yields safe identifiers and nothing of the original text in the code.
#[test]
fn hostile_name_is_sanitised() {
    let spec = NetSpec::smart_start(784, 12);
    let w = Weights::random(&spec, 5);
    let ident = sanitize_identifier(HOSTILE_NAME).unwrap();
    assert_eq!(ident, "foo_bar_system_rm_rf");
    let c = generate_c(&spec, &w, HOSTILE_NAME, &note()).unwrap();
    let rs = generate_rust(&spec, &w, HOSTILE_NAME, &note()).unwrap();
    let paths: Vec<&str> = c.iter().chain(&rs).map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "foo_bar_system_rm_rf.h",
            "foo_bar_system_rm_rf.c",
            "foo_bar_system_rm_rf_weights.h",
            "Cargo.toml",
            "src/lib.rs",
            "src/weights.rs"
        ]
    );
    for f in c.iter().chain(&rs) {
        for bad in ["system(", "rm -rf", "foo-bar", ";  system", "\"rm"] {
            assert!(!f.contents.contains(bad), "{} contains {bad:?}", f.path);
        }
    }
    assert!(c[0].contents.contains(
        "void foo_bar_system_rm_rf_infer(const uint8_t input[FOO_BAR_SYSTEM_RM_RF_INPUT_LEN]"
    ));
    assert!(rs[0].contents.contains("name = \"foo_bar_system_rm_rf\""));
    // (The C and Rust of this name are also compiled and run in
    // generated_kernels_match_reference_and_burn.)
    // A provenance that tries to close the comment stays inside it.
    let evil = Provenance::new("runs/x */ int evil; /*\n#include <stdlib.h>");
    let c = generate_c(&spec, &w, "model", &evil).unwrap();
    for f in &c {
        assert!(
            !f.contents.contains("*/ int evil"),
            "{}: comment closed early",
            f.path
        );
        assert!(
            !f.contents.contains("\n#include <stdlib.h>"),
            "{}: line break kept",
            f.path
        );
    }
    assert_eq!(
        c[1].contents.matches("*/").count(),
        c[1].contents.matches("/*").count()
    );
}

fn arm_gcc() -> &'static str {
    let ok = Command::new("arm-none-eabi-gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "arm-none-eabi-gcc is missing: install it with `apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi`"
    );
    "arm-none-eabi-gcc"
}

/// The C kernel cross-compiles for a Cortex-M4F with -Werror; in the object file the arena is
/// one symbol of exactly the planned size in .bss, and the weights are in .rodata (flash).
#[test]
fn c_kernel_cross_compiles_for_cortex_m4() {
    use object::{Object, ObjectSection, ObjectSymbol};
    let gcc = arm_gcc();
    let tmp = tempdir();
    for (i, spec) in [NetSpec::smart_start(784, 12), five_block()]
        .into_iter()
        .enumerate()
    {
        let w = Weights::random(&spec, 9);
        write_files(
            &generate_c(&spec, &w, "model", &note()).unwrap(),
            tmp.path(),
        )
        .unwrap();
        let obj = tmp.path().join(format!("model{i}.o"));
        run_ok(
            Command::new(gcc)
                .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"])
                .args([
                    "-mcpu=cortex-m4",
                    "-mthumb",
                    "-mfloat-abi=hard",
                    "-mfpu=fpv4-sp-d16",
                    "-Os",
                    "-ffp-contract=off",
                    "-c",
                ])
                .arg(tmp.path().join("model.c"))
                .arg("-o")
                .arg(&obj),
            "arm-none-eabi-gcc",
        );
        // Unoptimised (the inline assembly's registers) and fully optimised builds compile too.
        for opt in ["-O0", "-O3"] {
            run_ok(
                Command::new(gcc)
                    .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", opt])
                    .args([
                        "-mcpu=cortex-m4",
                        "-mthumb",
                        "-mfloat-abi=hard",
                        "-mfpu=fpv4-sp-d16",
                    ])
                    .args(["-ffp-contract=off", "-c"])
                    .arg(tmp.path().join("model.c"))
                    .arg("-o")
                    .arg(tmp.path().join(format!("model{i}{opt}.o"))),
                "arm-none-eabi-gcc",
            );
        }
        let bytes = std::fs::read(&obj).unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        let section_of = |name: &str| {
            let sym = file
                .symbols()
                .find(|s| s.name() == Ok(name))
                .unwrap_or_else(|| panic!("no symbol {name}"));
            let sec = file.section_by_index(sym.section_index().unwrap()).unwrap();
            (sym.size(), sec.name().unwrap().to_string())
        };
        let plan = nas::net::plan::lower(&spec).unwrap();
        let (size, sec) = section_of("model_arena");
        assert_eq!(size as usize, plan.arena_bytes, "arena symbol size");
        assert!(sec.starts_with(".bss") || sec == "COMMON", "arena in {sec}");
        let (size, sec) = section_of("model_conv0_w");
        assert_eq!(
            size as usize,
            4 * spec.blocks[0].filters * spec.blocks[0].kernel
        );
        assert!(sec.starts_with(".rodata"), "weights in {sec}");
        assert!(section_of("model_dense_b").1.starts_with(".rodata"));
        for f in ["model_infer", "model_infer_f32", "model_predict"] {
            section_of(f);
        }
    }
}

/// The generated crates (float; int8 with and without the DSP routines) build for
/// thumbv7em-none-eabihf, and a firmware-style binary that calls every entry point links with a
/// panic handler that references an undefined symbol: the link fails if any panic path
/// survives optimisation on the inference path.
#[test]
fn rust_kernel_builds_for_thumbv7em_without_panics() {
    let installed = || {
        Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == "thumbv7em-none-eabihf")
            })
            .unwrap_or(false)
    };
    if !installed() {
        // Try once to install it (needs the network); fail below if that did not work.
        let _ = Command::new("rustup")
            .args(["target", "add", "thumbv7em-none-eabihf"])
            .status();
    }
    let installed = installed();
    assert!(
        installed,
        "the Rust target thumbv7em-none-eabihf is not installed: run `rustup target add thumbv7em-none-eabihf`"
    );
    let spec = NetSpec::smart_start(784, 12);
    let w = Weights::random(&spec, 11);
    let float = generate_rust(&spec, &w, "model", &note()).unwrap();
    assert_builds_without_panics(
        &float,
        "",
        "infer_f32(arena, &black_box([0.0f32; model::INPUT_LEN]), &mut logits);",
    );
    // The int8 crate, with the DSP routines (M4/M7/M33) and without (the portable loops).
    // The README's winner adds convs without pooling (the 2 × 2 blocks, a lone window, last
    // groups of two and one filters) to the smart start's filter-outer and pooled convs.
    let winner = nas::cli::read_spec(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/specs/iscx-f401re-winner.json"),
    )
    .unwrap();
    let calib = nas::data::synthetic(64, 784, 12, 1);
    let int8_call = "infer_int8(arena, &input, &mut [0i8; model::NUM_CLASSES]);";
    for spec in [spec, winner] {
        let w = Weights::random(&spec, 11);
        let method = nas::quant::CalibrationMethod::MinMax;
        let q = nas::quant::ptq(&spec, &w, &calib, 64, method).unwrap();
        let int8 = nas::codegen::int8::generate_rust_int8(&spec, &q, "model", &note()).unwrap();
        assert_builds_without_panics(&int8, "features = [\"dsp\"]", int8_call);
        assert_builds_without_panics(&int8, "", int8_call);
    }
}

/// Build the kernel crate `files` (with the dependency options `features`) for thumbv7em, then
/// a firmware-style binary that calls `infer`, `predict` and `model::<other>`, linked with a
/// panic handler that references an undefined symbol.
fn assert_builds_without_panics(
    files: &[nas::codegen::GeneratedFile],
    features: &str,
    other: &str,
) {
    let tmp = tempdir();
    write_files(files, &tmp.path().join("model")).unwrap();
    let fw = tmp.path().join("fw");
    std::fs::create_dir_all(fw.join("src")).unwrap();
    std::fs::write(
        fw.join("Cargo.toml"),
        format!(
            "[package]\nname = \"fw\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\nmodel = {{ path = \"../model\", {features} }}\n\n[workspace]\n\n\
             [profile.release]\nopt-level = \"s\"\npanic = \"abort\"\ncodegen-units = 1\nlto = true\n\n\
             [profile.dev]\npanic = \"abort\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        fw.join("src/main.rs"),
        r#"#![no_std]
#![no_main]

use core::hint::black_box;

extern "C" {
    fn nas_inference_path_can_panic() -> !;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    unsafe { nas_inference_path_can_panic() }
}

static mut ARENA: model::Arena = model::Arena::new();

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let arena = unsafe { &mut *core::ptr::addr_of_mut!(ARENA) };
    let input = black_box([0u8; model::INPUT_LEN]);
    let mut logits = [0.0f32; model::NUM_CLASSES];
    model::infer(arena, &input, &mut logits);
    black_box(&logits);
    model::OTHER
    black_box(&logits);
    black_box(model::predict(arena, &input));
    loop {}
}
"#
        .replace("OTHER", other),
    )
    .unwrap();
    let target_dir = tmp.path().join("target");
    let build = |args: &[&str]| {
        cargo()
            .args([
                "build",
                "--quiet",
                "--target",
                "thumbv7em-none-eabihf",
                "--target-dir",
            ])
            .arg(&target_dir)
            .args(args)
            .output()
            .unwrap()
    };
    // The library alone (what a firmware depends on).
    let out = build(&[
        "--manifest-path",
        tmp.path().join("model/Cargo.toml").to_str().unwrap(),
        "--release",
    ]);
    assert!(
        out.status.success(),
        "the kernel crate does not build for thumbv7em:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The firmware-style binary.
    let out = build(&[
        "--manifest-path",
        fw.join("Cargo.toml").to_str().unwrap(),
        "--release",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("nas_inference_path_can_panic"),
        "the inference path can panic ({features}):\n{err}"
    );
    assert!(out.status.success(), "firmware-style build failed:\n{err}");
}

/// `nas export` from a run directory and from --net/--weights, with clear errors.
#[test]
fn export_cli() {
    let exe = env!("CARGO_BIN_EXE_nas");
    let tmp = tempdir();
    let run = tmp.path().join("runs/r1");
    let spec = NetSpec::smart_start(784, 12);
    let w = Weights::random(&spec, 13);
    std::fs::create_dir_all(run.join("best")).unwrap();
    std::fs::write(run.join("best/spec.json"), spec.to_json()).unwrap();
    w.save(&run.join("best/weights.safetensors")).unwrap();

    // A spec and its weights, without a run: the footprint is for the default target.
    let out_c = tmp.path().join("out-c");
    let stdout = run_ok(
        Command::new(exe)
            .args(["export", "--lang", "c", "--net"])
            .arg(run.join("best/spec.json"))
            .arg("--weights")
            .arg(run.join("best/weights.safetensors"))
            .arg("--out")
            .arg(&out_c),
        "nas export --lang c",
    );
    assert!(stdout.contains("arena 28464 bytes"), "{stdout}");
    for f in ["model.h", "model.c", "model_weights.h"] {
        assert!(out_c.join(f).is_file(), "{f} missing");
    }
    let c = std::fs::read_to_string(out_c.join("model.c")).unwrap();
    assert!(
        c.contains("footprint on stm32f401re") && c.contains("params 14370"),
        "header lacks the footprint"
    );

    let out_rs = tmp.path().join("out-rs");
    run_ok(
        Command::new(exe)
            .args([
                "export", "--lang", "rust", "--name", "kws", "--target", "nrf52840", "--net",
            ])
            .arg(run.join("best/spec.json"))
            .arg("--weights")
            .arg(run.join("best/weights.safetensors"))
            .arg("--out")
            .arg(&out_rs),
        "nas export --lang rust",
    );
    let toml = std::fs::read_to_string(out_rs.join("Cargo.toml")).unwrap();
    assert!(toml.contains("name = \"kws\""));
    assert!(std::fs::read_to_string(out_rs.join("src/lib.rs"))
        .unwrap()
        .contains("footprint on nrf52840"));

    let fails = |args: &[&str], want: &str| {
        let o = Command::new(exe).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(want),
            "{args:?}: expected {want:?} in:\n{err}"
        );
    };
    let o = out_c.to_str().unwrap();
    fails(
        &[
            "export",
            "--lang",
            "c",
            "--out",
            o,
            "--run",
            tmp.path().join("nope").to_str().unwrap(),
        ],
        "does not exist",
    );
    // Weights of another network.
    let other = five_block();
    Weights::random(&other, 1)
        .save(&tmp.path().join("other.safetensors"))
        .unwrap();
    fails(
        &[
            "export",
            "--lang",
            "c",
            "--out",
            o,
            "--net",
            run.join("best/spec.json").to_str().unwrap(),
            "--weights",
            tmp.path().join("other.safetensors").to_str().unwrap(),
        ],
        "do not match the spec",
    );
    fails(
        &[
            "export",
            "--lang",
            "c",
            "--out",
            o,
            "--net",
            run.join("best/spec.json").to_str().unwrap(),
            "--weights",
            run.join("best/weights.safetensors").to_str().unwrap(),
            "--name",
            ";;",
        ],
        "invalid --name",
    );
    // A directory with a model but no run configuration is not taken for a run.
    fails(
        &[
            "export",
            "--lang",
            "c",
            "--out",
            o,
            "--run",
            run.to_str().unwrap(),
        ],
        "neither a search run",
    );
    std::fs::remove_file(run.join("best/weights.safetensors")).unwrap();
    fails(
        &[
            "export",
            "--lang",
            "c",
            "--out",
            o,
            "--net",
            run.join("best/spec.json").to_str().unwrap(),
            "--weights",
            run.join("best/weights.safetensors").to_str().unwrap(),
        ],
        "weights.safetensors",
    );
}

/// A real (quickly trained) run's winner exported to C: its predictions over the whole ISCX test
/// split give exactly the accuracy `nas eval` reports for the run.
#[test]
fn exported_winner_matches_nas_eval() {
    let exe = env!("CARGO_BIN_EXE_nas");
    let tmp = tempdir();
    let run = tmp.path().join("run");
    let data = data_dir();
    run_ok(
        Command::new(exe)
            .args(["search", "--target", "stm32f401re", "--data"])
            .arg(&data)
            .args([
                "--limit-per-class",
                "40",
                "--epochs",
                "1",
                "--steps-per-epoch",
                "6",
            ])
            .args([
                "--batch-size",
                "32",
                "--generations",
                "1",
                "--children",
                "1",
                "--quiet",
            ])
            .arg("--out")
            .arg(&run),
        "nas search (quick)",
    );
    let eval: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new(exe)
            .args(["eval", "--json", "--run"])
            .arg(&run),
        "nas eval",
    ))
    .unwrap();
    let out = tmp.path().join("c");
    run_ok(
        Command::new(exe)
            .args(["export", "--lang", "c", "--run"])
            .arg(&run)
            .arg("--out")
            .arg(&out),
        "nas export",
    );
    std::fs::write(
        out.join("main.c"),
        r#"#include <stdio.h>
#include "model.h"
static unsigned char buf[1 << 22];
int main(int argc, char **argv)
{
    FILE *f = fopen(argv[1], "rb");
    size_t n, s;
    if (argc != 2 || !f) return 2;
    n = fread(buf, 1, sizeof buf, f) / MODEL_INPUT_LEN;
    for (s = 0; s < n; ++s) printf("%d\n", model_predict(buf + s * MODEL_INPUT_LEN));
    return 0;
}
"#,
    )
    .unwrap();
    let bin = out.join("predict");
    run_ok(
        Command::new("cc")
            .args(HOST_CFLAGS)
            .arg("-o")
            .arg(&bin)
            .arg(out.join("main.c"))
            .arg(out.join("model.c")),
        "cc",
    );
    let (samples, labels, _) = test_split();
    std::fs::write(tmp.path().join("test.bin"), samples).unwrap();
    let pred: Vec<u8> = run_ok(
        Command::new(&bin).arg(tmp.path().join("test.bin")),
        "C predictions",
    )
    .lines()
    .map(|l| l.parse().unwrap())
    .collect();
    assert_eq!(pred.len(), labels.len());
    let correct = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
    let m = &eval["test"];
    assert_eq!(
        m["samples"].as_u64().unwrap() as usize,
        labels.len(),
        "eval used another test split"
    );
    let eval_correct = (m["accuracy"].as_f64().unwrap() * labels.len() as f64).round() as usize;
    eprintln!(
        "winner {}: C {correct}/{} correct, nas eval {eval_correct}/{}",
        eval["winner"],
        labels.len(),
        labels.len()
    );
    assert_eq!(
        correct, eval_correct,
        "the C kernel's test accuracy differs from nas eval's"
    );
    // Sample by sample, too: the trained winner's burn predictions.
    let spec =
        NetSpec::from_json(&std::fs::read_to_string(run.join("best/spec.json")).unwrap()).unwrap();
    let w = Weights::load(&run.join("best/weights.safetensors")).unwrap();
    let burn = nas::train::model::infer_logits(&spec, &w, samples, labels.len()).unwrap();
    let burn_pred: Vec<u8> = burn.chunks(spec.classes).map(|l| argmax(l) as u8).collect();
    let differ = pred.iter().zip(&burn_pred).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{differ} C predictions differ from burn's");
    // The header names the run's target (from its config.json).
    let h = std::fs::read_to_string(out.join("model.h")).unwrap();
    assert!(h.contains("footprint on stm32f401re"));
}
