//! Where candidates are trained, and what survives a kill: `--jobs 2` gives the run `--jobs 1`
//! gives; a worker that fails is retried, then recorded as failed; a search killed with
//! SIGKILL at random points and resumed ends exactly as an uninterrupted one; the Slurm
//! executor on the local cluster (started by `scripts/test.sh`) gives the local executor's
//! winner, and a driver killed mid-array resumes without losing or repeating a candidate.

mod common;
use common::{iscx, ok};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A small real search: 1 + 2 × 3 candidates, each a few steps, 2 final epochs.
fn args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "search",
        "--target",
        "stm32f401re",
        "--data",
        iscx().to_str().unwrap(),
        "--limit-per-class",
        "20",
        "--epochs",
        "2",
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
        // byte/255 only: with this seed every child is then a new architecture, so every
        // candidate is a task (the Slurm tests count the array tasks and fail one by id);
        // input-stage mutations recreate earlier networks, which are reused, not run.
        "--no-embedding",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn nas(args: &[String], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run nas")
}

/// Drop what differs between two runs of the same computation: wall times and throughputs.
fn untimed(mut v: serde_json::Value) -> serde_json::Value {
    match &mut v {
        serde_json::Value::Object(m) => {
            for k in [
                "train_seconds",
                "train_samples_per_sec",
                "seconds",
                "seconds_this_session",
                "seconds_training_total",
                "trained_this_session",
                "run",
            ] {
                m.remove(k);
            }
            for x in m.values_mut() {
                *x = untimed(x.take());
            }
        }
        serde_json::Value::Array(a) => {
            for x in a.iter_mut() {
                *x = untimed(x.take());
            }
        }
        _ => {}
    }
    v
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Everything of a finished run that must not depend on how it was executed: every record,
/// every event in order, the delivered weights, the summary.
fn fingerprint(run: &Path) -> Vec<(String, serde_json::Value)> {
    let mut v = Vec::new();
    let mut ids: Vec<String> = std::fs::read_dir(run.join("candidates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    for id in ids {
        v.push((
            id.clone(),
            untimed(json(&run.join("candidates").join(&id).join("record.json"))),
        ));
    }
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    for (i, line) in events.lines().enumerate() {
        let e: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("events.jsonl line {}: {e}: {line}", i + 1));
        v.push((format!("event {i}"), untimed(e)));
    }
    let best = std::fs::read(run.join("best/weights.safetensors")).unwrap();
    v.push(("best weights".into(), serde_json::json!(best)));
    v.push(("summary".into(), untimed(json(&run.join("summary.json")))));
    v
}

fn assert_same_run(a: &Path, b: &Path) {
    let (fa, fb) = (fingerprint(a), fingerprint(b));
    assert_eq!(fa.len(), fb.len(), "different numbers of records or events");
    for ((ka, va), (kb, vb)) in fa.iter().zip(&fb) {
        assert_eq!(ka, kb);
        assert_eq!(va, vb, "{ka} differs");
    }
}

#[test]
fn two_jobs_give_the_run_one_job_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    ok(nas(&args(&one, &[]), &[]));
    ok(nas(&args(&two, &["--jobs", "2"]), &[]));
    assert_same_run(&one, &two);
    // The workers wrote their logs beside the candidates.
    assert!(two.join("candidates/g001-c00/worker.log").is_file());
}

#[test]
fn a_failing_worker_is_retried_then_recorded_as_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = ok(nas(
        &args(&run, &["--jobs", "2", "--json"]),
        &[(nas::search::FAIL_ENV, "g001-c01")],
    ));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["candidates"], 7, "the failed candidate is kept");
    assert_ne!(summary["winner"]["id"], "g001-c01");
    let rec = json(&run.join("candidates/g001-c01/record.json"));
    let why = rec["failed"].as_str().expect("recorded as failed");
    assert!(
        why.contains("failed twice") && why.contains("failing on purpose"),
        "{why}"
    );
    let log = std::fs::read_to_string(run.join("candidates/g001-c01/worker.log")).unwrap();
    assert_eq!(log.matches("failing on purpose").count(), 2, "{log}");
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    assert!(events.contains("\"failed\":\"its worker failed twice"));
}

