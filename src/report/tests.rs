//! The report of a small real run: a tiny search (3 generations × 2 children, one short epoch
//! each) on a synthetic dataset written as IDX files with a `classes.json`, plus a verify
//! report of its winner. Every figure is parsed back from the HTML and its series counted
//! against the run's own files.

use super::plots::*;
use super::*;
use crate::report::model::Candidate;
use crate::search::Record;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

const CLASS_NAMES: [&str; 4] = ["chat", "email", "video", "voip"];

struct Fixture {
    run: PathBuf,
    html: String,
    _tmp: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        for (prefix, n, seed) in [("train", 160, 1), ("t10k", 40, 2)] {
            let ds = crate::data::synthetic(n, 784, 4, seed);
            let imgs: Vec<&[u8]> = (0..ds.n()).map(|i| ds.sample(i)).collect();
            crate::data::pcap::write_idx_images(
                &data.join(format!("{prefix}-images-idx3-ubyte.gz")),
                &imgs,
                784,
            )
            .unwrap();
            crate::data::pcap::write_idx_labels(
                &data.join(format!("{prefix}-labels-idx1-ubyte.gz")),
                &ds.labels,
            )
            .unwrap();
        }
        std::fs::write(
            data.join("classes.json"),
            serde_json::to_string(&serde_json::json!({ "classes": CLASS_NAMES })).unwrap(),
        )
        .unwrap();
        let run = tmp.path().join("run");
        let args = [
            "nas",
            "search",
            "--data",
            data.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--generations",
            "3",
            "--children",
            "2",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "2",
            "--batch-size",
            "32",
            "--folds",
            "2",
            "--seed",
            "5",
            // A tight largest-tensor budget, so that some children are rejected (byte/255
            // input: the embedded smart start's 784 × 8 input alone exceeds it).
            "--max-tensor",
            "6000",
            "--no-embedding",
            "--final-epochs",
            "2",
            "--final-batch-size",
            "32",
            "--quiet",
        ];
        use clap::Parser;
        crate::cli::run(crate::cli::Cli::try_parse_from(args).unwrap()).unwrap();
        verify_winner(&run);
        let html = render_html(&load(&run).unwrap()).unwrap();
        Fixture {
            run,
            html,
            _tmp: tmp,
        }
    })
}

/// What `nas verify --run` saves: the winner cross-compiled and run under QEMU (C kernel).
fn verify_winner(run: &std::path::Path) {
    let r = crate::search::open_run(run).unwrap();
    let (rec, w) = r.best().unwrap();
    let samples = crate::firmware::Samples::synthetic(2, rec.spec.input_len);
    let opts = crate::firmware::Options::new(samples);
    let v = crate::firmware::verify_langs(
        &rec.spec,
        &w,
        &r.config.target,
        &r.config.limits,
        &opts,
        crate::firmware::Kernels::C,
    )
    .unwrap();
    save_verify(run, &VerifiedModel::of(None, &rec.spec, &w), &v).unwrap();
}

fn records(run: &std::path::Path) -> Vec<Record> {
    let mut v: Vec<Record> = std::fs::read_dir(run.join("candidates"))
        .unwrap()
        .map(|e| crate::util::read_json(&e.unwrap().path().join("record.json")).unwrap())
        .collect();
    v.sort_by_key(|r| (r.generation, r.index));
    v
}

