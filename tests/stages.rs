//! The stages depend on each other one way: every module of `src/` may name only the stages
//! listed before its own in ARCHITECTURE.md's "Stage order". A new top-level module must be
//! placed in that list, and an import of a stage above is a failure naming the file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The stage list, bottom first: lines `N. \`name\` …` under the "## Stage order" heading.
fn stage_order(architecture: &str) -> Vec<String> {
    let section = architecture
        .split("\n## ")
        .find(|s| s.starts_with("Stage order"))
        .expect("ARCHITECTURE.md has a '## Stage order' section");
    section
        .lines()
        .filter_map(|l| {
            let (num, rest) = l.trim_start().split_once(". `")?;
            num.parse::<u32>().ok()?;
            Some(rest.split('`').next()?.to_string())
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a source text names: `crate::x`, every `x` of a `use crate::{x, …}`
/// group, and `super::x` where `super` is the crate root (in `src/x.rs` and `src/x/mod.rs`).
fn named_stages(text: &str, super_is_root: bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut prefixes = vec!["crate::"];
    if super_is_root {
        prefixes.push("super::");
    }
    for prefix in prefixes {
        for (i, _) in text.match_indices(prefix) {
            // `foo_crate::x` or `a::super::x` are not paths from the root.
            let before = text[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &text[i + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // Top-level names of the group: split at depth-0 commas.
                let (mut depth, mut start) = (0usize, 0usize);
                for (k, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            out.insert(ident(group[start..k].trim()));
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            out.insert(ident(group[start..k].trim()));
                            start = k + 1;
                        }
                        _ => {}
                    }
                }
            } else {
                out.insert(ident(rest));
            }
        }
    }
    out.remove("");
    out.remove("self");
    out
}

#[test]
fn stages_import_only_the_stages_below_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let order = stage_order(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap());
    assert!(order.len() > 10, "stage list not found: {order:?}");
    let rank = |s: &str| order.iter().position(|o| o == s);
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let parts: Vec<_> = rel
            .iter()
            .map(|p| p.to_string_lossy().to_string())
            .collect();
        let stage = parts[0].trim_end_matches(".rs").to_string();
        if stage == "main" || stage == "lib" || parts.last().unwrap() == "tests.rs" {
            continue;
        }
        let Some(own) = rank(&stage) else {
            problems.push(format!(
                "{}: stage `{stage}` is not in ARCHITECTURE.md's stage order",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        // Unit tests may use anything.
        let text = text.split("#[cfg(test)]").next().unwrap();
        let super_is_root = parts.len() == 1 || (parts.len() == 2 && parts[1] == "mod.rs");
        for named in named_stages(text, super_is_root) {
            if named == stage {
                continue;
            }
            match rank(&named) {
                Some(r) if r < own => {}
                Some(_) => problems.push(format!(
                    "{}: stage `{stage}` names `{named}`, which the stage order puts above it",
                    rel.display()
                )),
                // Not a stage: a crate-level item (macro, re-export) is fine when lib.rs has it.
                None => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_stage_in_the_order_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let order = stage_order(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap());
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    for s in &order {
        assert!(
            lib.contains(&format!("pub mod {s};")),
            "ARCHITECTURE.md lists `{s}`, which src/lib.rs does not declare"
        );
    }
}

#[test]
fn the_scanner_sees_grouped_and_root_super_paths() {
    let t =
        "use crate::{net::{plan, Dtype}, quant};\nlet x = crate::data::load();\nsuper::target::x";
    let s = named_stages(t, true);
    assert_eq!(
        s.into_iter().collect::<Vec<_>>(),
        ["data", "net", "quant", "target"]
    );
    assert!(named_stages("my_crate::net; a::super::quant", true).is_empty());
}
