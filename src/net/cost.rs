//! Cost model: parameters, MACs, FLOPs, largest tensor, RAM and flash of a [`Plan`], checked
//! against a target's budgets.
//!
//! Conventions:
//! - `params` counts as Keras does (`model.count_params()`): conv and dense weights and biases,
//!   and all four BatchNorm vectors (γ, β and the two running statistics). The seed's parameter
//!   budget is in this unit. `trainable_params` leaves out the running statistics;
//!   `deployed_params` is what the kernel stores once BatchNorm is folded into the conv.
//! - `macs`: every kernel tap of every conv output (padding included), plus dense `in × out`.
//!   `flops = 2 × macs`, the convention of the paper's budgets. `executed_macs` is what the
//!   generated kernel really runs (padded taps skipped, pooled-away tails never computed).
//! - `max_tensor`: the largest intermediate activation as the training framework sees it (conv
//!   outputs before pooling included, the input excluded), in elements: the seed's budget.
//! - `arena_bytes`: the plan's static arena; `ram_bytes` adds the stack one inference takes on
//!   the target (measured under QEMU per profile, `[code_size] stack_bytes`).
//! - `flash_bytes`: deployed weights as float32 (each layer's in [`LayerCost::flash_bytes`])
//!   plus the target's code-size model.
//! - `instructions`: the instructions one inference of the generated C kernel executes, by the
//!   target's `[latency]` model (calibrated against `nas verify`'s counts under QEMU; see
//!   [`LatencyFeatures`]); `latency_ms` converts them at the profile's `clock_hz` under its
//!   stated cycles per instruction (1 on the shipped profiles: an assumption, zero-wait-state
//!   execution, not a cycle measurement). Both are absent for a profile without a model.
//!
//! In int8 ([`Dtype::Int8`]) the arena holds the same tensors at one byte per element, placed
//! by the same rule ([`crate::net::plan::int8_arena`]); on a DSP core the C kernel's column
//! buffer ([`crate::net::int8::column_words`]) is RAM beside it (`scratch_bytes`), and
//! the constants are the int8 weights, each row padded to whole 32-bit words, plus 16 bytes per
//! output channel (int32 bias, multiplier and rounding, the shifts): the layout of
//! [`crate::net::int8`]. The code-size model is the profile's `[code_size_int8]` and the
//! instruction model its `[latency_int8]`, over the int8 kernel's own terms
//! ([`crate::net::int8::LatencyFeaturesInt8`]).

pub use crate::net::latency::{latency_features, LatencyFeatures};
use crate::net::plan::lower;
use crate::net::plan::Int8Arena;
use crate::net::plan::{Layer, Op, Plan, ELEM_BYTES};
use crate::net::{Dtype, EmbeddingForm, NetSpec, SpecError};
use crate::target::{Latency, LatencyInt8, Limits, Target};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerCost {
    pub name: String,
    /// e.g. `conv 27×k3/s4 +relu` or `dense 114→12`.
    pub desc: String,
    pub in_shape: (usize, usize),
    pub out_shape: (usize, usize),
    pub params: u64,
    pub deployed_params: u64,
    pub macs: u64,
    pub executed_macs: u64,
    /// Largest tensor this layer produces in the training graph (pre-pool conv output).
    pub max_tensor: u64,
    pub arena_offset: Option<usize>,
    pub out_bytes: usize,
    /// Flash of this layer's constants in the deployed dtype: float32 weights and biases, or
    /// the int8 layout (padded weight rows and the per-channel constants). The layers' sum is
    /// [`Cost::weights_bytes`]; the code is costed for the whole kernel. Absent (0) in the
    /// `cost.json` of runs written before it was recorded.
    #[serde(default)]
    pub flash_bytes: u64,
}

/// The budgets a cost is checked against, named in JSON and messages as the snake-case names
/// below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetKind {
    Params,
    Flops,
    MaxTensor,
    FlashBytes,
    RamBytes,
    /// The estimated latency in microseconds against `max_latency_ms` × 1000.
    LatencyUs,
}

impl BudgetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetKind::Params => "params",
            BudgetKind::Flops => "flops",
            BudgetKind::MaxTensor => "max_tensor",
            BudgetKind::FlashBytes => "flash_bytes",
            BudgetKind::RamBytes => "ram_bytes",
            BudgetKind::LatencyUs => "latency_us",
        }
    }
}