/// plotters writes colours as `#RRGGBB`.
fn hex(c: plotters::style::RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// The `<svg>` of each `<figure id=...>` of the page.
fn figures_of(html: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = html;
    while let Some(i) = rest.find("<figure id=\"") {
        rest = &rest[i + 12..];
        let id = rest[..rest.find('"').unwrap()].to_string();
        let end = rest.find("</figure>").unwrap();
        let body = &rest[..end];
        let s = body.find("<svg").expect("a figure holds an svg");
        let e = body.rfind("</svg>").unwrap() + 6;
        out.insert(id, body[s..e].to_string());
        rest = &rest[end..];
    }
    out
}

struct Svg {
    doc: String,
}

impl Svg {
    fn nodes<'a>(&self, d: &'a roxmltree::Document<'a>, tag: &str) -> Vec<roxmltree::Node<'a, 'a>> {
        d.descendants()
            .filter(|n| n.tag_name().name() == tag)
            .collect()
    }
    fn attr_is(n: &roxmltree::Node, a: &str, c: &str) -> bool {
        n.attribute(a).is_some_and(|v| v.eq_ignore_ascii_case(c))
    }
    /// Circles filled with `c`.
    fn filled_circles(&self, c: &str) -> usize {
        let d = roxmltree::Document::parse(&self.doc).unwrap();
        self.nodes(&d, "circle")
            .iter()
            .filter(|n| Self::attr_is(n, "fill", c))
            .count()
    }
    /// Circles only stroked with `c` (rings).
    fn rings(&self, c: &str) -> usize {
        let d = roxmltree::Document::parse(&self.doc).unwrap();
        self.nodes(&d, "circle")
            .iter()
            .filter(|n| Self::attr_is(n, "stroke", c) && !Self::attr_is(n, "fill", c))
            .count()
    }
    fn filled_rects(&self, c: &str) -> usize {
        let d = roxmltree::Document::parse(&self.doc).unwrap();
        self.nodes(&d, "rect")
            .iter()
            .filter(|n| Self::attr_is(n, "fill", c))
            .count()
    }
    /// Point counts of the polylines stroked with `c`.
    fn lines(&self, c: &str) -> Vec<usize> {
        let d = roxmltree::Document::parse(&self.doc).unwrap();
        self.nodes(&d, "polyline")
            .iter()
            .filter(|n| Self::attr_is(n, "stroke", c))
            .map(|n| {
                n.attribute("points")
                    .unwrap_or("")
                    .split_whitespace()
                    .count()
            })
            .collect()
    }
    fn texts(&self) -> Vec<String> {
        let d = roxmltree::Document::parse(&self.doc).unwrap();
        self.nodes(&d, "text")
            .iter()
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect()
    }
}

