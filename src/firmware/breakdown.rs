//! Where an image's bytes go, from its symbol table: weights, arena, kernel code, runtime
//! routines, harness.

use super::*;

/// Symbol-level breakdown of an image whose kernel is `kernel` in `lang`.
pub(crate) fn breakdown(
    image: &ElfImage,
    kernel_symbols: &BTreeSet<String>,
    lang: Lang,
    kernel: &str,
) -> Breakdown {
    let arena_name = format!("{kernel}_arena");
    let is_weight = |n: &str| match lang {
        Lang::C => n.starts_with(&format!("{kernel}_")) && (n.ends_with("_w") || n.ends_with("_b")),
        Lang::Rust => is_rust_weight(n, kernel),
    };
    let harness_sections: Vec<&str> = HARNESS_FLASH_SECTIONS
        .iter()
        .chain(HARNESS_RAM_SECTIONS)
        .copied()
        .collect();
    let mut b = Breakdown {
        weights_bytes: 0,
        weights: Vec::new(),
        arena_bytes: 0,
        kernel_code_bytes: 0,
        kernel_functions: Vec::new(),
        kernel_const_bytes: 0,
        kernel_ram_bytes: 0,
        runtime_bytes: 0,
        runtime_functions: Vec::new(),
        unattributed_flash_bytes: 0,
        harness_flash_bytes: image.flash_of(HARNESS_FLASH_SECTIONS),
        harness_ram_bytes: image.ram_of(&[".harness_bss"]),
        stack_reserved_bytes: image.ram_of(&[".stack"]),
    };
    // Aliases (one routine under two names in libgcc) are counted once, by address range.
    let mut seen: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut attributed_flash = 0;
    for s in &image.symbols {
        if harness_sections.contains(&s.section.as_str()) || !seen.insert((s.addr, s.size)) {
            continue;
        }
        let in_flash = image.symbol_in_flash(s);
        let entry = SymbolSize {
            name: demangle(&s.name),
            bytes: s.size,
        };
        if s.name == arena_name {
            b.arena_bytes = s.size;
        } else if kernel_symbols.contains(&s.name) {
            match s.kind {
                SymbolType::Function => {
                    b.kernel_code_bytes += s.size;
                    b.kernel_functions.push(entry);
                }
                SymbolType::Object if is_weight(&s.name) && in_flash => {
                    b.weights_bytes += s.size;
                    b.weights.push(entry);
                }
                SymbolType::Object if in_flash => b.kernel_const_bytes += s.size,
                SymbolType::Object => b.kernel_ram_bytes += s.size,
            }
        } else if in_flash {
            b.runtime_bytes += s.size;
            b.runtime_functions.push(entry);
        } else {
            b.kernel_ram_bytes += s.size;
        }
        if in_flash {
            attributed_flash += s.size;
        }
    }
    b.unattributed_flash_bytes = image
        .flash_bytes
        .saturating_sub(b.harness_flash_bytes)
        .saturating_sub(attributed_flash);
    b
}

pub(crate) fn pct(estimate: u64, measured: u64) -> f64 {
    100.0 * (estimate as f64 - measured as f64) / measured.max(1) as f64
}