impl std::fmt::Display for BudgetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A budget a candidate exceeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub budget: BudgetKind,
    pub value: u64,
    pub limit: u64,
    pub over_by: u64,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.limit == 0 {
            // A share of nothing is no figure: say what a zero budget means instead.
            return write!(
                f,
                "{} {} exceeds the budget 0 (a budget of 0 admits nothing)",
                self.budget, self.value
            );
        }
        write!(
            f,
            "{} {} exceeds the budget {} by {} ({})",
            self.budget,
            self.value,
            self.limit,
            self.over_by,
            share(self.over_by as f64, self.limit as f64)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// The element type the footprint is for.
    #[serde(default)]
    pub dtype: Dtype,
    pub params: u64,
    pub trainable_params: u64,
    pub deployed_params: u64,
    pub macs: u64,
    pub executed_macs: u64,
    pub flops: u64,
    pub max_tensor: u64,
    pub arena_bytes: u64,
    /// One buffer per intermediate tensor, for comparison.
    pub naive_arena_bytes: u64,
    /// The seed's RAM estimate, 4 B × largest tensor, for comparison.
    pub seed_ram_bytes: u64,
    pub ram_bytes: u64,
    /// The stack of one inference included in `ram_bytes`.
    pub stack_bytes: u64,
    /// Working memory beside the arena included in `ram_bytes`: the int8 C kernel's column
    /// buffer on DSP cores ([`crate::net::int8::column_words`]), the float C kernel's row of
    /// converted input bytes ([`byte_row_floats`]).
    #[serde(default)]
    pub scratch_bytes: u64,
    pub weights_bytes: u64,
    pub code_bytes: u64,
    pub flash_bytes: u64,
    /// What the latency model reads from the plan.
    #[serde(default)]
    pub latency_features: LatencyFeatures,
    /// Estimated instructions per inference (the target's `[latency]` model), if it has one.
    #[serde(default)]
    pub instructions: Option<u64>,
    /// `instructions` at the target's clock, under its assumed cycles per instruction.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// The model and clock behind the two figures above, so that they can be stated with them.
    #[serde(default)]
    pub latency_model: Option<LatencyBasis>,
    #[serde(default)]
    pub clock_hz: u64,
    pub fits: bool,
    pub violations: Vec<Violation>,
    pub limits: Limits,
    pub layers: Vec<LayerCost>,
}

/// What a latency estimate rests on, stated with it: the profile's assumed cycles per
/// instruction and its instruction model's worst calibration error (`[latency]` for float,
/// `[latency_int8]` for int8).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyBasis {
    pub cycles_per_instruction: f64,
    pub worst_error_pct: f64,
}

impl LatencyBasis {
    fn millis(&self, instructions: u64, clock_hz: u64) -> f64 {
        instructions as f64 * self.cycles_per_instruction * 1e3 / clock_hz as f64
    }
}

impl From<Latency> for LatencyBasis {
    fn from(m: Latency) -> Self {
        LatencyBasis {
            cycles_per_instruction: m.cycles_per_instruction,
            worst_error_pct: m.worst_error_pct,
        }
    }
}

impl From<LatencyInt8> for LatencyBasis {
    fn from(m: LatencyInt8) -> Self {
        LatencyBasis {
            cycles_per_instruction: m.cycles_per_instruction,
            worst_error_pct: m.worst_error_pct,
        }
    }
}

/// Cost a plan for a target under the given limits (usually `target.limits()`, possibly with
/// user overrides).
pub fn cost(plan: &Plan, target: &Target, limits: &Limits) -> Cost {
    cost_as(plan, target, limits, Dtype::F32)
}

/// [`cost`] for a network deployed in `dtype`.
pub fn cost_as(plan: &Plan, target: &Target, limits: &Limits, dtype: Dtype) -> Cost {
    cost_deployed(plan, target, limits, dtype, 0)
}

