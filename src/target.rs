//! MCU targets: the profiles that give a search its budgets and the firmware its memory map.
//!
//! Profiles are TOML data files. The ones in the repository's `targets/` folder are embedded in
//! the binary; `--target` also takes the path of a user's own profile file.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The profiles shipped with the tool (`targets/*.toml`).
const BUILTIN: &[(&str, &str)] = &[
    ("stm32f401re", include_str!("../targets/stm32f401re.toml")),
    ("stm32f746ng", include_str!("../targets/stm32f746ng.toml")),
    ("stm32l476rg", include_str!("../targets/stm32l476rg.toml")),
    ("stm32h743zi", include_str!("../targets/stm32h743zi.toml")),
    ("stm32g071rb", include_str!("../targets/stm32g071rb.toml")),
    ("nrf52840", include_str!("../targets/nrf52840.toml")),
];

/// An MCU profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// GCC's `-mcpu` name: cortex-m0plus, cortex-m3, cortex-m4, cortex-m7, ...
    pub core: String,
    /// Whether the core has a single-precision FPU (float is soft-float otherwise).
    pub fpu: bool,
    pub clock_hz: u64,
    pub memory: Memory,
    #[serde(default)]
    pub reserve: Reserve,
    pub budget: Budget,
    pub toolchain: Toolchain,
    #[serde(default)]
    pub emulator: Option<Emulator>,
    /// Code-size model for the flash estimate, calibrated against real ELFs (`nas verify`).
    #[serde(default)]
    pub code_size: CodeSize,
    /// The same for the int8 kernel (`--dtype int8`).
    #[serde(default)]
    pub code_size_int8: CodeSizeInt8,
    /// Instruction model for the latency estimate, calibrated against `nas verify`'s counts
    /// under QEMU (`examples/calibrate_latency.rs`). A profile without one has no latency
    /// estimate, and a latency budget cannot be checked for it.
    #[serde(default)]
    pub latency: Option<Latency>,
    /// The same for the int8 kernel (`--dtype int8`), over its own terms.
    #[serde(default)]
    pub latency_int8: Option<LatencyInt8>,
    /// The development board `nas export --project` writes firmware for. A profile without one
    /// gets no project (the kernel itself still exports and verifies).
    #[serde(default)]
    pub board: Option<Board>,
    /// The flash's cost for data reads at the profile's clock, for the cycle estimate of
    /// `nas verify` ([`FlashTiming`]). A profile without one has its wait states unmodelled.
    #[serde(default)]
    pub flash_timing: Option<FlashTiming>,
}

/// Data reads from flash, as `nas verify`'s cycle estimate charges them: a fully associative
/// LRU cache of `cache_lines` lines of `cache_line_bytes` in front of the flash (ST's ART
/// accelerator's data cache, or the Cortex-M7's L1 D-cache; 0 lines: every read goes to the
/// flash), each miss costing `miss_cycles` beyond the instruction's own cycles. Instruction
/// fetches are taken as hidden by the instruction cache and prefetch (the kernels' loops are a
/// few hundred bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlashTiming {
    /// Wait states at the profile's clock (the reference manual's table).
    pub wait_states: u32,
    pub miss_cycles: u32,
    pub cache_line_bytes: u32,
    pub cache_lines: u32,
    /// Where the figures come from.
    pub source: String,
}

/// Cycles per instruction class of a core, from its technical reference manual, for the
/// cycle estimate of `nas verify` (`nas::emulate::mix`). A load or store single that directly
/// follows another pipelines (`load_pipelined`); a taken branch refills the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CoreTiming {
    pub alu: f64,
    pub mul: f64,
    pub div: f64,
    pub load: f64,
    pub load_pipelined: f64,
    pub store: f64,
    pub store_pipelined: f64,
    /// LDM/STM/PUSH/POP: `multi_base + multi_per_reg × registers`.
    pub multi_base: f64,
    pub multi_per_reg: f64,
    pub branch_taken: f64,
    pub branch_not_taken: f64,
    /// BL (the M0+ pays one more cycle than for B).
    pub call_taken: f64,
    /// Extra cycles of an LDM/POP that loads the PC.
    pub pc_load_refill: f64,
    pub it: f64,
    pub fpu: f64,
    pub fpu_mac: f64,
    pub fpu_div: f64,
    /// Two adjacent independent instructions issue in one cycle (Cortex-M7).
    pub dual_issue: bool,
    /// The manual the figures are from, and what is assumed where it gives a range.
    pub source: &'static str,
}

