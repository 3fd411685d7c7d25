//! One self-contained HTML page: inline CSS, inline SVG, no scripts, no external resources.

use super::model::{RunReport, Winner};
use super::plots::Figure;
use crate::metrics::Metrics;
use crate::search::FinalRecord;
use std::fmt::Write as _;

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

fn kib(b: u64) -> String {
    format!("{:.1} KiB", b as f64 / 1024.0)
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px auto;max-width:1000px;color:#222}\
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}\
th{background:#f4f4f4}td.l,th.l{text-align:left}figure{margin:16px 0}figcaption{font-size:13px;color:#555}\
.note{background:#fff8e1;border:1px solid #f0d080;padding:6px 10px;font-size:13px}\
.bad{color:#b00020}.ok{color:#1b7e1b}";

/// Render the report page.
pub fn render(r: &RunReport, figures: &[Figure]) -> String {
    let mut h = String::new();
    write_head(&mut h, r);
    write_winner(&mut h, r);
    write_figures(&mut h, r, figures);
    write_verify(&mut h, r);
    write_candidates(&mut h, r);
    h.push_str("</body>\n</html>\n");
    h
}

/// The document head, the title, the run's settings, its notes and its budgets.
fn write_head(h: &mut String, r: &RunReport) {
    let title = format!("nas report: {}", r.run.display());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    let _ = writeln!(h, "<h1>{}</h1>", esc(&title));
    let _ = writeln!(
        h,
        "<p>Target <b>{}</b> ({}, {} MHz, {} flash, {} RAM) · data: {} · metric: validation {} · \
         {} generations × {} children{} · nas {}</p>",
        esc(&r.target.name),
        esc(&r.target.core),
        r.target.clock_hz / 1_000_000,
        kib(r.target.chip_flash_bytes),
        kib(r.target.chip_ram_bytes),
        esc(&r.data),
        esc(&r.metric),
        r.generations,
        r.children,
        if r.random_walk { " (random walk)" } else { "" },
        esc(&r.tool_version)
    );
    if r.synthetic_data {
        h.push_str(
            "<p class=\"note\">This run searched on the SYNTHETIC demo dataset, not on real traffic.</p>\n",
        );
    }
    if !r.complete {
        h.push_str("<p class=\"note\">The search has not completed: this is its state so far (no test metrics yet).</p>\n");
    }
    let l = &r.limits;
    let _ = writeln!(
        h,
        "<p>Budgets: {}, {}, largest tensor ≤ {}, flash ≤ {}, RAM ≤ {}.</p>",
        l.max_params
            .map_or("params: no budget".to_string(), |v| format!("params ≤ {v}")),
        l.max_flops
            .map_or("FLOPs: no budget".to_string(), |v| format!("FLOPs ≤ {v}")),
        l.max_tensor,
        kib(l.max_flash_bytes),
        kib(l.max_ram_bytes)
    );
}

/// The winner's table, or a note that there is none yet.
fn write_winner(h: &mut String, r: &RunReport) {
    let Some(w) = &r.winner else {
        h.push_str("<p class=\"note\">No candidate has finished yet.</p>\n");
        return;
    };
    h.push_str("<h2>The winner</h2>\n<table>\n");
    for (k, v) in winner_rows(w) {
        let _ = writeln!(
            h,
            "<tr><th class=\"l\">{}</th><td class=\"l\">{}</td></tr>",
            esc(k),
            v
        );
    }
    h.push_str("</table>\n");
}

/// The winner's table rows: a heading and its HTML.
fn winner_rows(w: &Winner) -> Vec<(&'static str, String)> {
    let rec = &w.record;
    let mut rows = vec![
        ("candidate", esc(&format!("{}: {}", rec.id, rec.summary))),
        (
            "validation (proxy)",
            format!(
                "accuracy {} · weighted F1 {} · macro F1 {}",
                pct(rec.val.accuracy),
                pct(rec.val.weighted_f1),
                pct(rec.val.macro_f1)
            ),
        ),
    ];
    if let Some(f) = &w.final_training {
        rows.push(("final training", final_training(f)));
    }
    match (&w.test_float32, w.cost.dtype) {
        (Some(f), _) => {
            rows.push((
                "test (used once), int8 as deployed",
                test_metrics(w.test.as_ref()),
            ));
            rows.push(("test, the float32 network", test_metrics(Some(f))));
        }
        // An int8 run written before the test figure was taken in int8.
        (None, crate::net::Dtype::Int8) if w.test.is_some() => rows.push((
            "test (used once), as trained (float32)",
            test_metrics(w.test.as_ref()),
        )),
        (None, _) => rows.push(("test (used once)", test_metrics(w.test.as_ref()))),
    }
    rows.push((
        "size",
        format!(
            "{} parameters · {} MACs executed · flash {} · RAM {} (arena {} B)",
            w.cost.params,
            w.cost.executed_macs,
            kib(w.cost.flash_bytes),
            kib(w.cost.ram_bytes),
            w.cost.arena_bytes
        ),
    ));
    if let Some(m) = &rec.measured {
        rows.push((
            "measured ELF (search --verify)",
            format!("flash {} · RAM {}", kib(m.flash_bytes), kib(m.ram_bytes)),
        ));
    }
    rows.push((
        "training",
        format!(
            "{} epochs (best {}), {:.1} s, {:.0} samples/s",
            rec.epochs_run, rec.best_epoch, rec.train_seconds, rec.train_samples_per_sec
        ),
    ));
    rows
}

fn final_training(f: &FinalRecord) -> String {
    format!(
        "validation accuracy {} · weighted F1 {} after {} epochs (best {}){}",
        pct(f.val.accuracy),
        pct(f.val.weighted_f1),
        f.epochs_run,
        f.best_epoch + 1,
        if f.warm_start {
            ", from the proxy weights"
        } else {
            ""
        }
    )
}

fn test_metrics(test: Option<&Metrics>) -> String {
    match test {
        Some(t) => format!(
            "accuracy {} · weighted F1 {} · macro F1 {} on {} samples",
            pct(t.accuracy),
            pct(t.weighted_f1),
            pct(t.macro_f1),
            t.samples
        ),
        None => "not yet (the run is incomplete)".into(),
    }
}

/// Every figure with its caption; the per-layer table after the layers figure.
fn write_figures(h: &mut String, r: &RunReport, figures: &[Figure]) {
    for f in figures {
        let _ = writeln!(
            h,
            "<figure id=\"{}\">\n<h2>{}</h2>\n{}\n<figcaption>{}</figcaption>\n</figure>",
            f.id,
            esc(&f.title),
            f.svg,
            esc(&f.caption)
        );
        if f.id == "fig-layers" {
            if let Some(w) = &r.winner {
                write_layer_table(h, w);
            }
        }
    }
}

fn write_layer_table(h: &mut String, w: &Winner) {
    h.push_str("<table>\n<tr><th class=\"l\">layer</th><th class=\"l\">operation</th><th>MACs</th><th>params</th><th>constants flash B</th><th>arena out</th></tr>\n");
    for (row, a) in w.layers.iter().zip(&w.arena) {
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&row.name),
            esc(&row.desc),
            row.executed_macs,
            row.params,
            row.flash_bytes,
            a.output.map_or("(caller)".to_string(), |(o, n)| format!("{o}..{}", o + n))
        );
    }
    h.push_str("</table>\n");
}

/// `nas verify`'s measurements per kernel, or a note on how to get them.
fn write_verify(h: &mut String, r: &RunReport) {
    let Some(v) = &r.verify else {
        match &r.verify_note {
            Some(why) => {
                let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(why));
            }
            None => h.push_str("<p class=\"note\">No footprint measured from an ELF yet: <code>nas verify --run DIR</code> saves one in the run and the next report shows it beside the estimate.</p>\n"),
        }
        return;
    };
    h.push_str("<table>\n<tr><th class=\"l\">kernel</th><th>flash est.</th><th>flash ELF</th><th>RAM est.</th><th>RAM ELF</th><th>fits</th><th>instructions / inference</th><th>bit-exact</th></tr>\n");
    for k in &v.kernels {
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&k.lang),
            k.estimate.flash_bytes,
            k.measured.flash_bytes,
            k.estimate.ram_bytes,
            k.measured.ram_bytes,
            if k.fits { "ok" } else { "bad" },
            if k.fits { "yes" } else { "no" },
            k.emulation.as_ref().map_or("-".into(), |e| e.instructions_per_inference.to_string()),
            k.emulation.as_ref().map_or("-".into(), |e| format!("{}/{}", e.bit_exact, e.samples)),
        );
    }
    h.push_str("</table>\n");
}

