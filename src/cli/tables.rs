//! The text tables `nas` prints and writes into `summary.txt`: a network's cost against its
//! budgets, and the Pareto front of a search. Rendering lives here, not in the stages that
//! compute the figures.

use crate::net::cost::{share, BudgetKind, Cost};
use crate::search::pareto::Point;
use std::fmt::Write as _;

/// A per-layer table and the totals against the budget, for terminals.
pub fn cost_table(c: &Cost, target_name: &str) -> String {
    let mut s = String::new();
    write_layers(c, &mut s);
    let _ = writeln!(s);
    let _ = writeln!(s, "totals for {target_name}:");
    write_totals(c, &mut s);
    let _ = writeln!(s);
    if c.fits {
        let _ = writeln!(s, "fits: yes");
    } else {
        let _ = writeln!(s, "fits: NO");
        for v in &c.violations {
            let _ = writeln!(s, "  - {v}");
        }
    }
    s
}

/// One row per layer: operator, shapes, parameters, MACs, largest tensor, arena offset.
fn write_layers(c: &Cost, s: &mut String) {
    let _ = writeln!(
        s,
        "{:<6} {:<36} {:>11} {:>11} {:>9} {:>11} {:>11} {:>10}",
        "layer", "operator", "in", "out", "params", "MACs", "max tensor", "arena@"
    );
    for l in &c.layers {
        let shape = |(a, b): (usize, usize)| format!("{a}×{b}");
        let off = l
            .arena_offset
            .map_or("logits".to_string(), |o| o.to_string());
        let _ = writeln!(
            s,
            "{:<6} {:<36} {:>11} {:>11} {:>9} {:>11} {:>11} {:>10}",
            l.name,
            l.desc,
            shape(l.in_shape),
            shape(l.out_shape),
            l.params,
            l.macs,
            l.max_tensor,
            off
        );
    }
}

/// Each total against its budget, latency included, then the figures for comparison.
fn write_totals(c: &Cost, s: &mut String) {
    let lim = &c.limits;
    let _ = writeln!(
        s,
        "  {:<16} {:>12} {:>12} {:>8}",
        "", "value", "budget", "used"
    );
    // Without the seed's proxy budgets (`--budgets hardware`) the figures stay, unjudged.
    let proxy = |limit: Option<u64>, note: String| match limit {
        Some(_) => note,
        None => format!("{note}; no budget (--budgets hardware)"),
    };
    total_row(
        s,
        "params",
        c.params,
        lim.max_params,
        proxy(
            lim.max_params,
            format!(
                "({} trainable, {} deployed)",
                c.trainable_params, c.deployed_params
            ),
        ),
    );
    total_row(
        s,
        "flops",
        c.flops,
        lim.max_flops,
        proxy(
            lim.max_flops,
            format!("(2 × {} MACs; {} executed)", c.macs, c.executed_macs),
        ),
    );
    total_row(
        s,
        "max_tensor",
        c.max_tensor,
        Some(lim.max_tensor),
        "(elements)".into(),
    );
    total_row(
        s,
        "ram_bytes",
        c.ram_bytes,
        Some(lim.max_ram_bytes),
        if c.scratch_bytes > 0 {
            // The int8 DSP kernel's widened columns, or the float kernel's converted input bytes.
            let what = match c.dtype {
                crate::net::Dtype::Int8 => "columns",
                crate::net::Dtype::F32 => "byte rows",
            };
            format!(
                "(arena {} + {what} {} + stack {})",
                c.arena_bytes, c.scratch_bytes, c.stack_bytes
            )
        } else {
            format!("(arena {} + stack {})", c.arena_bytes, c.stack_bytes)
        },
    );
    total_row(
        s,
        "flash_bytes",
        c.flash_bytes,
        Some(lim.max_flash_bytes),
        format!(
            "(weights {} + code {}, estimate)",
            c.weights_bytes, c.code_bytes
        ),
    );
    write_latency_row(c, s);
    total_row(
        s,
        "naive arena",
        c.naive_arena_bytes,
        None,
        "(one buffer per tensor, for comparison)".into(),
    );
    total_row(
        s,
        "seed RAM",
        c.seed_ram_bytes,
        None,
        "(4 B × largest tensor, the seed's estimate)".into(),
    );
}

/// The estimated latency against its budget, with the model and clock behind it, or why
/// there is none.
fn write_latency_row(c: &Cost, s: &mut String) {
    let (Some(instructions), Some(ms)) = (c.instructions, c.latency_ms) else {
        let _ = writeln!(
            s,
            "  {:<16} {:>12} {:>12} {:>8}      (no [latency] model in the target profile)",
            "latency_ms", "-", "", ""
        );
        return;
    };
    let note = c.latency_model.map_or(String::new(), |m| {
        format!(
            "at {} MHz, {} cycles/instruction (cycle estimate); instruction model within ±{:.1} % of QEMU",
            c.clock_hz as f64 / 1e6,
            m.cycles_per_instruction,
            m.worst_error_pct
        )
    });
    let (budget, pct, mark) = match c.limits.max_latency_ms {
        Some(max) => (
            format!("{max:.3}"),
            share(ms, max),
            if c.violations
                .iter()
                .any(|v| v.budget == BudgetKind::LatencyUs)
            {
                "OVER"
            } else {
                "ok"
            },
        ),
        None => (String::new(), String::new(), ""),
    };
    let _ = writeln!(
        s,
        "  {:<16} {ms:>12.3} {budget:>12} {pct:>8} {mark:<4} ({instructions} instructions, estimate, {note})",
        "latency_ms"
    );
}