impl CoreTiming {
    /// The timings of a GCC `-mcpu` core name, for the cores of the shipped profiles.
    pub fn of(core: &str) -> Option<CoreTiming> {
        let m4 = CoreTiming {
            alu: 1.0,
            mul: 1.0,
            div: 12.0,
            load: 2.0,
            load_pipelined: 1.0,
            store: 2.0,
            store_pipelined: 1.0,
            multi_base: 1.0,
            multi_per_reg: 1.0,
            branch_taken: 3.0,
            branch_not_taken: 1.0,
            call_taken: 3.0,
            pc_load_refill: 2.0,
            it: 1.0,
            fpu: 1.0,
            fpu_mac: 3.0,
            fpu_div: 14.0,
            dual_issue: false,
            source: "Cortex-M4 TRM r0p1 §3.3.1 and FPU §7.2.3: 1 cycle for data processing, \
                     multiplies and DSP MACs, 2 for LDR/STR (1 when pipelined after another), \
                     1+N for LDM/STM/PUSH/POP, 1+P for a taken branch with P = 2 (the manual's \
                     1-3), SDIV/UDIV at their worst 12, IT not folded (1); VFMA/VMLA 3, VDIV 14",
        };
        match core {
            "cortex-m4" | "cortex-m3" => Some(m4),
            "cortex-m0plus" | "cortex-m0" => Some(CoreTiming {
                load_pipelined: 2.0,
                store_pipelined: 2.0,
                branch_taken: 2.0,
                call_taken: 3.0,
                pc_load_refill: 2.0,
                div: 0.0,
                it: 0.0,
                source: "Cortex-M0+ TRM r0p1 §3.3 (two-stage pipeline): 1 cycle for data \
                         processing and MULS (the single-cycle multiplier STM32G0 implements), 2 \
                         for LDR/STR (no pipelining), 1+N for LDM/STM/PUSH/POP (3+N with PC), \
                         2 for a taken B/BX, 3 for BL",
                ..m4
            }),
            "cortex-m7" => Some(CoreTiming {
                load: 1.0,
                store: 1.0,
                branch_taken: 2.0,
                dual_issue: true,
                source: "Cortex-M7: dual issue (two adjacent instructions in one cycle when \
                         the second does not read the first's result and at most one of them \
                         is a load, store or multiply), loads and stores 1 cycle from the L1 \
                         cache or TCM, a taken branch 2 (the branch predictor's hits not \
                         modelled); ARM publishes no cycle table for the M7, so these are an \
                         estimate",
                ..m4
            }),
            _ => None,
        }
    }
}

/// A development board: which of nas's board-support files (`firmware/boards/<support>.c` and
/// `.rs`: clock set-up and debug UART, register level) drives it, and how users flash it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// The board as sold (`NUCLEO-F401RE`).
    pub name: String,
    /// The board-support file: one of [`BOARD_SUPPORT`].
    pub support: String,
    /// Where the program prints: the UART, its pins and how it reaches the host.
    pub uart: String,
    /// The UART's baud rate (8N1).
    pub baud: u32,
    /// `probe-rs --chip` name.
    pub probe_rs_chip: String,
    /// OpenOCD target configuration, used with `-f interface/stlink.cfg`.
    pub openocd_target: String,
    /// A QEMU machine whose SoC has this board's UART at the same address and runs the project
    /// unchanged (`make qemu`, `cargo run` under QEMU), when there is one.
    #[serde(default)]
    pub qemu_machine: Option<String>,
}

/// The boards nas has support code for (`firmware/boards/`).
pub const BOARD_SUPPORT: &[&str] = &["nucleo-f401re", "disco-f746ng", "nucleo-g071rb"];

/// Instructions of one inference of the generated C kernel, as a linear model of what the
/// plan makes it execute ([`LatencyFeatures`]):
///
/// ```text
/// per_mac · MACs of four-filter groups + per_single_mac · MACs of the remaining filters
///   + per_call · dot-product calls + per_output · conv outputs computed
///   + per_layer · layers + base
/// ```
///
/// The kernel's dot loop takes four filters at a time (one input load for four products); the
/// last `out_channels % 4` filters of a layer go one by one, which costs more per MAC.
/// Latency is `instructions × cycles_per_instruction / clock_hz`: the cycles per instruction are
/// the profile's, from `nas verify`'s cycle estimate over its instruction count on the reference
/// networks (`examples/cycle_figures.rs --cpi`): an estimate, not a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    pub per_mac: f64,
    pub per_single_mac: f64,
    pub per_call: f64,
    pub per_output: f64,
    pub per_layer: f64,
    /// MACs of four-filter groups that the FPU's four-element loop takes (cores with an FPU;
    /// 0 without: the kernel has no such loop).
    #[serde(default)]
    pub per_vector_mac: f64,
    /// Raw input bytes the first conv converts to float (once per window).
    #[serde(default)]
    pub per_converted_byte: f64,
    /// Products of windows the FPU's loop takes in pairs (see `net::latency::window_elements`).
    #[serde(default)]
    pub per_pair_mac: f64,
    /// Windows the convs compute (a pair counted once).
    #[serde(default)]
    pub per_window: f64,
    /// Products, and window × filter-group steps, of the first conv's filter-outer sweep
    /// (cores with an FPU; see `net::latency::sweep_windows`).
    #[serde(default)]
    pub per_sweep_mac: f64,
    #[serde(default)]
    pub per_sweep_group: f64,
    pub base: f64,
    /// Instructions per table value the input embedding copies (`len × dim` of them), outside
    /// the fitted terms (see [`EMBED_VALUE_INSTRUCTIONS`]).
    #[serde(default = "embed_value")]
    pub per_embed_value: f64,
    /// Instructions per entry a lookup-table conv adds, and per output it computes (windows ×
    /// filters), outside the fitted terms (see [`LUT_LOOKUP_INSTRUCTIONS`]).
    #[serde(default = "lut_lookup_f32")]
    pub per_lookup: f64,
    #[serde(default = "lut_output_f32")]
    pub per_lut_output: f64,
    /// Average cycles per instruction on the chip, by the cycle estimate (an estimate).
    pub cycles_per_instruction: f64,
    /// The calibration's worst relative error of the instruction estimate against QEMU, in
    /// percent (stated with the estimate, and checked by the tests; not used in it).
    pub worst_error_pct: f64,
}