/// Every candidate, then a note per candidate that could not be trained.
fn write_candidates(h: &mut String, r: &RunReport) {
    h.push_str("<h2>All candidates</h2>\n<table>\n<tr><th class=\"l\">id</th><th class=\"l\">parent</th><th class=\"l\">network</th><th>score</th><th>val acc</th><th>params</th><th>MACs</th><th>flash B</th><th>RAM B</th><th>epochs</th><th>train s</th><th class=\"l\">note</th></tr>\n");
    for c in &r.candidates {
        let note = match &c.duplicate_of {
            Some(d) => format!("same as {d}: reused"),
            None if r.run_pareto.contains(&c.id) => "on the run's Pareto front".to_string(),
            None => String::new(),
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td class=\"l\">{}</td></tr>",
            esc(&c.id),
            esc(c.parent.as_deref().unwrap_or("-")),
            esc(&c.summary),
            c.score,
            pct(c.val_accuracy),
            c.params,
            c.executed_macs.map_or("-".into(), |m| m.to_string()),
            c.flash_bytes,
            c.ram_bytes,
            c.epochs_run,
            c.train_seconds,
            esc(&note)
        );
    }
    h.push_str("</table>\n");
    for (id, why) in &r.failed {
        let _ = writeln!(
            h,
            "<p class=\"note\">{} could not be trained: {}</p>",
            esc(id),
            esc(why)
        );
    }
}