#[test]
fn report_has_every_plot_with_the_runs_series() {
    let fx = fixture();
    let html = &fx.html;
    // Self-contained: no scripts, nothing fetched.
    assert!(!html.contains("<script"), "the page has a script");
    let without_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!without_ns.contains("http://") && !without_ns.contains("https://"));
    assert!(!html.contains("<link") && !html.contains("<img"));

    let recs = records(&fx.run);
    assert_eq!(recs.len(), 1 + 3 * 2, "the tiny search makes 7 candidates");
    let trained = recs.iter().filter(|r| r.duplicate_of.is_none()).count();
    let reused = recs.len() - trained;
    let best: Record = crate::util::read_json(&fx.run.join("best/record.json")).unwrap();
    let cost: crate::net::cost::Cost =
        crate::util::read_json(&fx.run.join("best/cost.json")).unwrap();

    let figs = figures_of(html);
    let ids: Vec<&str> = figs.keys().map(|s| s.as_str()).collect();
    for id in [
        "fig-progress",
        "fig-pareto-flash",
        "fig-pareto-ram",
        "fig-pareto-latency",
        "fig-layers",
        "fig-arena",
        "fig-training",
        "fig-confusion",
        "fig-verify",
    ] {
        assert!(ids.contains(&id), "{id} missing; figures: {ids:?}");
    }
    let svg = |id: &str| Svg {
        doc: figs[id].clone(),
    };

    // Progress: one dot per trained candidate, one ring per reused one, the parent line with
    // two points per generation.
    let p = svg("fig-progress");
    assert_eq!(p.filled_circles(&hex(TRAINED)), trained);
    assert_eq!(p.rings(&hex(REUSED)), reused);
    // Rejected children: one marker and count per generation that had any.
    let events = std::fs::read_to_string(fx.run.join("events.jsonl")).unwrap();
    let mut rejected_gens = std::collections::BTreeSet::new();
    for line in events.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["event"] == "rejected" {
            rejected_gens.insert(v["generation"].as_u64().unwrap());
        }
    }
    let marks = p
        .texts()
        .iter()
        .filter(|t| t.ends_with(" rejected"))
        .count();
    assert_eq!(marks, rejected_gens.len());
    assert!(
        !rejected_gens.is_empty(),
        "the tight budget rejected no child"
    );
    assert!(
        p.lines(&hex(PARENT)).contains(&6),
        "parent line: {:?}",
        p.lines(&hex(PARENT))
    );

    // Score against flash / RAM / latency: every distinct candidate once, the winner in its
    // colour, the budget line (flash, RAM) and the Pareto staircase (2 points per member).
    let report = load(&fx.run).unwrap();
    for (id, front, budget) in [
        ("fig-pareto-flash", &report.pareto.flash, true),
        ("fig-pareto-ram", &report.pareto.ram, true),
        ("fig-pareto-latency", &report.pareto.latency, false),
    ] {
        let s = svg(id);
        let dots = s.filled_circles(&hex(TRAINED)) + s.filled_circles(&hex(WINNER));
        assert_eq!(dots, trained, "{id}");
        assert_eq!(s.filled_circles(&hex(WINNER)), 1, "{id}");
        assert!(!front.is_empty());
        assert!(
            front.contains(&best.id) || best.duplicate_of.is_some(),
            "{id}: the winner is on every front"
        );
        assert!(s.lines(&hex(PARETO)).contains(&(2 * front.len())), "{id}");
        assert_eq!(s.lines(&hex(BUDGET)).contains(&2), budget, "{id}");
    }
    // The latency axis is in milliseconds: verify.json gave instructions per MAC.
    assert!(report.latency.instructions_per_mac.is_some());

    // The winner, layer by layer: one bar per layer in each panel.
    let l = svg("fig-layers");
    for c in [MACS, PARAMS, FLASH] {
        assert_eq!(l.filled_rects(&hex(c)), cost.layers.len());
    }
    let a = svg("fig-arena");
    let outs = cost
        .layers
        .iter()
        .filter(|l| l.arena_offset.is_some())
        .count();
    let ins = cost
        .layers
        .windows(2)
        .filter(|w| w[0].arena_offset.is_some())
        .count();
    assert_eq!(a.filled_rects(&hex(ARENA_OUT)), outs);
    assert_eq!(a.filled_rects(&hex(ARENA_IN)), ins);

    // Training curves: one point per epoch of the winner's history.
    let t = svg("fig-training");
    let fin: crate::search::FinalRecord =
        crate::util::read_json(&fx.run.join("best/final.json")).unwrap();
    let epochs = fin.history.len();
    assert!(epochs >= 1);
    for c in [TRAIN_LOSS, VAL_LOSS, VAL_ACC, LR] {
        assert!(t.lines(&hex(c)).contains(&epochs), "{:?}", t.lines(&hex(c)));
    }

    // Confusion matrix: classes² cells, labelled with the class names of classes.json.
    let c = svg("fig-confusion");
    let d = roxmltree::Document::parse(&c.doc).unwrap();
    let cells = d
        .descendants()
        .filter(|n| n.tag_name().name() == "rect")
        .filter(|n| {
            n.attribute("fill")
                .is_some_and(|f| !f.eq_ignore_ascii_case("#FFFFFF"))
        })
        .count();
    assert_eq!(cells, 16);
    let texts = c.texts();
    for name in CLASS_NAMES {
        assert!(texts.iter().any(|t| t == name), "{name} not in {texts:?}");
    }

    // Verify: estimate and measurement for flash and RAM, with the budget.
    let v = svg("fig-verify");
    assert_eq!(v.filled_rects(&hex(ESTIMATE)), 2);
    assert_eq!(v.filled_rects(&hex(MEASURED)), 2);

    // The JSON form carries the same data.
    let j = serde_json::to_value(&report).unwrap();
    assert_eq!(j["candidates"].as_array().unwrap().len(), recs.len());
    assert_eq!(j["class_names"][3], "voip");
}