impl Latency {
    /// The coefficients in the order of `net::cost::LatencyFeatures::row`.
    pub fn coefficients(&self) -> [f64; 12] {
        [
            self.per_mac,
            self.per_single_mac,
            self.per_call,
            self.per_output,
            self.per_layer,
            self.per_vector_mac,
            self.per_converted_byte,
            self.per_pair_mac,
            self.per_window,
            self.per_sweep_mac,
            self.per_sweep_group,
            self.base,
        ]
    }

    /// Estimated instructions of one inference with the counts `row`, in the order of
    /// [`Latency::coefficients`], and the table work `t` of an input embedding.
    pub fn instructions(&self, row: &[f64; 12], t: TableWork) -> u64 {
        linear_model(&self.coefficients(), row)
            + embed_model(self.per_embed_value, t)
            + lut_model((self.per_lookup, self.per_lut_output), t)
    }

    fn check(&self) -> Result<()> {
        check_linear_model(
            "latency",
            &self.coefficients(),
            self.cycles_per_instruction,
            self.worst_error_pct,
        )
    }
}

/// Instructions of one inference of the int8 C kernel, as a linear model of what the plan
/// makes it execute (`net::int8::LatencyFeaturesInt8`):
///
/// ```text
/// per_word_mac · word MACs of four-filter groups (with DSP: of 2 × 2 blocks)
///   + per_single_word_mac · word MACs of the remaining filters (with DSP: of lone windows
///   and the dense layer) + per_call · calls + per_output · requantized outputs
///   + per_filter_output · outputs of filter-outer convs
///   + per_rest_word_mac · word MACs of a last partial filter group (DSP)
///   + per_col_word · words widened into columns (DSP)
///   + per_avg_window · outputs of average-pooled convs, pooled windows included (DSP)
///   + per_gap_value · values the global average pooling sums + base
/// ```
///
/// A word MAC is four byte products (one 32-bit weight word); calibrated like [`Latency`]
/// (`examples/calibrate_latency.rs --int8`); the counts are
/// `net::int8::LatencyFeaturesInt8`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyInt8 {
    pub per_word_mac: f64,
    pub per_single_word_mac: f64,
    pub per_call: f64,
    pub per_output: f64,
    pub per_filter_output: f64,
    /// Word MACs of a last group of fewer than four filters and words widened into columns,
    /// with DSP (0 without: the kernel has neither).
    #[serde(default)]
    pub per_rest_word_mac: f64,
    #[serde(default)]
    pub per_col_word: f64,
    /// Outputs of average-pooled convs, pooled windows included (DSP; 0 without).
    #[serde(default)]
    pub per_avg_window: f64,
    /// Values the global average pooling sums.
    #[serde(default)]
    pub per_gap_value: f64,
    pub base: f64,
    /// As [`Latency::per_embed_value`], for the int8 table.
    #[serde(default = "embed_value")]
    pub per_embed_value: f64,
    /// As [`Latency::per_lookup`] and [`Latency::per_lut_output`], for the int8 kernel.
    #[serde(default = "lut_lookup_int8")]
    pub per_lookup: f64,
    #[serde(default = "lut_output_int8")]
    pub per_lut_output: f64,
    pub cycles_per_instruction: f64,
    pub worst_error_pct: f64,
}

impl LatencyInt8 {
    /// The coefficients in the order of `net::int8::LatencyFeaturesInt8::row`.
    pub fn coefficients(&self) -> [f64; 10] {
        [
            self.per_word_mac,
            self.per_single_word_mac,
            self.per_call,
            self.per_output,
            self.per_filter_output,
            self.per_rest_word_mac,
            self.per_col_word,
            self.per_avg_window,
            self.per_gap_value,
            self.base,
        ]
    }

