//! Identifiers and literals that reach generated code: sanitised names, comment-safe text,
//! float literals that round-trip exactly. The one owner of escaping: everything a file or an
//! argument supplies (a profile's name, a `--name`, a source path) reaches generated C, Rust,
//! linker scripts or TOML only through these functions, in `codegen` and in `firmware` alike.
//! (`target` also refuses profile names that are not plain tokens when it loads them.)

use super::*;

/// Keywords of C99/C11 and Rust (strict and reserved), and crate names Rust resolves specially.
pub(crate) const RESERVED: &[&str] = &[
    // C
    "auto",
    "break",
    "case",
    "char",
    "const",
    "continue",
    "default",
    "do",
    "double",
    "else",
    "enum",
    "extern",
    "float",
    "for",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "register",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "struct",
    "switch",
    "typedef",
    "union",
    "unsigned",
    "void",
    "volatile",
    "while",
    "main",
    "asm",
    "bool",
    "true",
    "false",
    // Rust
    "as",
    "async",
    "await",
    "crate",
    "dyn",
    "fn",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "self",
    "super",
    "trait",
    "type",
    "unsafe",
    "use",
    "where",
    "abstract",
    "become",
    "box",
    "final",
    "gen",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "macro_rules",
    // crates
    "core",
    "std",
    "alloc",
    "proc_macro",
    "test",
];

/// A C- and Rust-safe lower_snake identifier from a user-supplied name: ASCII letters and digits
/// kept (lowercased), every other run of characters becomes one `_`, leading and trailing `_`
/// dropped, at most [`MAX_IDENTIFIER_LEN`] characters; `nn_` is prefixed to a leading digit and
/// `_nn` appended to a keyword. Errors when nothing usable is left.
///
/// `foo-bar; system("rm -rf /")` → `foo_bar_system_rm_rf`.
pub fn sanitize_identifier(name: &str) -> Result<String> {
    let mut out = String::new();
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    let mut out = out.trim_end_matches('_').to_string();
    if out.is_empty() {
        bail!("the name {name:?} has no ASCII letters or digits to make an identifier from");
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "nn_");
    }
    if out.len() > MAX_IDENTIFIER_LEN {
        out.truncate(MAX_IDENTIFIER_LEN);
        out = out.trim_end_matches('_').to_string();
    }
    if RESERVED.contains(&out.as_str()) {
        out.push_str("_nn");
    }
    Ok(out)
}

/// Text safe inside a `/* */`, `//` or `#` comment (C, Rust, linker scripts, TOML): ASCII
/// printable only (no line break survives), no comment delimiters.
pub(crate) fn comment_safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c {
            '→' => "->".to_string(),
            '×' => "x".to_string(),
            ' '..='~' => c.to_string(),
            _ => "?".to_string(),
        })
        .collect();
    while out.contains("*/") || out.contains("/*") {
        out = out.replace("*/", "* /").replace("/*", "/ *");
    }
    out
}

/// A double-quoted string literal that C and Rust both read as the same text: the text made
/// comment-safe (printable ASCII only), then backslashes and quotes escaped.
pub fn string_literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in comment_safe(s).chars() {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// An f32 literal that C and Rust both parse back to exactly `x` (shortest round-trip digits).
pub(crate) fn float_literal(x: f32, lang: Lang) -> String {
    let s = format!("{x:?}");
    debug_assert!(x.is_finite() && (s.contains('.') || s.contains('e')));
    match lang {
        Lang::C => format!("{s}f"),
        Lang::Rust => s,
    }
}

pub(crate) fn table_lines(v: &[f32], lang: Lang) -> Vec<String> {
    v.chunks(VALUES_PER_LINE)
        .map(|c| {
            let mut s = c
                .iter()
                .map(|&x| float_literal(x, lang))
                .collect::<Vec<_>>()
                .join(", ");
            s.push(',');
            s
        })
        .collect()
}