/// Copy a run directory (files and folders) to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// The report draws what the run holds: the same run configured for 10⁸ generations (an
/// interrupted or time-budgeted run of a long search) gives the same figures, of the same size,
/// with a bounded number of generation ticks (it drew one per configured generation: 11 s and
/// 2.5 GB at 638, over a minute and 12 GB at 10⁸).
#[test]
fn report_cost_follows_the_run_not_the_configured_generations() {
    let fx = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    copy_dir(&fx.run, &run);
    let path = run.join("config.json");
    let mut cfg: serde_json::Value = crate::util::read_json(&path).unwrap();
    assert_eq!(cfg["generations"], 3);
    cfg["generations"] = serde_json::json!(100_000_000u64);
    crate::util::write_json(&path, &cfg).unwrap();

    let r = load(&run).unwrap();
    assert_eq!(r.generations, 100_000_000);
    assert_eq!(last_recorded_generation(&r), 3);
    let html = render_html(&r).unwrap();
    // The same page but for the configured figure and the run's path.
    assert!(
        html.len() < fx.html.len() + 200,
        "{} B against {} B",
        html.len(),
        fx.html.len()
    );
    let figs = figures_of(&html);
    let own = figures_of(&fx.html);
    assert_eq!(
        figs.keys().collect::<Vec<_>>(),
        own.keys().collect::<Vec<_>>()
    );
    for (id, svg) in &figs {
        assert_eq!(
            svg, &own[id],
            "{id} changed with the configured generations"
        );
    }
    assert!(html.contains("generations 0-3 of the 100000000 configured"));

    // A run that recorded many generations: the axis labels at most MAX_GENERATION_TICKS of
    // them.
    let mut r = r;
    let c0 = r.candidates[0].clone();
    r.candidates = (0..=5000)
        .map(|g| Candidate {
            id: format!("g{g:03}-c00"),
            generation: g,
            index: 0,
            score: 0.5 + 0.4 * (g as f64 / 5000.0),
            duplicate_of: None,
            ..c0.clone()
        })
        .collect();
    r.parents.clear();
    r.rejected.clear();
    let p = Svg {
        doc: crate::report::plots::figures(&r).unwrap()[0].svg.clone(),
    };
    assert_eq!(p.filled_circles(&hex(TRAINED)), 5001);
    let ticks: Vec<u64> = p.texts().iter().filter_map(|t| t.parse().ok()).collect();
    assert!(
        !ticks.is_empty() && ticks.len() <= MAX_GENERATION_TICKS + 1,
        "{ticks:?}"
    );
    assert!(ticks.iter().all(|&t| t <= 5001), "{ticks:?}");
}

/// A run whose `cost.json` predates per-layer flash: the report costs the winner's layers
/// again (in the run's dtype) rather than showing zeros or float32 figures.
#[test]
fn report_of_an_older_run_recosts_the_layers_flash() {
    let fx = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    copy_dir(&fx.run, &run);
    let path = run.join("best/cost.json");
    let mut cost: serde_json::Value = crate::util::read_json(&path).unwrap();
    for l in cost["layers"].as_array_mut().unwrap() {
        l.as_object_mut().unwrap().remove("flash_bytes").unwrap();
    }
    crate::util::write_json(&path, &cost).unwrap();
    let old = load(&run).unwrap().winner.unwrap();
    let new = load(&fx.run).unwrap().winner.unwrap();
    let flash = |w: &model::Winner| w.layers.iter().map(|l| l.flash_bytes).collect::<Vec<_>>();
    assert_eq!(flash(&old), flash(&new));
    assert_eq!(flash(&old).iter().sum::<u64>(), new.cost.weights_bytes);
}

#[test]
fn report_of_a_run_without_candidates_or_config_is_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let e = format!("{:#}", load(tmp.path()).unwrap_err());
    assert!(e.contains("not a run directory"), "{e}");
    // A run that has not finished a candidate still renders (progress plots only).
    let fx = fixture();
    let run = tmp.path().join("r");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::copy(fx.run.join("config.json"), run.join("config.json")).unwrap();
    let r = load(&run).unwrap();
    assert!(r.winner.is_none() && r.candidates.is_empty());
    let page = render_html(&r).unwrap();
    assert!(page.contains("No candidate has finished yet"));
    // A corrupt record is an error naming it.
    let c = run.join("candidates/g000-c00");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("record.json"), "{").unwrap();
    let e = format!("{:#}", load(&run).unwrap_err());
    assert!(e.contains("record.json"), "{e}");
}