/// [`cost_as`] for an int8 network whose global average pooling requantizes
/// (`requantizing_means`: 0 or 1, an imported TFLite MEAN with its own output parameters; its
/// kernel replaces the plain one), which a plan alone cannot tell.
pub fn cost_deployed(
    plan: &Plan,
    target: &Target,
    limits: &Limits,
    dtype: Dtype,
    requantizing_means: usize,
) -> Cost {
    let int8_arena = crate::net::plan::int8_arena(plan);
    let layers: Vec<LayerCost> = plan
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| layer_cost(i, l, dtype, &int8_arena))
        .collect();
    let params: u64 = layers.iter().map(|l| l.params).sum();
    let deployed_params: u64 = layers.iter().map(|l| l.deployed_params).sum();
    let macs: u64 = layers.iter().map(|l| l.macs).sum();
    let executed_macs: u64 = layers.iter().map(|l| l.executed_macs).sum();
    let max_tensor = layers.iter().map(|l| l.max_tensor).max().unwrap_or(0);
    let (arena_bytes, weights_bytes, code_bytes, stack_bytes) = footprint(
        plan,
        target,
        dtype,
        deployed_params,
        &int8_arena,
        requantizing_means,
    );
    let flash_bytes = weights_bytes + code_bytes;
    let scratch_bytes = match dtype {
        Dtype::F32 => (ELEM_BYTES * byte_row_floats(plan, target.has_fpu())) as u64,
        Dtype::Int8 => 4 * crate::net::int8::column_words(plan, target.has_dsp()) as u64,
    };
    let ram_bytes = arena_bytes + stack_bytes + scratch_bytes;
    let flops = 2 * macs;
    let latency_features = latency_features(plan, target.has_fpu());
    let (instructions, latency_model) = match dtype {
        Dtype::F32 => target
            .latency
            .map(|m| {
                let n = m.instructions(&latency_features.row(), latency_features.table_work());
                (n, m.into())
            })
            .unzip(),
        Dtype::Int8 => target
            .latency_int8
            .map(|m| {
                let f = crate::net::int8::latency_features_int8(plan, target.has_dsp());
                let n = m.instructions(&f.row(), latency_features.table_work());
                (n, m.into())
            })
            .unzip(),
    };
    let latency_ms = latency_model
        .zip(instructions)
        .map(|(m, i): (LatencyBasis, u64)| m.millis(i, target.clock_hz));

    let mut violations = over_budget(&[
        (BudgetKind::Params, params, limits.max_params),
        (BudgetKind::Flops, flops, limits.max_flops),
        (BudgetKind::MaxTensor, max_tensor, Some(limits.max_tensor)),
        (
            BudgetKind::FlashBytes,
            flash_bytes,
            Some(limits.max_flash_bytes),
        ),
        (BudgetKind::RamBytes, ram_bytes, Some(limits.max_ram_bytes)),
    ]);
    if let Some(v) = latency_violation(latency_ms, limits.max_latency_ms) {
        violations.push(v);
    }
    Cost {
        dtype,
        params,
        trainable_params: params - bn_statistics(plan),
        deployed_params,
        macs,
        executed_macs,
        flops,
        max_tensor,
        arena_bytes,
        naive_arena_bytes: plan.naive_arena_bytes() as u64,
        seed_ram_bytes: 4 * max_tensor,
        ram_bytes,
        stack_bytes,
        scratch_bytes,
        weights_bytes,
        code_bytes,
        flash_bytes,
        latency_features,
        instructions,
        latency_ms,
        latency_model,
        clock_hz: target.clock_hz,
        fits: violations.is_empty(),
        violations,
        limits: *limits,
        layers,
    }
}

/// The cost of plan layer `i` deployed in `dtype`: what it is, its shapes, parameters, MACs and
/// where its output sits in the arena.
fn layer_cost(i: usize, l: &Layer, dtype: Dtype, int8_arena: &Int8Arena) -> LayerCost {
    let (w, b) = l.deployed_params();
    let deployed = (w + b) as u64;
    let (desc, in_shape, out_shape, params, max_tensor) = describe_layer(l, deployed);
    LayerCost {
        name: l.name.clone(),
        desc,
        in_shape,
        out_shape,
        params,
        deployed_params: deployed,
        macs: l.macs(),
        executed_macs: l.executed_macs(),
        max_tensor,
        arena_offset: match dtype {
            Dtype::F32 => l.output.arena_range().map(|r| r.start),
            Dtype::Int8 => int8_arena.output[i],
        },
        out_bytes: l.output.elements()
            * match dtype {
                Dtype::F32 => ELEM_BYTES,
                Dtype::Int8 => 1,
            },
        flash_bytes: match dtype {
            Dtype::F32 => deployed * ELEM_BYTES as u64,
            Dtype::Int8 => crate::net::int8::layer_constant_bytes(l) as u64,
        },
    }
}

/// A layer's operator description, input and output shapes `(len, channels)`, parameters as
/// Keras counts them and largest tensor in the training graph.
fn describe_layer(l: &Layer, deployed: u64) -> (String, (usize, usize), (usize, usize), u64, u64) {
    match &l.op {
        Op::Embed {
            len,
            dim,
            pad_left,
            pad_right,
        } => (
            format!("embedding 256×{dim} (table lookup)"),
            (*len, 1),
            (pad_left + len + pad_right, *dim),
            deployed,
            (len * dim) as u64,
        ),
        Op::LutConv(c) => {
            let bn = if c.batch_norm { " +bn" } else { "" };
            let pool = c
                .pool
                .map_or(String::new(), |(k, s)| format!(" +{}pool{s}", k.name()));
            (
                format!(
                    "embedding 256×{} folded: lut conv {}×k{}/s{}{bn} +relu{pool}",
                    c.in_channels, c.out_channels, c.kernel, c.stride
                ),
                (c.in_len, 1),
                (c.out_len, c.out_channels),
                l.keras_params(),
                // The training graph's embedded input and the conv's output.
                ((c.in_len * c.in_channels).max(c.conv_len * c.out_channels)) as u64,
            )
        }
        Op::Conv(c) => {
            let bn = if c.batch_norm { " +bn" } else { "" };
            let pool = c
                .pool
                .map_or(String::new(), |(k, s)| format!(" +{}pool{s}", k.name()));
            (
                format!(
                    "conv {}×k{}/s{}{bn} +relu{pool}",
                    c.out_channels, c.kernel, c.stride
                ),
                (c.in_len, c.in_channels),
                (c.out_len, c.out_channels),
                l.keras_params(),
                (c.conv_len * c.out_channels) as u64,
            )
        }
        Op::GlobalAvgPool { len, channels } => (
            "global avg pool".to_string(),
            (*len, *channels),
            (1, *channels),
            0,
            *channels as u64,
        ),
        Op::Dense { inputs, outputs } => (
            format!("dense {inputs}→{outputs}"),
            (1, *inputs),
            (1, *outputs),
            deployed,
            *outputs as u64,
        ),
    }
}

