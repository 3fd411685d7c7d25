//! The Pareto front, the latency estimate and `--candidate`, end to end: a tiny search on a
//! real ISCX subset through the real binary, and the latency model against QEMU's count.

mod common;
use common::{iscx, ok};
use nas::firmware::{self, Options, Samples};
use nas::net::cost::{cost, Cost};
use nas::net::plan::lower;
use nas::net::NetSpec;
use nas::search::pareto::{dominates, front, ParetoFile, Point};
use nas::search::Record;
use nas::weights::Weights;
use std::path::Path;
use std::process::{Command, Output};

fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .output()
        .expect("run nas")
}

fn read<T: serde::de::DeserializeOwned>(p: &Path) -> T {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every finished candidate's record and cost.
fn candidates(run: &Path) -> Vec<(Record, Cost)> {
    let mut v: Vec<(Record, Cost)> = std::fs::read_dir(run.join("candidates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|d| (read(&d.join("record.json")), read(&d.join("cost.json"))))
        .collect();
    v.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    v
}

/// A tiny search under `--objective pareto` into `run`.
fn pareto_search(run: &Path) {
    let data = iscx();
    ok(nas(&[
        "search",
        "--target",
        "stm32f401re",
        "--data",
        data.to_str().unwrap(),
        "--limit-per-class",
        "20",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "3",
        "--batch-size",
        "32",
        "--final-epochs",
        "2",
        "--generations",
        "2",
        "--children",
        "3",
        "--objective",
        "pareto",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]));
}

#[test]
fn search_keeps_the_pareto_front_and_exports_any_candidate() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    pareto_search(&run);

    let file: ParetoFile = read(&run.join("pareto.json"));
    let all = candidates(&run);
    assert_eq!(all.len(), 7);
    // Every distinct architecture once: reused duplicates count under the original.
    let distinct: Vec<Point> = all
        .iter()
        .filter(|(r, _)| r.duplicate_of.is_none())
        .map(|(r, c)| Point::new(r, c))
        .collect();
    assert_eq!(file.evaluated, distinct);
    assert!(!file.members.is_empty());
    for p in &distinct {
        assert!(
            p.latency_ms.is_some_and(|l| l > 0.0) && p.instructions.is_some(),
            "{} has no latency estimate",
            p.id
        );
        let member = file.members.iter().any(|m| m.id == p.id);
        let dominated = distinct.iter().any(|q| dominates(q, p));
        assert_eq!(
            member, !dominated,
            "{}: member {member}, dominated {dominated}",
            p.id
        );
    }

    // The summary carries the front as data and as a table.
    let summary: serde_json::Value = read(&run.join("summary.json"));
    assert_eq!(
        summary["pareto"].as_array().unwrap().len(),
        file.members.len()
    );
    let text = std::fs::read_to_string(run.join("summary.txt")).unwrap();
    assert!(text.contains("Pareto front"), "{text}");
    for m in &file.members {
        assert!(text.contains(&m.id), "{} missing from summary.txt", m.id);
    }
    // Parent choice under --objective pareto: every generation's parent is one of its children
    // on the front of the candidates so far, or (none on it) the score rule's choice.
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let parents: Vec<String> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "generation")
        .map(|v| v["parent"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(parents.len(), 2);
    for (g, parent) in (1..=2).zip(&parents) {
        let upto: Vec<Point> = distinct
            .iter()
            .filter(|p| p.generation <= g)
            .cloned()
            .collect();
        let on_front: Vec<&str> = all
            .iter()
            .filter(|(r, _)| r.generation == g)
            .filter(|(r, _)| {
                let id = r.duplicate_of.as_deref().unwrap_or(&r.id);
                front(&upto).iter().any(|m| m.id == id)
            })
            .map(|(r, _)| r.id.as_str())
            .collect();
        if !on_front.is_empty() {
            assert!(
                on_front.contains(&parent.as_str()),
                "generation {g}: parent {parent} is not one of {on_front:?} on the front"
            );
        }
    }
    // The parent draw is seeded: the same search again makes the same candidates and parents.
    let again = tmp.path().join("again");
    pareto_search(&again);
    let specs = |run: &Path| -> Vec<_> {
        candidates(run)
            .into_iter()
            .map(|(r, _)| (r.id, r.parent, r.spec))
            .collect()
    };
    assert_eq!(specs(&run), specs(&again));

    // Any candidate exports, not only the delivered model.
    let cand = &all.last().unwrap().0.id;
    let out = tmp.path().join("model");
    ok(nas(&[
        "export",
        "--run",
        run.to_str().unwrap(),
        "--candidate",
        cand,
        "--lang",
        "c",
        "--out",
        out.to_str().unwrap(),
    ]));
    let c = std::fs::read_to_string(out.join("model.c")).unwrap();
    assert!(
        c.contains(&format!("candidate {cand}")),
        "provenance names it"
    );

    // An unknown id is a clear error that lists valid ones.
    let bad = nas(&[
        "export",
        "--run",
        run.to_str().unwrap(),
        "--candidate",
        "g009-c09",
        "--lang",
        "c",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("no finished candidate 'g009-c09'") && err.contains("g000-c00"),
        "{err}"
    );
}

#[test]
fn latency_budget_nothing_can_meet_stops_the_search_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = nas(&[
        "search",
        "--target",
        "stm32f401re",
        "--max-latency-ms",
        "0.001",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("latency_us"), "{err}");
}

/// The estimate of a network the calibration never saw (the seed's smart start, random
/// weights) is within the profile's stated worst error of QEMU's count on the F401RE.
#[test]
fn latency_estimate_is_within_the_stated_error_of_qemu() {
    let qemu = Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !qemu {
        eprintln!(
            "SKIPPED: qemu-system-arm is missing (apt-get install -y qemu-system-arm), so there \
             is no instruction count to compare the estimate with"
        );
        return;
    }
    let target = nas::target::resolve("stm32f401re").unwrap();
    let model = target.latency.expect("the F401RE has a [latency] model");
    let spec = NetSpec::smart_start(784, 12);
    let weights = Weights::random(&spec, 7);
    let estimate = cost(&lower(&spec).unwrap(), &target, &target.limits())
        .instructions
        .unwrap();
    let r = firmware::verify(
        &spec,
        &weights,
        &target,
        &target.limits(),
        &Options::new(Samples::synthetic(3, 784)),
    )
    .unwrap();
    let measured = r.emulation.expect("emulated").instructions_per_inference;
    let err = 100.0 * (estimate as f64 - measured as f64).abs() / measured as f64;
    eprintln!("smart start on stm32f401re: estimate {estimate}, QEMU {measured} ({err:.2} %)");
    assert!(
        err <= model.worst_error_pct,
        "estimate {estimate} vs QEMU {measured}: {err:.2} % > the stated {} %",
        model.worst_error_pct
    );
}