/// Headless Chromium renders the page, and every figure has drawn pixels of its series.
/// Skipped, saying why, when Chromium is not installed (`scripts/test.sh` installs it).
#[test]
fn chromium_renders_every_plot() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        eprintln!("SKIPPED chromium_renders_every_plot: no chromium on PATH (scripts/test.sh installs the Debian package)");
        return;
    };
    let fx = fixture();
    let tmp = tempfile::tempdir().unwrap();
    // The figures stacked at known offsets, so that each one's band of the screenshot is known.
    let figs = figures_of(&fx.html);
    let size = |svg: &str| -> (u32, u32) {
        let d = roxmltree::Document::parse(svg).unwrap();
        let r = d.root_element();
        let num = |a: &str| {
            r.attribute(a)
                .unwrap()
                .trim_end_matches("px")
                .parse::<f64>()
                .unwrap() as u32
        };
        (num("width"), num("height"))
    };
    let mut page = String::from("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>body{margin:0}svg{display:block}</style></head><body>");
    let mut bands = Vec::new();
    let mut y = 0;
    let mut width = 0;
    let key = |id: &str| match id {
        "fig-progress" => TRAINED,
        "fig-pareto-flash" | "fig-pareto-ram" | "fig-pareto-latency" => PARETO,
        "fig-layers" => MACS,
        "fig-arena" => ARENA_OUT,
        "fig-training" => TRAIN_LOSS,
        // The cells' colour depends on the shares: any blue of the scale.
        "fig-confusion" => heat(0.5),
        "fig-verify" => MEASURED,
        other => panic!("no key colour for {other}"),
    };
    for (id, svg) in &figs {
        let (w, h) = size(svg);
        page.push_str(svg);
        bands.push((id.clone(), y, h, key(id)));
        y += h;
        width = width.max(w);
    }
    page.push_str("</body></html>");
    let stacked = tmp.path().join("stacked.html");
    std::fs::write(&stacked, page).unwrap();
    let full = tmp.path().join("report.html");
    std::fs::write(&full, &fx.html).unwrap();

    let shoot = |html: &std::path::Path, png: &std::path::Path, w: u32, h: u32| {
        let out = std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--enable-logging=stderr",
            ])
            .arg(format!(
                "--user-data-dir={}",
                tmp.path().join("profile").display()
            ))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("--window-size={w},{h}"))
            .arg(format!("file://{}", html.display()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "chromium failed: {err}");
        // Page errors are logged as console messages; the page has no script, so none may come.
        assert!(
            !err.contains("CONSOLE") && !err.contains("Uncaught"),
            "the page logged errors: {err}"
        );
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    };
    let (info, pixels) = shoot(&stacked, &tmp.path().join("stacked.png"), width, y);
    let ch = info.color_type.samples();
    assert!(ch >= 3);
    let at = |x: u32, y: u32| -> [u8; 3] {
        let i = ((y * info.width + x) as usize) * ch;
        [pixels[i], pixels[i + 1], pixels[i + 2]]
    };
    for (id, top, h, key) in bands {
        let mut ink = 0usize;
        let mut keyed = 0usize;
        let mut total = 0usize;
        for yy in top..(top + h).min(info.height) {
            for xx in 0..info.width {
                let p = at(xx, yy);
                total += 1;
                if p != [255, 255, 255] {
                    ink += 1;
                }
                let close = |a: u8, b: u8| (a as i32 - b as i32).abs() <= 6;
                let blue_scale = id == "fig-confusion" && p[2] as i32 - p[0] as i32 > 40;
                if blue_scale || (close(p[0], key.0) && close(p[1], key.1) && close(p[2], key.2)) {
                    keyed += 1;
                }
            }
        }
        assert!(total > 0, "{id} is outside the screenshot");
        assert!(
            ink * 100 > total,
            "{id} rendered (nearly) blank: {ink} of {total} pixels"
        );
        assert!(
            keyed >= 10,
            "{id}: its key series is not visible ({keyed} pixels)"
        );
    }
    // The page itself renders too.
    let (info, pixels) = shoot(&full, &tmp.path().join("report.png"), 1100, 3000);
    let ink = pixels
        .chunks(info.color_type.samples())
        .filter(|p| p[..3] != [255, 255, 255])
        .count();
    assert!(ink > 1000, "the report page rendered blank");
}