/// The BatchNorm running statistics among the Keras parameters (two vectors per normalised
/// conv): what `params` counts and training does not.
fn bn_statistics(plan: &Plan) -> u64 {
    plan.layers
        .iter()
        .map(|l| match &l.op {
            Op::Conv(c) | Op::LutConv(c) if c.batch_norm => 2 * c.out_channels as u64,
            _ => 0,
        })
        .sum()
}

/// `(arena, constants, code, stack)` bytes of the deployed kernel: float32 from the plan and
/// the profile's `[code_size]`, int8 from its own arena, constant layout and `[code_size_int8]`.
fn footprint(
    plan: &Plan,
    target: &Target,
    dtype: Dtype,
    deployed_params: u64,
    int8_arena: &Int8Arena,
    requantizing_means: usize,
) -> (u64, u64, u64, u64) {
    match dtype {
        Dtype::F32 => (
            plan.arena_bytes as u64,
            deployed_params * ELEM_BYTES as u64,
            float_code_bytes(plan, &target.code_size),
            target.code_size.stack_bytes,
        ),
        Dtype::Int8 => (
            int8_arena.bytes as u64,
            crate::net::int8::plan_constant_bytes(plan) as u64,
            crate::net::int8::CodeFeatures {
                gap_mean: requantizing_means,
                ..crate::net::int8::code_features(plan, target.has_dsp())
            }
            .code_bytes(&target.code_size_int8),
            target.code_size_int8.stack_bytes,
        ),
    }
}

/// The float C kernel's code bytes by the profile's `[code_size]` model.
fn float_code_bytes(plan: &Plan, m: &crate::target::CodeSize) -> u64 {
    let count = |lut: bool| {
        plan.layers
            .iter()
            .filter(|l| match l.op {
                Op::Embed { .. } => !lut,
                Op::LutConv(_) => lut,
                _ => false,
            })
            .count() as i64
    };
    let v = m.base_bytes as i64
        + m.per_layer_bytes as i64 * plan.layers.len() as i64
        + m.embed_bytes * count(false)
        + m.lut_bytes * count(true)
        + crate::net::latency::swept_conv(plan)
            .map_or(0, |c| m.sweep_bytes + m.sweep_tap_bytes * c.kernel as i64);
    v.max(0) as u64
}

/// The violations among `(budget, value, limit)` checks, in their order.
/// A budget of `None` is not checked.
fn over_budget(checks: &[(BudgetKind, u64, Option<u64>)]) -> Vec<Violation> {
    checks
        .iter()
        .filter_map(|&(budget, value, limit)| Some((budget, value, limit?)))
        .filter(|(_, value, limit)| value > limit)
        .map(|(budget, value, limit)| Violation {
            budget,
            value,
            limit,
            over_by: value - limit,
        })
        .collect()
}

/// The latency budget's violation, in whole microseconds, if the estimate exceeds it. Without
/// an estimate (a profile with no `[latency]` model) there is nothing to compare: callers reject
/// a latency budget for such a target before costing (see [`check_latency_budget`]).
pub fn latency_violation(
    latency_ms: Option<f64>,
    max_latency_ms: Option<f64>,
) -> Option<Violation> {
    let (ms, max) = (latency_ms?, max_latency_ms?);
    let value = (ms * 1e3).ceil() as u64;
    let limit = (max * 1e3).floor() as u64;
    (value > limit).then(|| Violation {
        budget: BudgetKind::LatencyUs,
        value,
        limit,
        over_by: value - limit,
    })
}