    /// Estimated instructions of one inference with the counts `row`, in the order of
    /// [`LatencyInt8::coefficients`], and the table work `t` of an input embedding.
    pub fn instructions(&self, row: &[f64; 10], t: TableWork) -> u64 {
        linear_model(&self.coefficients(), row)
            + embed_model(self.per_embed_value, t)
            + lut_model((self.per_lookup, self.per_lut_output), t)
    }

    fn check(&self) -> Result<()> {
        check_linear_model(
            "latency_int8",
            &self.coefficients(),
            self.cycles_per_instruction,
            self.worst_error_pct,
        )
    }
}

/// Instructions of the generated input-embedding loop (float and int8 alike), read from its
/// code as arm-none-eabi-gcc 12.2 -Os compiles it for the Cortex-M4: per table value copied
/// `cmp, beq, ldr, str, b` (5), per input byte `ldrb, adds, mla` and the loop test (4); the
/// padding rows are one `memset` each. A count of the code, not a fit: the profiles' fitted
/// models have no embedding term. Profiles may state their own `per_embed_value`.
pub const EMBED_VALUE_INSTRUCTIONS: f64 = 5.0;
/// Per input byte: see [`EMBED_VALUE_INSTRUCTIONS`].
pub const EMBED_ROW_INSTRUCTIONS: f64 = 4.0;

fn embed_value() -> f64 {
    EMBED_VALUE_INSTRUCTIONS
}

/// What an input embedding makes the kernel do outside the fitted terms: rows copied by the
/// `embed` step, or entries added by a lookup-table conv.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TableWork {
    /// Table values the embedding copies (`len × dim`) and input bytes it looks up (`len`).
    pub embed_values: u64,
    pub embed_rows: u64,
    /// Lookup-table entries added (taps inside the input × filters, over the computed
    /// windows), and the outputs they make (windows × filters).
    pub lut_lookups: u64,
    pub lut_outputs: u64,
}

fn embed_model(per_value: f64, t: TableWork) -> u64 {
    let v = per_value * t.embed_values as f64 + EMBED_ROW_INSTRUCTIONS * t.embed_rows as f64;
    v.max(0.0).round() as u64
}

/// Instructions of the generated lookup-table conv on the Cortex-M4 (arm-none-eabi-gcc 12.2
/// -Os, the layer's shape inlined as constants), per entry added, (float, int8): counted from
/// the inner loop's code, `ldrb, add, vldr, adds, cmp, vadd, add, bhi` (8) in float and
/// `ldrb, ldr, cmp, add, add, bne` (6) in int8. Not part of the profiles' fitted models;
/// profiles may state their own `per_lookup`.
pub const LUT_LOOKUP_INSTRUCTIONS: (f64, f64) = (8.0, 6.0);
/// Per output computed (windows × filters), (float, int8), counted from the same code: bias,
/// ReLU, pooling and store with the window's set-up (float: 14, and the window set-up shared by
/// the filters; int8: 18 with the requantization). Windows in the padding or pooled cost a few
/// more. Profiles may state their own `per_lut_output`.
pub const LUT_OUTPUT_INSTRUCTIONS: (f64, f64) = (15.0, 18.0);

fn lut_lookup_f32() -> f64 {
    LUT_LOOKUP_INSTRUCTIONS.0
}
fn lut_output_f32() -> f64 {
    LUT_OUTPUT_INSTRUCTIONS.0
}
fn lut_lookup_int8() -> f64 {
    LUT_LOOKUP_INSTRUCTIONS.1
}
fn lut_output_int8() -> f64 {
    LUT_OUTPUT_INSTRUCTIONS.1
}

fn lut_model((per_lookup, per_output): (f64, f64), t: TableWork) -> u64 {
    let v = per_lookup * t.lut_lookups as f64 + per_output * t.lut_outputs as f64;
    v.max(0.0).round() as u64
}

/// `Σ coefficient · feature`, rounded to whole instructions (never negative).
fn linear_model(coefficients: &[f64], row: &[f64]) -> u64 {
    let v: f64 = coefficients.iter().zip(row).map(|(c, x)| c * x).sum();
    v.max(0.0).round() as u64
}

fn check_linear_model(
    section: &str,
    coefficients: &[f64],
    cycles_per_instruction: f64,
    worst_error_pct: f64,
) -> Result<()> {
    if coefficients.iter().any(|c| !c.is_finite() || *c < 0.0) {
        bail!("{section} coefficients must be finite and non-negative");
    }
    if !(cycles_per_instruction.is_finite() && cycles_per_instruction > 0.0) {
        bail!("{section}.cycles_per_instruction must be positive");
    }
    if !(worst_error_pct.is_finite() && worst_error_pct >= 0.0) {
        bail!("{section}.worst_error_pct must be a non-negative percentage");
    }
    Ok(())
}

