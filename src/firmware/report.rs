//! What `nas verify` found out: the measured footprint, the estimate, the emulation, as data
//! (the CLI renders it).

use super::*;

/// A memory region the linker could not fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overflow {
    /// `FLASH` or `RAM`.
    pub region: String,
    pub bytes: u64,
}

/// The cost model's figures for the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub flash_bytes: u64,
    pub ram_bytes: u64,
    pub weights_bytes: u64,
    pub code_bytes: u64,
    pub arena_bytes: u64,
    pub stack_bytes: u64,
    /// RAM beside the arena: the int8 C kernel's column buffer on DSP cores.
    pub scratch_bytes: u64,
    /// Instructions per inference by the profile's `[latency]` model (of the C kernel), and
    /// that model's stated worst error in percent.
    pub instructions: Option<u64>,
    pub instructions_worst_error_pct: Option<f64>,
    /// The cost model's latency: those instructions × the profile's cycles per instruction at
    /// its clock.
    pub latency_ms: Option<f64>,
}

/// The model's flash and RAM budgets next to the chip's memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryBudget {
    pub max_flash_bytes: u64,
    pub max_ram_bytes: u64,
    pub chip_flash_bytes: u64,
    pub chip_ram_bytes: u64,
}

/// A named symbol and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SymbolSize {
    pub name: String,
    pub bytes: u64,
}

/// Where the image's bytes go, from the symbol table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    /// Weight and bias tables (`model_*_w`, `model_*_b`).
    pub weights_bytes: u64,
    pub weights: Vec<SymbolSize>,
    /// The `model_arena` symbol.
    pub arena_bytes: u64,
    /// Functions of the kernel's object file.
    pub kernel_code_bytes: u64,
    pub kernel_functions: Vec<SymbolSize>,
    /// Other read-only data of the kernel (layer descriptors).
    pub kernel_const_bytes: u64,
    /// Other RAM data of the kernel.
    pub kernel_ram_bytes: u64,
    /// Routines from libgcc / libc the kernel pulls in (soft-float on cores without an FPU).
    pub runtime_bytes: u64,
    pub runtime_functions: Vec<SymbolSize>,
    /// Model flash not covered by a symbol (alignment padding).
    pub unattributed_flash_bytes: u64,
    /// The harness: `.harness` (vector table, start-up, main, semihosting, samples) ...
    pub harness_flash_bytes: u64,
    /// ... its `.harness_bss` ...
    pub harness_ram_bytes: u64,
    /// ... and the `.stack` reservation (the profile's `toolchain.stack_bytes`).
    pub stack_reserved_bytes: u64,
}

/// The model's measured footprint (see the module documentation for the definitions).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ElfFootprint {
    pub flash_bytes: u64,
    pub ram_bytes: u64,
    /// Model flash minus weights: code, constant tables, runtime routines, padding.
    pub code_bytes: u64,
    /// Stack of one inference: measured under QEMU, else the cost model's constant.
    pub stack_bytes: u64,
    pub stack_measured: bool,
    /// (estimate − measured) / measured, in percent.
    pub flash_error_pct: f64,
    pub ram_error_pct: f64,
}

/// One sample whose QEMU logits differ from the host reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    pub index: usize,
    pub classes_differing: usize,
    pub max_abs_diff: f64,
}

/// What the firmware computed under QEMU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Emulation {
    pub machine: String,
    /// The image that ran: the chip's, or a relink at the emulator's addresses.
    pub image: String,
    pub command: String,
    pub samples_source: String,
    pub samples: usize,
    /// Samples whose logits equal the host reference bit for bit.
    pub bit_exact: usize,
    pub mismatches: Vec<Mismatch>,
    /// `model_predict` on sample 0 agrees with the argmax of the reference.
    pub predict_agrees: bool,
    /// Samples the reference classifies as labelled (when labels are known).
    pub correct: Option<usize>,
    /// Instructions of each inference (the `model_infer` call).
    pub instructions: Vec<u64>,
    /// Median over the samples.
    pub instructions_per_inference: u64,
    pub executed_macs: u64,
    pub instructions_per_mac: f64,
    pub ticks_per_instruction: f64,
    pub stack_peak_bytes: Option<u64>,
    pub wall_seconds: f64,
    /// The cycle estimate of one inference (sample 0's) from its executed instruction mix (QEMU with
    /// nas's plugin, the core's timings and the profile's flash wait states): an estimate,
    /// not a measurement (see `nas::emulate::mix`).
    pub cycles: Option<crate::emulate::mix::CycleEstimate>,
    pub cycles_per_mac: Option<f64>,
    /// At the profile's clock.
    pub cycle_ms: Option<f64>,
    /// Why there is no cycle estimate.
    pub cycles_skipped: Option<String>,
}

/// Everything `nas verify` found out about one kernel's firmware.
#[derive(Debug, Clone, Serialize)]
pub struct KernelReport {
    /// The kernel's language.
    pub lang: Lang,
    /// The element type it computes in.
    pub dtype: Dtype,
    /// Its name: the prefix of its symbols (`NAME_infer`, `NAME_arena`).
    pub kernel: String,
    pub target: String,
    pub core: String,
    pub fpu: bool,
    pub network: String,
    pub layers: usize,
    pub executed_macs: u64,
    /// The C compiler (of the kernel and the harness, or of the harness alone).
    pub compiler: String,
    pub cflags: Vec<String>,
    /// How the Rust kernel was built (Rust only).
    pub rust: Option<RustBuild>,
    pub build_dir: Option<PathBuf>,
    pub estimate: Estimate,
    pub limits: MemoryBudget,
    /// Whether the image linked for the chip's memory map.
    pub links_for_chip: bool,
    pub overflows: Vec<Overflow>,
    /// The image linked for the chip (or, when it overflows, for unbounded memory, to measure).
    pub image: ElfImage,
    pub breakdown: Breakdown,
    pub measured: ElfFootprint,
    pub emulation: Option<Emulation>,
    /// Why there is no emulation.
    pub emulation_skipped: Option<String>,
    /// Budgets or regions the model breaks, as sentences.
    pub violations: Vec<String>,
    /// The model fits the chip and its budgets.
    pub fits: bool,
    /// It fits, and the emulated outputs (if run) equal the host reference.
    pub ok: bool,
}

/// The outcome of [`verify_langs`]: the primary kernel's report (C, unless only Rust was asked
/// for) and, when built, the Rust kernel's. In JSON the primary report's fields are at the top
/// level (`lang` says which kernel it is), the Rust kernel's report under `rust_kernel`.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    #[serde(flatten)]
    pub primary: KernelReport,
    /// The Rust kernel's report, next to the C kernel's (`rust_kernel` in JSON: the primary
    /// report's own `rust` field, flattened beside it, says how a Rust kernel was built).
    #[serde(rename = "rust_kernel")]
    pub rust_report: Option<KernelReport>,
    /// Why a kernel that was asked for was not built (a Rust target that is not installed).
    pub notes: Vec<String>,
}

impl Verification {
    /// The reports, primary first.
    pub fn reports(&self) -> Vec<&KernelReport> {
        std::iter::once(&self.primary)
            .chain(self.rust_report.as_ref())
            .collect()
    }

    /// Every kernel fits and computes what the host computes.
    pub fn ok(&self) -> bool {
        self.reports().iter().all(|r| r.ok)
    }
}