/// A latency budget needs the target's latency model for the deployed dtype (`[latency]` or
/// `[latency_int8]`), and must be a positive number of milliseconds.
pub fn check_latency_budget(target: &Target, limits: &Limits, dtype: Dtype) -> anyhow::Result<()> {
    if let Some(max) = limits.max_latency_ms {
        anyhow::ensure!(
            max.is_finite() && max > 0.0,
            "the latency budget must be a positive number of milliseconds (got {max})"
        );
        let (has, section, flag) = match dtype {
            Dtype::F32 => (target.latency.is_some(), "[latency]", ""),
            Dtype::Int8 => (target.latency_int8.is_some(), "[latency_int8]", " --int8"),
        };
        anyhow::ensure!(
            has,
            "target {} has no {section} model, so a latency budget cannot be checked; add one \
             (cargo run --release --example calibrate_latency --{flag} {}) or drop --max-latency-ms",
            target.name,
            target.name
        );
    }
    Ok(())
}

/// The spec deployed in the embedding form that serves it best on `target` under `limits`, with
/// its cost: of the two forms ([`EmbeddingForm`]) whose cost meets every budget, the one with
/// fewer estimated instructions (less RAM when the profile has no latency model, rows when
/// tied); rows when neither fits. A spec without an input embedding is returned as it is. The
/// search deploys every candidate this way.
pub fn with_best_form(
    spec: &NetSpec,
    target: &Target,
    limits: &Limits,
    dtype: Dtype,
) -> Result<(NetSpec, Cost), SpecError> {
    let cost = |s: &NetSpec| Ok::<_, SpecError>(cost_as(&lower(s)?, target, limits, dtype));
    let Some(cmp) = compare_forms(spec, target, limits, dtype)? else {
        return Ok((spec.clone(), cost(spec)?));
    };
    let (rows, lut) = (cmp.rows, cmp.lut);
    let key = |c: &Cost| (c.instructions.unwrap_or(u64::MAX), c.ram_bytes);
    let pick_lut = lut.fits && (!rows.fits || key(&lut) < key(&rows));
    let form = if pick_lut {
        EmbeddingForm::Lut
    } else {
        EmbeddingForm::Rows
    };
    let chosen = spec.clone().with_input(spec.input.with_form(form));
    Ok((chosen, if pick_lut { lut } else { rows }))
}

/// An embedded spec's cost in both deployed forms.
#[derive(Debug, Clone)]
pub struct FormComparison {
    /// The form the spec states.
    pub form: EmbeddingForm,
    pub rows: Cost,
    pub lut: Cost,
}

/// Both forms' costs of a spec whose input is embedded (`None` for byte/255).
pub fn compare_forms(
    spec: &NetSpec,
    target: &Target,
    limits: &Limits,
    dtype: Dtype,
) -> Result<Option<FormComparison>, SpecError> {
    let Some(form) = spec.input.embedding_form() else {
        return Ok(None);
    };
    let cost = |f: EmbeddingForm| {
        let s = spec.clone().with_input(spec.input.with_form(f));
        Ok::<_, SpecError>(cost_as(&lower(&s)?, target, limits, dtype))
    };
    Ok(Some(FormComparison {
        form,
        rows: cost(EmbeddingForm::Rows)?,
        lut: cost(EmbeddingForm::Lut)?,
    }))
}

impl FormComparison {
    /// What the other form would change, in one line for `nas cost`: flash, RAM and
    /// instructions against the spec's form, and whether it meets the budgets.
    pub fn describe(&self) -> String {
        let (this, other, other_form) = match self.form {
            EmbeddingForm::Rows => (&self.rows, &self.lut, EmbeddingForm::Lut),
            EmbeddingForm::Lut => (&self.lut, &self.rows, EmbeddingForm::Rows),
        };
        let delta = |a: u64, b: u64| format!("{:+}", b as i64 - a as i64);
        let instr = match (this.instructions, other.instructions) {
            (Some(a), Some(b)) => format!(", instructions {}", delta(a, b)),
            _ => String::new(),
        };
        let fits = if other.fits {
            "meets every budget".to_string()
        } else {
            let v: Vec<&str> = other.violations.iter().map(|v| v.budget.as_str()).collect();
            format!("breaks {}", v.join(", "))
        };
        let what = match other_form {
            EmbeddingForm::Lut => "folded into a lookup table (\"form\": \"lut\")",
            EmbeddingForm::Rows => "as rows (\"form\": \"rows\")",
        };
        format!(
            "embedding deployed as {}; {what} it would change flash by {} B, RAM by {} B{instr} and {fits}",
            self.form,
            delta(this.flash_bytes, other.flash_bytes),
            delta(this.ram_bytes, other.ram_bytes),
        )
    }
}

/// `part` as a percentage of `whole`; `-` when the whole is 0 (a zero budget: any use is over
/// it by no finite share).
pub fn share(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1} %", 100.0 * part / whole)
    } else {
        "-".to_string()
    }
}

/// Floats of the float C kernel's row buffer: the first conv's window of raw input bytes
/// (`kernel × in_channels`; two windows on a core with an FPU, which takes windows in pairs),
/// converted once for all its filters; 0 when no conv reads the raw bytes (an embedded input).
pub fn byte_row_floats(plan: &Plan, fpu: bool) -> usize {
    (1 + usize::from(fpu)) * first_conv_row(plan)
}