/// What the generated kernel costs beyond its weights and arena, measured from cross-compiled
/// ELFs for each shipped profile (`nas verify` reports the figures for a new board): flash for
/// code and constant tables, `base_bytes + per_layer_bytes × layers`, and the stack one
/// inference uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeSize {
    pub base_bytes: u64,
    pub per_layer_bytes: u64,
    /// What an input embedding changes beyond its `per_layer_bytes` (negative: no conv then
    /// reads raw bytes, so the compiler drops the byte path of the dot products).
    #[serde(default = "embed_code_bytes_f32")]
    pub embed_bytes: i64,
    /// What a lookup-table conv changes beyond its `per_layer_bytes`.
    #[serde(default = "lut_code_bytes_f32")]
    pub lut_bytes: i64,
    /// What the first conv's filter-outer sweep adds when the plan has one
    /// (`net::latency::swept_conv`): `sweep_bytes + sweep_tap_bytes × kernel` (its tap loop is
    /// unrolled). On cores with an FPU; 0 without, where the code is compiled out.
    #[serde(default = "sweep_code_bytes_f32")]
    pub sweep_bytes: i64,
    #[serde(default = "sweep_tap_code_bytes_f32")]
    pub sweep_tap_bytes: i64,
    #[serde(default = "default_stack")]
    pub stack_bytes: u64,
}

/// The int8 C kernel's code-size model: a fixed part plus what each conv adds, by the
/// `net::int8::CodeFeatures` it has (a filter-outer sweep, or a generic conv
/// specialised to its configuration, whose size depends on its pooling, on windows that need
/// the per-tap path and on a last group of fewer than four filters), plus, on DSP cores, the
/// column routines the generic convs share (once per network). A linear fit over measured
/// ELFs, so single terms may be negative; `nas verify` reports the error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeSizeInt8 {
    pub base_bytes: i64,
    pub by_filter_bytes: i64,
    pub conv_bytes: i64,
    pub avg_pool_bytes: i64,
    pub max_pool_bytes: i64,
    pub edge_bytes: i64,
    pub partial_group_bytes: i64,
    /// With DSP: the column routines (widening, the 2 × 2 and lone-window dot products), where
    /// a conv runs the generic way; the filter-pair and lone-filter routines of a last group
    /// of 2-3 and of 1 or 3 filters, where one has such a group. 0 without DSP.
    #[serde(default)]
    pub columns_bytes: i64,
    #[serde(default)]
    pub rest_pair_bytes: i64,
    #[serde(default)]
    pub rest_single_bytes: i64,
    /// With DSP: the lone-window routines, where a conv has a window without a pair, with a
    /// whole filter group / with a last partial group.
    #[serde(default)]
    pub lone_bytes: i64,
    #[serde(default)]
    pub lone_rest_bytes: i64,
    /// With DSP: the routine of the 2 × 2 blocks of a conv without pooling, where one has a
    /// whole filter group.
    #[serde(default)]
    pub plain_blocks_bytes: i64,
    /// With DSP: the routine of a conv without pooling for its window without a pair.
    #[serde(default)]
    pub plain_lone_bytes: i64,
    /// A filter-outer conv with windows in the padding or past the input's end.
    #[serde(default)]
    pub outer_edge_bytes: i64,
    /// With DSP: what a last partial filter group adds to a pooled conv.
    #[serde(default)]
    pub partial_pooled_bytes: i64,
    /// With DSP: the 2 × 2 routine of pooled convs, where one has a whole filter group.
    #[serde(default)]
    pub pooled_blocks_bytes: i64,
    /// The input embedding's copy loop, where the network has one.
    #[serde(default = "embed_code_bytes")]
    pub embed_bytes: i64,
    /// The lookup-table conv's function, where the network has one.
    #[serde(default = "lut_code_bytes")]
    pub lut_bytes: i64,
    /// A requantizing global average (an imported TFLite MEAN) in place of the plain one.
    #[serde(default = "gap_mean_code_bytes")]
    pub gap_mean_bytes: i64,
    pub stack_bytes: u64,
}

/// Code bytes of a requantizing global average in place of the plain one on the Cortex-M4:
/// −475 bytes measured (arm-none-eabi-gcc 12.2 -Os, the int8 TFLite fixture `conv_bn_int8`, the
/// estimate's other terms fitted without it): one loop and a requantization replace the eight-
/// and four-channel DSP sums.
fn gap_mean_code_bytes() -> i64 {
    -475
}

/// Code bytes of the int8 input embedding on the Cortex-M4: the loop's 90 bytes
/// (arm-none-eabi-gcc 12.2 -Os, from the object file) and about 20 of its call (eight
/// arguments, four on the stack).
fn embed_code_bytes() -> i64 {
    110
}

