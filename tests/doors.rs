//! Validation at every door: absurd specs, edited run configurations, weights that do not
//! belong to their spec, and a run made for another target. Each is a clear error (or the
//! right target), a non-zero exit, no panic, in well under a second where nothing is trained.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .output()
        .expect("run nas")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A clear error: non-zero exit, no panic, the message contains `want`.
fn fails_with(o: &Output, want: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected a failure, got success");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(want), "expected {want:?} in: {err}");
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn absurd_specs_are_rejected_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"input_len":100000000,"classes":12,"blocks":[{"filters":8,"kernel":3,"stride":1,"padding":"same"}]}"#,
            "input_len",
        ),
        (
            r#"{"input_len":784,"classes":12,"blocks":[{"filters":18446744073709551615,"kernel":3,"stride":1,"padding":"same"}]}"#,
            "filters",
        ),
        (
            r#"{"input_len":1000000,"classes":12,"blocks":[{"filters":4096,"kernel":1000000,"stride":1,"padding":"same"}]}"#,
            "kernel",
        ),
        (
            r#"{"input_len":784,"input_channels":100000000,"classes":12,"blocks":[{"filters":8,"kernel":3,"stride":1,"padding":"same"}]}"#,
            "input_channels",
        ),
        (
            r#"{"input_len":784,"classes":12,"blocks":[{"filters":8,"kernel":3,"stride":1000000,"padding":"same"}]}"#,
            "stride",
        ),
    ];
    for (i, (json, what)) in cases.iter().enumerate() {
        let p = write(tmp.path(), &format!("spec{i}.json"), json);
        let start = Instant::now();
        let out = nas(&["cost", "--net", p.to_str().unwrap()]);
        fails_with(&out, what);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{what}: took {:?}",
            start.elapsed()
        );
    }
    // The largest spec the bounds admit is costed quickly too (no per-tap loops).
    let big = r#"{"input_len":1048576,"classes":12,"blocks":[{"filters":4096,"kernel":1024,"stride":1,"padding":"same"},{"filters":4096,"kernel":1024,"stride":1,"padding":"same"}]}"#;
    let p = write(tmp.path(), "big.json", big);
    let start = Instant::now();
    let out = nas(&["cost", "--net", p.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["fits"], false);
}

/// A run directory whose `config.json` is written here (with the profile `nas targets --json`
/// gives, as a run records it), then changed by `edit`, as a user editing it would.
fn fake_run(dir: &Path, target: &str, edit: impl Fn(&mut serde_json::Value)) {
    let targets: serde_json::Value =
        serde_json::from_slice(&nas(&["targets", "--json"]).stdout).unwrap();
    let t = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == target)
        .unwrap()
        .clone();
    let limits = serde_json::json!({
        "max_params": t["budget"]["max_params"],
        "max_flops": t["budget"]["max_flops"],
        "max_tensor": t["budget"]["max_tensor"],
        "max_flash_bytes": 100_000,
        "max_ram_bytes": 20_000,
    });
    let mut cfg = serde_json::json!({
        "tool_version": "test",
        "target": t,
        "limits": limits,
        "data": {"kind": "synthetic", "seed": 1},
        "space": {"max_depth": 5, "filters": [4, 128], "kernel": [2, 8], "stride": [1, 6],
                  "pool_sizes": [2, 3], "min_len_for_pool": 32, "dropout": [0.1, 0.5]},
        "generations": 1, "children": 1, "mutations": 1, "random_start": false,
        "random_walk": false, "seed": 1, "training": "proxy", "folds": 5,
        "metric": "weighted-f1",
        "train": {"epochs": 1, "batch_size": 32, "learning_rate": 0.001,
                  "early_stop_patience": 20, "lr_patience": 12, "lr_factor": 0.6,
                  "min_learning_rate": 1e-6, "max_steps_per_epoch": 2},
        "inherit": true, "max_tries": 100
    });
    edit(&mut cfg);
    std::fs::create_dir_all(dir.join("best")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&cfg).unwrap(),
    )
    .unwrap();
}

#[test]
fn edited_run_configurations_are_errors_on_resume() {
    for (field, value, want) in [
        ("children", serde_json::json!(0), "children"),
        ("folds", serde_json::json!(1), "folds"),
        ("max_tries", serde_json::json!(0), "max tries"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        fake_run(tmp.path(), "stm32f401re", |c| c[field] = value.clone());
        let start = Instant::now();
        let out = nas(&["search", "--resume", tmp.path().to_str().unwrap()]);
        fails_with(&out, want);
        assert!(start.elapsed() < Duration::from_secs(1));
    }
    for (field, value, want) in [
        ("epochs", serde_json::json!(0), "epochs"),
        ("batch_size", serde_json::json!(0), "batch size"),
        ("learning_rate", serde_json::json!(-1.0), "learning rate"),
        ("lr_factor", serde_json::json!(7.0), "plateau factor"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        fake_run(tmp.path(), "stm32f401re", |c| {
            c["train"][field] = value.clone()
        });
        let out = nas(&["search", "--resume", tmp.path().to_str().unwrap()]);
        fails_with(&out, want);
    }
    let tmp = tempfile::tempdir().unwrap();
    fake_run(tmp.path(), "stm32f401re", |c| {
        c["space"]["filters"] = serde_json::json!([0, 128])
    });
    let out = nas(&["search", "--resume", tmp.path().to_str().unwrap()]);
    fails_with(&out, "filters range");
}

/// A real run on the synthetic data: the smart start trained for two steps, delivered as it
/// is, with its own flash and RAM budgets.
fn trained_run(dir: &Path, target: &str) {
    let out = nas(&[
        "search",
        "--target",
        target,
        "--generations",
        "0",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "32",
        "--final-top",
        "0",
        "--max-flash",
        "100000",
        "--max-ram",
        "30000",
        "--out",
        dir.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn weights_that_do_not_match_their_spec_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    trained_run(&run, "stm32f401re");
    // Another network's spec in best/: the weights no longer belong to it.
    let spec = run.join("best/spec.json");
    let mut s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&spec).unwrap()).unwrap();
    s["blocks"][0]["filters"] = serde_json::json!(5);
    std::fs::write(&spec, s.to_string()).unwrap();
    let out_dir = tmp.path().join("out");
    for args in [
        vec![
            "export",
            "--run",
            run.to_str().unwrap(),
            "--lang",
            "c",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        vec!["eval", "--run", run.to_str().unwrap()],
        vec![
            "verify",
            "--run",
            run.to_str().unwrap(),
            "--no-emulate",
            "--lang",
            "c",
        ],
    ] {
        let out = nas(&args);
        fails_with(&out, "does not match");
    }
}

#[test]
fn verify_uses_the_runs_target_and_budgets() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    trained_run(&run, "stm32g071rb");
    let out = nas(&[
        "verify",
        "--run",
        run.to_str().unwrap(),
        "--lang",
        "c",
        "--no-emulate",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["target"], "stm32g071rb");
    assert_eq!(v["core"], "cortex-m0plus");
    // The run's --max-flash / --max-ram, not the profile's defaults.
    assert_eq!(v["limits"]["max_flash_bytes"], 100_000);
    assert_eq!(v["limits"]["max_ram_bytes"], 30_000);
}