/// The first conv's row (`kernel × in_channels`) when it reads the raw input bytes, else 0.
pub fn first_conv_row(plan: &Plan) -> usize {
    plan.layers
        .iter()
        .find_map(|l| match (&l.op, &l.input) {
            (Op::Conv(c), crate::net::plan::Buffer::Input { .. }) => Some(c.kernel * c.in_channels),
            _ => None,
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::plan::lower;
    use crate::net::{Block, Head, NetSpec, Padding, PoolKind};

    fn f401() -> Target {
        crate::target::resolve("stm32f401re").unwrap()
    }

    fn cost_of(spec: &NetSpec) -> Cost {
        let t = f401();
        cost(&lower(spec).unwrap(), &t, &t.limits())
    }

    #[test]
    fn smart_start_by_hand() {
        let c = cost_of(&NetSpec::smart_start(784, 12));
        // conv0: 3·1·27 + 27                      =    108 params
        // conv1: 4·27·114 + 114 = 12,426; BN 4·114 = 456
        // dense: 114·12 + 12                      =  1,380
        // total 108 + 12,426 + 456 + 1,380        = 14,370 (Keras count)
        assert_eq!(c.params, 14_370);
        assert_eq!(c.trainable_params, 14_370 - 228);
        assert_eq!(c.deployed_params, 108 + 12_426 + 1_380);
        // conv0: L 784, s4, same → 196 outputs; 196·27·3·1 = 15,876 MACs
        // conv1: 196 → 49 outputs;    49·114·4·27        = 603,288 MACs
        // dense: 114·12                                  =   1,368 MACs
        assert_eq!(c.macs, 15_876 + 603_288 + 1_368);
        assert_eq!(c.flops, 2 * 620_532);
        // Neither conv pads (totals −1 and 0); avg-pool 3 keeps 48 of conv1's 49 outputs.
        assert_eq!(c.executed_macs, 15_876 + 48 * 114 * 4 * 27 + 1_368);
        // Largest tensor: conv1's output before pooling, 49×114 = 5,586 (conv0's is 196×27 = 5,292).
        assert_eq!(c.max_tensor, 5_586);
        assert_eq!(c.arena_bytes, (5_292 + 1_824) * 4);
        assert!(c.fits);
    }

    /// A network of the paper's size (≈90 K params, ≈5 M MACs), with padding on every layer.
    #[test]
    fn paper_sized_net_by_hand() {
        let b = |filters, kernel, stride, pool: Option<usize>| {
            let b = Block::new(filters, kernel, stride, Padding::Same);
            pool.map_or(b.clone(), |size| b.with_pool(PoolKind::Max, size))
        };
        let mut first = b(32, 5, 2, None);
        first.batch_norm = false;
        let spec = NetSpec {
            input_len: 784,
            input_channels: 1,
            input: Default::default(),
            classes: 12,
            blocks: vec![
                first,
                b(64, 5, 4, Some(2)),
                b(128, 5, 1, None),
                b(128, 2, 1, Some(2)),
            ],
            head: Head::GapDense,
        };
        let c = cost_of(&spec);
        // Lengths: 784 →(k5 s2) 392 →(k5 s4) 98 →(pool 2) 49 →(k5 s1) 49 →(k2 s1) 49 →(pool 2) 24.
        // params: conv0 5·1·32 + 32    =    192
        //         conv1 5·32·64 + 64   = 10,304, BN 4·64  = 256
        //         conv2 5·64·128 + 128 = 41,088, BN 4·128 = 512
        //         conv3 2·128·128 + 128= 32,896, BN 4·128 = 512
        //         dense 128·12 + 12    =  1,548
        assert_eq!(
            c.params,
            192 + 10_304 + 256 + 41_088 + 512 + 32_896 + 512 + 1_548
        );
        assert_eq!(c.params, 87_308);
        // MACs:   conv0 392·32·5·1   =    62,720
        //         conv1  98·64·5·32  = 1,003,520
        //         conv2  49·128·5·64 = 2,007,040
        //         conv3  49·128·2·128= 1,605,632
        //         dense 128·12       =     1,536
        assert_eq!(c.macs, 62_720 + 1_003_520 + 2_007_040 + 1_605_632 + 1_536);
        assert_eq!(c.macs, 4_680_448);
        // Largest tensor: conv0's 392×32 = 12,544 elements.
        assert_eq!(c.max_tensor, 12_544);
        // Arena: live pairs (floats) 12,544+3,136, 3,136+6,272, 6,272+3,072, 3,072+128.
        assert_eq!(c.arena_bytes, (12_544 + 3_136) * 4);
        assert!(c.fits, "{:?}", c.violations);
        // conv0 pads: total (391·2 + 5 − 784) = 3 → left 1, right 2: the first output loses one
        // tap, the last (starting at 781) two.
        assert_eq!(c.layers[0].executed_macs, (392 * 5 - 3) * 32);
    }

    /// Each layer's flash is its constants in the deployed dtype, and the layers add up to the
    /// kernel's constant flash: float32 words, or the int8 layout (padded rows, 16 B per
    /// channel), never float32 figures in an int8 cost.
    #[test]
    fn layer_flash_is_the_deployed_constants() {
        let t = f401();
        for spec in [
            NetSpec::smart_start(784, 12),
            NetSpec::from_blocks(
                200,
                5,
                vec![
                    Block::new(6, 5, 2, Padding::Same),
                    Block::new(7, 3, 1, Padding::Valid).with_pool(PoolKind::Max, 2),
                ],
            ),
        ] {
            let plan = lower(&spec).unwrap();
            let f = cost_as(&plan, &t, &t.limits(), Dtype::F32);
            let q = cost_as(&plan, &t, &t.limits(), Dtype::Int8);
            let sum = |c: &Cost| c.layers.iter().map(|l| l.flash_bytes).sum::<u64>();
            assert_eq!(sum(&f), f.weights_bytes);
            assert_eq!(sum(&q), q.weights_bytes);
            assert_eq!(
                q.weights_bytes,
                crate::net::int8::plan_constant_bytes(&plan) as u64
            );
            for l in &f.layers {
                assert_eq!(l.flash_bytes, 4 * l.deployed_params, "{}", l.name);
            }
        }
        // The smart start in int8, by hand: per filter its row of taps padded to whole words,
        // plus 16 B of constants; against float32's 4 B per weight and bias.
        let q = cost_as(
            &lower(&NetSpec::smart_start(784, 12)).unwrap(),
            &t,
            &t.limits(),
            Dtype::Int8,
        );
        let flash: Vec<(&str, u64)> = q
            .layers
            .iter()
            .filter(|l| l.deployed_params > 0)
            .map(|l| (l.desc.as_str(), l.flash_bytes))
            .collect();
        assert_eq!(
            flash.iter().map(|f| f.1).collect::<Vec<_>>(),
            [
                27 * 4 + 27 * 16,     // conv0: 3 taps → 4 B (float32: 108 · 4 = 432 B)
                114 * 108 + 114 * 16, // conv1: 4·27 = 108 B (float32: 49,704 B)
                12 * 116 + 12 * 16,   // dense: 114 → 116 B (float32: 5,520 B)
            ],
            "{flash:?}"
        );
        // A cost.json written before per-layer flash was recorded still reads (0 there).
        let mut v = serde_json::to_value(&q).unwrap();
        for l in v["layers"].as_array_mut().unwrap() {
            l.as_object_mut().unwrap().remove("flash_bytes");
        }
        let old: Cost = serde_json::from_value(v).unwrap();
        assert!(old.layers.iter().all(|l| l.flash_bytes == 0));
    }

    #[test]
    fn violations_name_the_budget() {
        let t = f401();
        let mut limits = t.limits();
        limits.max_params = Some(10);
        let c = cost(&lower(&NetSpec::smart_start(784, 12)).unwrap(), &t, &limits);
        assert!(!c.fits);
        assert_eq!(c.violations[0].budget, BudgetKind::Params);
        assert_eq!(c.violations[0].over_by, 14_360);
        assert!(c.violations[0]
            .to_string()
            .contains("params 14370 exceeds the budget 10"));
    }

    #[test]
    fn latency_features_and_estimate_by_hand() {
        // Smart start: conv0 27 filters (6 groups of 4 + 3 alone), k3 s4 over 784 → 196
        // windows, no padding; conv1 114 filters (28 groups + 2), k4 over 27 channels, avg-pool
        // 3 keeps 16 × 3 = 48 of its 49 windows; dense 114 → 12 (3 groups).
        let plan = lower(&NetSpec::smart_start(784, 12)).unwrap();
        let f = latency_features(&plan, false);
        let conv0 = 196 * 3; // taps × in_ch per filter
        let conv1 = 48 * 4 * 27;
        assert_eq!(f.macs_grouped, conv0 * 24 + conv1 * 112 + 114 * 12);
        assert_eq!(f.macs_single, conv0 * 3 + conv1 * 2);
        assert_eq!(
            f.executed_macs(),
            cost_of(&NetSpec::smart_start(784, 12)).executed_macs
        );
        assert_eq!(f.dot_calls, 196 * (6 + 3) + 48 * (28 + 2) + 3);
        assert_eq!(f.conv_outputs, 196 * 27 + 48 * 114);
        assert_eq!(f.layers, 4);
        // conv0 reads the raw bytes: each window's 3 taps converted once for all filters.
        assert_eq!(f.converted_bytes, 196 * 3);

        let mut t = f401();
        t.latency = Some(crate::target::Latency {
            per_mac: 2.0,
            per_single_mac: 10.0,
            per_call: 5.0,
            per_output: 20.0,
            per_layer: 100.0,
            per_vector_mac: 1.0,
            per_converted_byte: 7.0,
            per_pair_mac: 0.5,
            per_window: 3.0,
            per_sweep_mac: 1.5,
            per_sweep_group: 40.0,
            base: 1000.0,
            per_embed_value: 3.0,
            per_lookup: 6.0,
            per_lut_output: 20.0,
            cycles_per_instruction: 1.5,
            worst_error_pct: 10.0,
        });
        // The F401RE has an FPU: conv1's 48 windows (108 products per filter, all inside the
        // input, so all alike) go in 24 pairs through its 29 groups of filters (the last, of
        // 2, run as 4); the dense layer's 114 inputs go four at a time (112 of them) for its
        // 12 filters; conv0's 3-tap windows, too short for either loop, are swept filter by
        // filter: all 196 (none has a padded tap), 7 groups of four (the last, of 3, as 4),
        // none of them in the other terms.
        assert!(t.has_fpu());
        let v = latency_features(&plan, true);
        assert_eq!(v.macs_pair, 24 * 2 * 108 * 4 * 29);
        assert_eq!(v.macs_vector, 112 * 12);
        assert_eq!(v.macs_grouped, 2 * 12);
        assert_eq!(v.macs_single, 0);
        assert_eq!((v.sweep_groups, v.sweep_macs), (196 * 7, 196 * 7 * 4 * 3));
        assert_eq!(v.dot_calls, 24 * 29 + 3);
        assert_eq!(v.conv_outputs, 48 * 114);
        assert_eq!(v.converted_bytes, 0);
        assert_eq!((f.conv_windows, v.conv_windows), (196 + 48, 24));
        assert_eq!((f.sweep_groups, f.sweep_macs), (0, 0));
        let c = cost(&plan, &t, &t.limits());
        let want = 2 * v.macs_grouped
            + 5 * v.dot_calls
            + 20 * v.conv_outputs
            + 100 * 4
            + v.macs_vector
            + v.macs_pair / 2
            + 3 * 24
            + (1.5 * v.sweep_macs as f64) as u64
            + 40 * v.sweep_groups
            + 1000;
        assert_eq!(c.instructions, Some(want));
        // ms = instructions × CPI / clock × 1000, at the F401RE's 84 MHz.
        let ms = want as f64 * 1.5 / 84e6 * 1e3;
        assert!((c.latency_ms.unwrap() - ms).abs() < 1e-9);

        // Without a model there is no estimate.
        t.latency = None;
        let c = cost(&plan, &t, &t.limits());
        assert_eq!((c.instructions, c.latency_ms), (None, None));
    }

    #[test]
    fn latency_budget_is_a_typed_violation() {
        let t = f401();
        let plan = lower(&NetSpec::smart_start(784, 12)).unwrap();
        let ms = cost(&plan, &t, &t.limits())
            .latency_ms
            .expect("the F401RE has a model");
        let mut limits = t.limits();
        limits.max_latency_ms = Some(ms / 2.0);
        let c = cost(&plan, &t, &limits);
        assert!(!c.fits);
        let v = c
            .violations
            .iter()
            .find(|v| v.budget == BudgetKind::LatencyUs)
            .unwrap();
        assert_eq!(v.value, (ms * 1e3).ceil() as u64);
        assert_eq!(v.limit, (ms / 2.0 * 1e3).floor() as u64);
        assert_eq!(v.over_by, v.value - v.limit);
        assert!(v.to_string().starts_with("latency_us "), "{v}");
        assert!(!c.fits);
        limits.max_latency_ms = Some(ms * 2.0);
        assert!(cost(&plan, &t, &limits).fits);

        // The arithmetic alone: 1.2345 ms is 1235 µs against 1000.
        let v = latency_violation(Some(1.2345), Some(1.0)).unwrap();
        assert_eq!((v.value, v.limit, v.over_by), (1235, 1000, 235));
        assert!(latency_violation(Some(0.9), Some(1.0)).is_none());
        assert!(latency_violation(None, Some(1.0)).is_none());

        // A budget the target cannot check, or a nonsensical one, is an error up front.
        let mut bare = t.clone();
        bare.latency = None;
        let e = check_latency_budget(&bare, &limits, Dtype::F32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no [latency] model"), "{e}");
        limits.max_latency_ms = Some(-1.0);
        assert!(check_latency_budget(&t, &limits, Dtype::F32).is_err());
    }
}