impl Default for CodeSizeInt8 {
    /// The Cortex-M4 figures (the STM32F401RE's fit), for profiles that have not been measured.
    fn default() -> Self {
        CodeSizeInt8 {
            base_bytes: 1359,
            by_filter_bytes: 385,
            conv_bytes: 62,
            avg_pool_bytes: 269,
            max_pool_bytes: 268,
            edge_bytes: 42,
            partial_group_bytes: 120,
            columns_bytes: 362,
            rest_pair_bytes: 111,
            rest_single_bytes: 85,
            lone_bytes: 93,
            lone_rest_bytes: 168,
            plain_blocks_bytes: 375,
            plain_lone_bytes: 244,
            outer_edge_bytes: 286,
            partial_pooled_bytes: -89,
            pooled_blocks_bytes: 192,
            embed_bytes: embed_code_bytes(),
            lut_bytes: lut_code_bytes(),
            gap_mean_bytes: gap_mean_code_bytes(),
            stack_bytes: 224,
        }
    }
}

/// The float C kernel's code with an input embedding against the same network without, on the
/// Cortex-M4 (arm-none-eabi-gcc 12.2 -Os, measured by `nas verify`): −224 B for the smart start's
/// two blocks and −124 B for its first block alone, less the 75 B the embed layer's
/// `per_layer_bytes` counts: about −250 B.
fn embed_code_bytes_f32() -> i64 {
    -250
}

/// Code bytes the int8 lookup-table conv adds on the Cortex-M4 (arm-none-eabi-gcc 12.2 -Os):
/// its function, specialised to the layer's shape, is 128 bytes for the embedded smart start;
/// against the other terms, `nas verify` measured −148, +269 and +410 B on three networks
/// (F401RE and G071RB): their mean.
fn lut_code_bytes() -> i64 {
    180
}
/// The float kernel's code with the lookup-table conv against its `per_layer_bytes`, on the
/// Cortex-M4 (measured by `nas verify` on three networks: −473, −208 and −370 B): the byte
/// path of the dot products and the embed loop are gone, the lookup loop is inlined.
fn lut_code_bytes_f32() -> i64 {
    -350
}

/// The float kernel's first-conv sweep on the Cortex-M4 (arm-none-eabi-gcc 12.2 -Os, measured
/// by `examples/calibrate_code_size.rs`).
fn sweep_code_bytes_f32() -> i64 {
    264
}

/// The same sweep's code per tap of its kernel.
fn sweep_tap_code_bytes_f32() -> i64 {
    60
}

fn default_stack() -> u64 {
    128
}

impl Default for CodeSize {
    fn default() -> Self {
        CodeSize {
            base_bytes: 1024,
            per_layer_bytes: 64,
            embed_bytes: embed_code_bytes_f32(),
            lut_bytes: lut_code_bytes_f32(),
            sweep_bytes: sweep_code_bytes_f32(),
            sweep_tap_bytes: sweep_tap_code_bytes_f32(),
            stack_bytes: default_stack(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    pub flash_origin: u64,
    pub flash_bytes: u64,
    pub ram_origin: u64,
    pub ram_bytes: u64,
}

/// Memory kept back for the application around the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reserve {
    pub flash_bytes: u64,
    pub ram_bytes: u64,
}

/// Search budgets. Flash and RAM budgets default to the memory minus the reserve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub max_params: u64,
    /// FLOPs as 2 × MACs (see `cost`).
    pub max_flops: u64,
    /// Largest intermediate tensor, in elements.
    pub max_tensor: u64,
    #[serde(default)]
    pub max_flash_bytes: Option<u64>,
    #[serde(default)]
    pub max_ram_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toolchain {
    /// Flags for arm-none-eabi-gcc that select the core and float ABI.
    pub cflags: Vec<String>,
    /// The rustc target triple for the no_std kernel.
    pub rust_target: String,
    /// Stack reserved by the firmware's linker script.
    pub stack_bytes: u64,
}

/// How to run firmware for this target under QEMU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emulator {
    /// `qemu-system-arm -M` machine.
    pub machine: String,
    /// Where the emulated machine has code memory, when it differs from the chip's flash.
    #[serde(default)]
    pub flash_origin: Option<u64>,
    /// Where the emulated machine has data memory, when it differs from the chip's RAM.
    #[serde(default)]
    pub ram_origin: Option<u64>,
}

/// The budgets a candidate must meet, all filled in. The parameter and FLOP budgets are the
/// seed's stand-ins for flash and compute: `None` when a search checks the hardware budgets
/// alone (`nas search --budgets hardware`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub max_params: Option<u64>,
    pub max_flops: Option<u64>,
    pub max_tensor: u64,
    pub max_flash_bytes: u64,
    pub max_ram_bytes: u64,
    /// Estimated latency of one inference (see [`Latency`]); none by default.
    #[serde(default)]
    pub max_latency_ms: Option<f64>,
}