/// One row of the totals: the value, and against a budget the share used, marked OVER or ok.
fn total_row(s: &mut String, name: &str, v: u64, limit: Option<u64>, note: String) {
    let (lim, pct, mark) = match limit {
        Some(l) => (
            l.to_string(),
            share(v as f64, l as f64),
            if v > l { "OVER" } else { "ok" },
        ),
        None => (String::new(), String::new(), ""),
    };
    let _ = writeln!(
        s,
        "  {name:<16} {v:>12} {lim:>12} {pct:>8} {mark:<4} {note}"
    );
}

/// The front as a table, for summary.txt.
pub fn pareto_table(members: &[Point]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Pareto front ({} candidates: validation score ↑, flash ↓, RAM ↓, est. latency ↓)",
        members.len()
    );
    let _ = writeln!(
        s,
        "  {:<10} {:>8} {:>10} {:>9} {:>12} {:>14} {:>8}  network",
        "id", "score", "flash B", "RAM B", "latency ms", "instructions", "params"
    );
    for p in members {
        let _ = writeln!(
            s,
            "  {:<10} {:>8.4} {:>10} {:>9} {:>12} {:>14} {:>8}  {}",
            p.id,
            p.score,
            p.flash_bytes,
            p.ram_bytes,
            p.latency_ms.map_or("-".to_string(), |v| format!("{v:.3}")),
            p.instructions.map_or("-".to_string(), |v| v.to_string()),
            p.params,
            p.summary
        );
    }
    let _ = writeln!(
        s,
        "  (any of them: nas export|verify|eval --run RUN --candidate ID; latency at the target's \
         clock, see `nas cost`)"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::cost::cost;
    use crate::net::plan::lower;
    use crate::net::NetSpec;

    fn smart_start_cost(edit: impl Fn(&mut crate::target::Limits)) -> Cost {
        let t = crate::target::resolve("stm32f401re").unwrap();
        let mut limits = t.limits();
        edit(&mut limits);
        cost(&lower(&NetSpec::smart_start(784, 12)).unwrap(), &t, &limits)
    }

    #[test]
    fn the_cost_table_shows_every_layer_and_total_against_its_budget() {
        let c = smart_start_cost(|_| {});
        let s = cost_table(&c, "stm32f401re");
        for l in &c.layers {
            assert!(s.contains(&l.desc), "{} missing:\n{s}", l.desc);
        }
        for row in [
            "params",
            "flops",
            "max_tensor",
            "ram_bytes",
            "flash_bytes",
            "latency_ms",
        ] {
            assert!(
                s.lines().any(|l| l.trim_start().starts_with(row)),
                "{row}:\n{s}"
            );
        }
        assert!(
            s.contains("totals for stm32f401re:") && s.contains("fits: yes"),
            "{s}"
        );
        assert!(!s.contains("OVER"), "{s}");
    }

    #[test]
    fn a_broken_budget_is_marked_and_explained() {
        let c = smart_start_cost(|l| l.max_params = Some(10));
        let s = cost_table(&c, "stm32f401re");
        let params = s
            .lines()
            .find(|l| l.trim_start().starts_with("params"))
            .unwrap();
        assert!(params.contains("OVER"), "{params}");
        assert!(
            s.contains("fits: NO") && s.contains("params 14370 exceeds the budget 10"),
            "{s}"
        );
        // A zero budget has no finite share.
        let c = smart_start_cost(|l| l.max_flash_bytes = 0);
        let s = cost_table(&c, "stm32f401re");
        let flash = s
            .lines()
            .find(|l| l.trim_start().starts_with("flash_bytes"))
            .unwrap();
        assert!(flash.contains(" - ") && flash.contains("OVER"), "{flash}");
    }

    #[test]
    fn the_pareto_table_lists_each_member() {
        let p = |id: &str, lat: Option<f64>| Point {
            id: id.into(),
            generation: 0,
            score: 0.5,
            flash_bytes: 1000,
            ram_bytes: 100,
            instructions: lat.map(|l| (l * 84_000.0) as u64),
            latency_ms: lat,
            params: 10,
            summary: format!("net {id}"),
        };
        let s = pareto_table(&[p("g001-c00", Some(1.5)), p("g002-c01", None)]);
        assert!(s.starts_with("Pareto front (2 candidates"), "{s}");
        let row = |id: &str| s.lines().find(|l| l.contains(id)).unwrap().to_string();
        assert!(row("g001-c00").contains("1.500") && row("g001-c00").contains("net g001-c00"));
        assert!(
            row("g002-c01")
                .split_whitespace()
                .filter(|w| *w == "-")
                .count()
                == 2
        );
    }
}