/// Kill delays: seeded fractions (5–35 %) of an uninterrupted run's wall time, so that the
/// kills land inside the run however fast the machine is (a tiny xorshift; no dev-dependency).
fn delays(seed: u64, n: usize, whole: Duration) -> Vec<Duration> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            whole.mul_f64(0.05 + 0.30 * (s % 1000) as f64 / 1000.0)
        })
        .collect()
}

#[test]
fn killed_at_random_points_the_search_resumes_to_the_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, killed) = (tmp.path().join("whole"), tmp.path().join("killed"));
    let start = Instant::now();
    ok(nas(&args(&whole, &[]), &[]));
    let wall = start.elapsed();

    let fresh = args(&killed, &[]);
    let resume: Vec<String> = ["search", "--resume", killed.to_str().unwrap(), "--quiet"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut kills = 0;
    for (i, d) in delays(0x5eed_1234, 8, wall).into_iter().enumerate() {
        let a = if i == 0 { &fresh } else { &resume };
        let mut child = Command::new(env!("CARGO_BIN_EXE_nas"))
            .args(a)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while start.elapsed() < d {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        if killed.join("summary.json").is_file() {
            break;
        }
    }
    assert!(kills >= 2, "the search was killed only {kills} times");
    ok(nas(&resume, &[]));
    assert_same_run(&whole, &killed);
}

// ---------------------------------------------------------------------------------------------
// Slurm
// ---------------------------------------------------------------------------------------------

fn require_slurm() {
    let ok = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    assert!(
        ok,
        "no Slurm cluster answers (sinfo): run the tests with ./scripts/test.sh, which installs \
         slurm-wlm and munge and starts slurmctld and slurmd on localhost"
    );
}

#[test]
fn slurm_executor_gives_the_local_executors_run() {
    require_slurm();
    let tmp = tempfile::tempdir().unwrap();
    let (local, slurm) = (tmp.path().join("local"), tmp.path().join("slurm"));
    ok(nas(&args(&local, &[]), &[]));
    ok(nas(&args(&slurm, &["--executor", "slurm"]), &[]));
    assert_same_run(&local, &slurm);
    // One array per generation (1, 3 and 3 tasks), each task's output kept.
    let outs = std::fs::read_dir(slurm.join("slurm"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".out")
        })
        .count();
    assert_eq!(outs, 7);
}

#[test]
fn slurm_driver_killed_mid_array_resumes_and_retries_failures() {
    require_slurm();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    // A task that always fails: tried twice, then recorded as failed.
    let env = [(nas::search::FAIL_ENV, "g002-c02")];
    let mut child = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args(&run, &["--executor", "slurm"]))
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the driver once generation 1's array is in the queue.
    let start = Instant::now();
    while !std::fs::read_dir(run.join("slurm")).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("g001"))
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no array submitted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The killed driver's lock goes with the last of its open files: a resume a moment later
    // may still be told the run is in use (and to wait), so it waits a little.
    let resume = || {
        nas(
            &[
                "search",
                "--resume",
                run.to_str().unwrap(),
                "--executor",
                "slurm",
                "--quiet",
                "--json",
            ]
            .map(String::from),
            &env,
        )
    };
    let mut out = resume();
    for _ in 0..50 {
        if out.status.success() || !String::from_utf8_lossy(&out.stderr).contains("is in use") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        out = resume();
    }
    let out = ok(out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["candidates"], 7);
    let rec = json(&run.join("candidates/g002-c02/record.json"));
    assert!(
        rec["failed"]
            .as_str()
            .is_some_and(|w| w.contains("failed twice")),
        "{rec}"
    );
    // Across the killed driver's arrays and the resumed one's, every candidate was trained
    // exactly once, the failing one twice (the workers' outputs say what they trained).
    let mut trained = String::new();
    for e in std::fs::read_dir(run.join("slurm")).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".out") {
            trained.push_str(&std::fs::read_to_string(e.path()).unwrap());
        }
    }
    for id in [
        "g000-c00", "g001-c00", "g001-c01", "g001-c02", "g002-c00", "g002-c01",
    ] {
        let n = trained.matches(&format!("training {id}:")).count();
        assert_eq!(n, 1, "{id} trained {n} times:\n{trained}");
    }
    assert_eq!(trained.matches("training g002-c02:").count(), 2);
}