impl Target {
    /// Parse and check a profile.
    pub fn from_toml(text: &str, origin: &str) -> Result<Target> {
        let t: Target =
            toml::from_str(text).with_context(|| format!("malformed target profile {origin}"))?;
        t.check()
            .with_context(|| format!("invalid target profile {origin}"))?;
        Ok(t)
    }

    /// The checks every profile passes, also applied to a profile read back from a run's
    /// `config.json` (an edited `clock_hz: 0` must fail there, not print "inf" later).
    pub fn check(&self) -> Result<()> {
        // Names reach generated C and linker-script comments, Cargo manifests and tool
        // command lines: each is one plain token, so none can close a comment or add a line.
        check_token("name", &self.name)?;
        for a in &self.aliases {
            check_token("alias", a)?;
        }
        check_token("core", &self.core)?;
        check_token("toolchain.rust_target", &self.toolchain.rust_target)?;
        if let Some(e) = &self.emulator {
            check_token("emulator.machine", &e.machine)?;
        }
        if let Some(b) = &self.board {
            check_token("board.name", &b.name)?;
            check_token("board.probe_rs_chip", &b.probe_rs_chip)?;
            if let Some(m) = &b.qemu_machine {
                check_token("board.qemu_machine", m)?;
            }
            if !BOARD_SUPPORT.contains(&b.support.as_str()) {
                bail!(
                    "board.support = {:?} is not one of nas's board-support files ({})",
                    b.support,
                    BOARD_SUPPORT.join(", ")
                );
            }
            if !(1_200..=4_000_000).contains(&b.baud) {
                bail!(
                    "board.baud = {} is not a UART baud rate (1200 to 4000000)",
                    b.baud
                );
            }
            if b.openocd_target.is_empty()
                || !b
                    .openocd_target
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
            {
                bail!("board.openocd_target must be a plain path such as target/stm32f4x.cfg");
            }
        }
        let m = &self.memory;
        if m.flash_bytes == 0 || m.ram_bytes == 0 {
            bail!("flash_bytes and ram_bytes must be positive");
        }
        if self.reserve.flash_bytes >= m.flash_bytes || self.reserve.ram_bytes >= m.ram_bytes {
            bail!("the reserve leaves no flash or RAM for the model");
        }
        if self.toolchain.stack_bytes == 0 || self.toolchain.stack_bytes % 8 != 0 {
            bail!("toolchain.stack_bytes must be a positive multiple of 8");
        }
        if self.toolchain.cflags.is_empty() {
            bail!("toolchain.cflags is empty: name at least -mcpu and the float ABI");
        }
        if self.clock_hz == 0 {
            bail!("clock_hz must be positive");
        }
        if let Some(l) = &self.latency {
            l.check()?;
        }
        if let Some(l) = &self.latency_int8 {
            l.check()?;
        }
        Ok(())
    }

    /// Whether the float C kernel is compiled for a hardware FPU (`-mfpu=…` without
    /// `-mfloat-abi=soft` in the toolchain's flags): its dot products then load four elements
    /// per VLDM.
    pub fn has_fpu(&self) -> bool {
        let f = &self.toolchain.cflags;
        f.iter()
            .any(|a| a.starts_with("-mfpu=") && a != "-mfpu=none")
            && !f.iter().any(|a| a == "-mfloat-abi=soft")
    }

    /// Whether the core has the DSP extension (SMLAD and friends): Cortex-M4, M7, M33, M35P,
    /// M55, M85. The int8 kernels use it there.
    pub fn has_dsp(&self) -> bool {
        matches!(
            self.core.as_str(),
            "cortex-m4" | "cortex-m7" | "cortex-m33" | "cortex-m35p" | "cortex-m55" | "cortex-m85"
        )
    }

    /// Budgets with flash/RAM defaults filled in from memory minus reserve.
    pub fn limits(&self) -> Limits {
        Limits {
            max_params: Some(self.budget.max_params),
            max_flops: Some(self.budget.max_flops),
            max_tensor: self.budget.max_tensor,
            max_flash_bytes: self
                .budget
                .max_flash_bytes
                .unwrap_or(self.memory.flash_bytes - self.reserve.flash_bytes),
            max_ram_bytes: self
                .budget
                .max_ram_bytes
                .unwrap_or(self.memory.ram_bytes - self.reserve.ram_bytes),
            max_latency_ms: None,
        }
    }

    /// Whether `name` is this target's name or one of its aliases (case-insensitive).
    pub fn answers_to(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// All built-in profiles.
pub fn builtin() -> Vec<Target> {
    BUILTIN
        .iter()
        .map(|(name, text)| {
            Target::from_toml(text, &format!("targets/{name}.toml"))
                .expect("built-in profiles are checked by the tests")
        })
        .collect()
}

/// Longest profile name, alias, core, Rust target or emulator machine.
pub const MAX_TOKEN_LEN: usize = 64;

/// A profile's `field` is a plain token: 1 to [`MAX_TOKEN_LEN`] ASCII letters, digits, `-`,
/// `_` or `.` (`stm32f401re`, `nucleo-f401re`, `cortex-m0plus`, `thumbv7em-none-eabihf`).
fn check_token(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        bail!("{field} is empty");
    }
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if value.len() > MAX_TOKEN_LEN || !plain {
        bail!(
            "{field} {value:?} is not a plain name: use 1 to {MAX_TOKEN_LEN} ASCII letters, \
             digits, '-', '_' or '.'"
        );
    }
    Ok(())
}

/// Resolve `--target`: a built-in name or alias, or the path of a TOML profile.
pub fn resolve(name_or_path: &str) -> Result<Target> {
    if let Some(t) = builtin().into_iter().find(|t| t.answers_to(name_or_path)) {
        return Ok(t);
    }
    let path = Path::new(name_or_path);
    if path.extension().is_some_and(|e| e == "toml") || path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read target profile {}", path.display()))?;
        return Target::from_toml(&text, &path.display().to_string());
    }
    let known: Vec<String> = builtin()
        .iter()
        .map(|t| {
            if t.aliases.is_empty() {
                t.name.clone()
            } else {
                format!("{} ({})", t.name, t.aliases.join(", "))
            }
        })
        .collect();
    bail!(
        "unknown target '{name_or_path}'. Known targets: {}. A path to a TOML profile also works (see `nas targets`).",
        known.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_seed_budgets() {
        let all = builtin();
        assert_eq!(all.len(), 6);
        let t = resolve("stm32").unwrap();
        assert_eq!(t.name, "stm32f401re");
        let l = t.limits();
        assert_eq!(l.max_params, Some(120_000));
        assert_eq!(l.max_flops, Some(11_000_000));
        assert_eq!(l.max_tensor, 22_000);
        assert_eq!(l.max_flash_bytes, 480 * 1024);
        assert_eq!(l.max_ram_bytes, 88 * 1024);
        assert!(resolve("STM32G071RB").is_ok());
    }

    #[test]
    fn unknown_target_lists_known_ones() {
        let e = resolve("esp32").unwrap_err().to_string();
        assert!(
            e.contains("unknown target 'esp32'") && e.contains("stm32f401re"),
            "{e}"
        );
    }

    #[test]
    fn malformed_profile_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mine.toml");
        std::fs::write(&p, "name = \"x\"\ncore = 4\n").unwrap();
        let e = format!("{:#}", resolve(p.to_str().unwrap()).unwrap_err());
        assert!(e.contains("malformed target profile"), "{e}");

        // Parses, but the reserve swallows all RAM.
        let text = include_str!("../targets/stm32f401re.toml")
            .replace("ram_bytes = 8_192", "ram_bytes = 98_304");
        std::fs::write(&p, text).unwrap();
        let e = format!("{:#}", resolve(p.to_str().unwrap()).unwrap_err());
        assert!(e.contains("reserve"), "{e}");
    }

    #[test]
    fn a_profile_name_is_a_plain_token() {
        let base = include_str!("../targets/stm32f401re.toml");
        for (from, to, field) in [
            (
                "name = \"stm32f401re\"",
                "name = \"x */ int injected_symbol = 42; /* y\"",
                "name",
            ),
            ("name = \"stm32f401re\"", "name = \"a\\nb\"", "name"),
            ("\"nucleo-f401re\"", "\"nucleo f401re\"", "alias"),
            ("core = \"cortex-m4\"", "core = \"cortex-m4 -o x\"", "core"),
            (
                "rust_target = \"thumbv7em-none-eabihf\"",
                "rust_target = \"x\\n[dependencies]\"",
                "toolchain.rust_target",
            ),
            (
                "\nmachine = \"netduinoplus2\"",
                "\nmachine = \"netduino*/\"",
                "emulator.machine",
            ),
            (
                "qemu_machine = \"netduinoplus2\"",
                "qemu_machine = \"netduino*/\"",
                "board.qemu_machine",
            ),
        ] {
            assert!(base.contains(from), "{from}");
            let e = format!(
                "{:#}",
                Target::from_toml(&base.replacen(from, to, 1), "t.toml").unwrap_err()
            );
            assert!(
                e.contains(&format!("{field} ")) && e.contains("not a plain name"),
                "{to}: {e}"
            );
        }
        for t in builtin() {
            t.check().unwrap();
        }
    }

    #[test]
    fn user_profile_from_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("board.toml");
        let text = include_str!("../targets/stm32f401re.toml")
            .replace("name = \"stm32f401re\"", "name = \"myboard\"");
        std::fs::write(&p, text).unwrap();
        assert_eq!(resolve(p.to_str().unwrap()).unwrap().name, "myboard");
    }
}
