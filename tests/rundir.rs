//! Run-directory safety, through the real binary on tiny runs over the real ISCX data: one
//! writer at a time (a lock naming its holder, a killed holder's lock taken over), nothing
//! written over a directory of another kind or a user's files, run names that stay in runs/,
//! `verify.json` shown as the winner's only when it measured the winner, `--candidate` only
//! inside the run, and `--resume` refusing what would change the run (flags, data, an invalid
//! edited configuration) while applying what extends it.

mod common;
use common::{iscx, ok};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn nas_in(cwd: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nas"));
    c.args(args);
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    c.output().expect("run nas")
}

fn nas(args: &[&str]) -> Output {
    nas_in(None, args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A clear error: non-zero exit, no panic, the message contains every one of `want`.
fn fails_with(o: &Output, want: &[&str]) -> String {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected a failure, got success: {err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    for w in want {
        assert!(err.contains(w), "expected {w:?} in: {err}");
    }
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file under `dir` with its bytes: to assert that a refused command wrote nothing.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// The arguments of a tiny search into `out`: 20 samples per class, one step per epoch,
/// delivered as trained (no final training).
fn tiny_search(out: &Path, generations: &str) -> Vec<String> {
    [
        "search",
        "--data",
        s(&iscx()),
        "--limit-per-class",
        "20",
        "--generations",
        generations,
        "--children",
        "1",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--batch-size",
        "32",
        "--final-top",
        "0",
        "--out",
        s(out),
        "--quiet",
    ]
    .map(String::from)
    .to_vec()
}

fn run_args(args: &[String]) -> Output {
    let v: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    nas(&v)
}

fn smart_start() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/specs/smart-start.json")
}

fn tiny_train(out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<String> = [
        "train",
        "--net",
        s(&smart_start()),
        "--data",
        s(&iscx()),
        "--limit-per-class",
        "20",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--batch-size",
        "32",
        "--out",
        s(out),
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    run_args(&args)
}

/// A finished tiny run (generations 0 and 1, one child: two candidates), made once; tests that
/// change a run work on a copy.
fn fixture() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        ok(run_args(&tiny_search(&run, "1")));
        (tmp, run)
    })
    .1
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let q = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &q);
        } else {
            std::fs::copy(&p, &q).unwrap();
        }
    }
}

fn fixture_copy(tmp: &Path) -> PathBuf {
    let run = tmp.join("run");
    copy_dir(fixture(), &run);
    run
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn write_json(p: &Path, v: &serde_json::Value) {
    std::fs::write(p, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// One writer at a time
// ---------------------------------------------------------------------------------------------

#[test]
fn a_locked_run_refuses_every_other_writer_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let run = fixture_copy(tmp.path());
    let before = snapshot(&run);
    // This test process writes the run, as a search would.
    let lock = nas::search::rundir::RunLock::acquire(&run, "nas search").unwrap();
    let me = format!("pid {}", std::process::id());
    let out = run_args(&tiny_search(&run, "0"));
    fails_with(&out, &["is in use", &me, "nas search"]);
    let out = nas(&["search", "--resume", s(&run), "--quiet"]);
    fails_with(&out, &["is in use", &me]);
    let out = tiny_train(&run, &[]);
    fails_with(&out, &["is in use", &me]);
    let out = nas(&["verify", "--run", s(&run), "--lang", "c", "--no-emulate"]);
    fails_with(&out, &["is in use", &me]);
    drop(lock);
    assert_eq!(
        snapshot(&run),
        before,
        "a refused writer wrote into the run"
    );
}

/// The candidates `events.jsonl` records, by id.
fn candidate_ids(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "candidate")
        .map(|v| v["record"]["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn two_searches_into_one_directory_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let args = tiny_search(&run, "1");
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_nas"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let oks = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert_eq!(oks, 1, "{}\n{}", stderr(&a), stderr(&b));
    let refused = if a.status.success() { &b } else { &a };
    let err = stderr(refused);
    assert!(!err.contains("panicked"), "{err}");
    // Refused while the other one writes (naming it), or after it finished (a run is there).
    assert!(
        err.contains("is in use") && err.contains("pid ") || err.contains("already holds a run"),
        "{err}"
    );
    let mut ids = candidate_ids(&run);
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "a candidate recorded twice");
    assert!(!run.join(".lock").exists(), "the lock was not released");
}

#[test]
fn a_killed_writers_lock_is_taken_over_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(tiny_search(&run, "1"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 once it has locked the run and written its configuration.
    let start = Instant::now();
    let pid = child.id();
    loop {
        let holder = std::fs::read_to_string(run.join(".lock")).unwrap_or_default();
        if holder.contains(&format!("\"pid\":{pid}")) && run.join("config.json").is_file() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no lock");
        assert!(child.try_wait().unwrap().is_none(), "ended before the kill");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        run.join(".lock").is_file(),
        "a killed process leaves its lock file"
    );
    let out = ok(nas(&["search", "--resume", s(&run), "--quiet"]));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("no longer runs"),
        "{err}"
    );
    assert!(!run.join(".lock").exists());
    assert!(run.join("summary.json").is_file());
}

// ---------------------------------------------------------------------------------------------
// Nothing written over another kind of directory, or a user's files
// ---------------------------------------------------------------------------------------------

#[test]
fn train_and_search_do_not_write_over_each_other_or_a_users_files() {
    let tmp = tempfile::tempdir().unwrap();
    // `nas train` over a search run: refused, even with --force.
    let run = fixture_copy(tmp.path());
    let before = snapshot(&run);
    for extra in [&[][..], &["--force"][..]] {
        let out = tiny_train(&run, extra);
        fails_with(&out, &["holds a search run", "choose another --out"]);
        assert_eq!(snapshot(&run), before);
    }
    // `nas search` over a training directory: refused, even with --force.
    let trained = tmp.path().join("trained");
    ok(tiny_train(&trained, &[]));
    let before = snapshot(&trained);
    for extra in [&[][..], &["--force"][..]] {
        let mut args = tiny_search(&trained, "0");
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = run_args(&args);
        fails_with(&out, &["holds a `nas train` directory"]);
        assert_eq!(snapshot(&trained), before);
    }
    // A second training: refused as before.
    fails_with(&tiny_train(&trained, &[]), &["already holds a training"]);
    // A user's directory: refused without --force, nothing written, nothing left behind.
    let mine = tmp.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine").unwrap();
    let before = snapshot(&mine);
    fails_with(
        &run_args(&tiny_search(&mine, "0")),
        &["is not empty", "notes.txt", "--force"],
    );
    fails_with(&tiny_train(&mine, &[]), &["is not empty", "--force"]);
    assert_eq!(snapshot(&mine), before);
    // With --force the search writes beside the user's file.
    let mut args = tiny_search(&mine, "0");
    args.push("--force".into());
    ok(run_args(&args));
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(mine.join("summary.json").is_file());
}

#[test]
fn a_failed_training_leaves_no_new_directory_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("new/deeper");
    // The directory is claimed (created, locked) before the initial weights are read.
    let missing = tmp.path().join("missing.safetensors");
    let out = tiny_train(&out_dir, &["--init", s(&missing)]);
    fails_with(&out, &["missing.safetensors"]);
    assert!(
        !tmp.path().join("new").exists(),
        "the failed training left its directory"
    );
}

#[test]
fn run_names_stay_inside_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path().join("a/b");
    std::fs::create_dir_all(&cwd).unwrap();
    for name in ["../../escape", "..", ".", "x/y", "/abs", ""] {
        let out = nas_in(
            Some(&cwd),
            &[
                "search",
                "--name",
                name,
                "--generations",
                "0",
                "--epochs",
                "1",
                "--steps-per-epoch",
                "1",
                "--final-top",
                "0",
                "--quiet",
            ],
        );
        fails_with(&out, &["not a plain name"]);
    }
    assert!(!tmp.path().join("escape").exists());
    assert!(
        !cwd.join("runs").exists(),
        "runs/ was created for a refused name"
    );
}

#[test]
fn verify_keep_does_not_write_over_a_users_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let run = fixture_copy(tmp.path());
    let keep = tmp.path().join("keep");
    std::fs::create_dir_all(&keep).unwrap();
    // A file of a name the build writes.
    std::fs::write(keep.join("model.c"), "my own model.c").unwrap();
    let before = snapshot(&keep);
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--run",
            s(&run),
            "--lang",
            "c",
            "--no-emulate",
            "--keep",
            s(&keep),
        ];
        args.extend_from_slice(extra);
        nas(&args)
    };
    fails_with(&verify(&[]), &["not made by nas verify", "--force"]);
    assert_eq!(snapshot(&keep), before);
    ok(verify(&["--force"]));
    // Now it is nas verify's: a second --keep there needs no --force.
    ok(verify(&[]));
}

// ---------------------------------------------------------------------------------------------
// verify.json and --candidate
// ---------------------------------------------------------------------------------------------

fn report_json(run: &Path) -> serde_json::Value {
    let out = ok(nas(&["report", "--run", s(run), "--format", "json"]));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_candidates_verify_is_not_shown_as_the_winners() {
    let tmp = tempfile::tempdir().unwrap();
    let run = fixture_copy(tmp.path());
    let winner = read_json(&run.join("best/record.json"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = ["g000-c00", "g001-c00"]
        .into_iter()
        .find(|id| *id != winner)
        .unwrap();
    let other_spec = read_json(&run.join(format!("candidates/{other}/spec.json")));
    assert_ne!(other_spec, read_json(&run.join("best/spec.json")));
    let verify = |candidate: Option<&str>| {
        let mut args = vec!["verify", "--run", s(&run), "--lang", "c", "--no-emulate"];
        if let Some(c) = candidate {
            args.extend(["--candidate", c]);
        }
        nas(&args)
    };
    ok(verify(Some(other)));
    let saved = read_json(&run.join("verify.json"));
    assert_eq!(saved["model"]["candidate"], other);
    let r = report_json(&run);
    assert!(r["verify"].is_null(), "{}", r["verify"]);
    let note = r["verify_note"].as_str().unwrap();
    assert!(note.contains(other) && note.contains(&winner), "{note}");
    // The page says so too, and shows no measured footprint.
    ok(nas(&["report", "--run", s(&run)]));
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains(&format!("measured candidate {other}")));
    assert!(!html.contains("fig-verify"));
    // The winner's own measurement is shown; `best` names it too.
    for c in [None, Some("best")] {
        ok(verify(c));
        let r = report_json(&run);
        assert!(r["verify"]["kernels"].is_array(), "{r}");
        assert!(r["verify_note"].is_null());
    }
    // A verify.json that does not say what it measured (older versions) is not the winner's.
    let mut saved = read_json(&run.join("verify.json"));
    saved.as_object_mut().unwrap().remove("model");
    write_json(&run.join("verify.json"), &saved);
    let r = report_json(&run);
    assert!(r["verify"].is_null());
    assert!(r["verify_note"]
        .as_str()
        .unwrap()
        .contains("does not say which model"));
    // Nor is the winner measured on another target (saved whether or not it fits there).
    let _ = nas(&[
        "verify",
        "--run",
        s(&run),
        "--lang",
        "c",
        "--no-emulate",
        "--target",
        "stm32g071rb",
    ]);
    let r = report_json(&run);
    assert!(r["verify"].is_null());
    let note = r["verify_note"].as_str().unwrap();
    assert!(
        note.contains("stm32g071rb") && note.contains("stm32f401re"),
        "{note}"
    );
}

#[test]
fn candidate_must_be_a_candidate_of_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = fixture_copy(tmp.path());
    // Another run beside it, whose model a path would reach.
    let other = tmp.path().join("other");
    copy_dir(fixture(), &other);
    ok(nas(&[
        "verify",
        "--run",
        s(&run),
        "--lang",
        "c",
        "--no-emulate",
    ]));
    let before = snapshot(&run);
    let abs = other.join("best");
    for bad in [
        "../other/best",
        "../../other/best",
        s(&abs),
        "g001-c00/../../../other/best",
        "",
    ] {
        for cmd in [
            vec!["verify", "--run", s(&run), "--lang", "c", "--no-emulate"],
            vec!["eval", "--run", s(&run)],
        ] {
            let mut args = cmd.clone();
            args.extend(["--candidate", bad]);
            fails_with(&nas(&args), &["is not a candidate id"]);
        }
    }
    assert_eq!(snapshot(&run), before, "verify.json was overwritten");
    // A worker trains only a candidate of the run.
    let out = nas(&["worker", "--run", s(&run), "--candidate", "../other/best"]);
    fails_with(&out, &["is not a candidate id"]);
    assert_eq!(snapshot(&run), before);
}

// ---------------------------------------------------------------------------------------------
// --resume
// ---------------------------------------------------------------------------------------------

#[test]
fn resume_refuses_arguments_that_would_change_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = fixture_copy(tmp.path());
    let before = snapshot(&run);
    let out = nas(&[
        "search",
        "--resume",
        s(&run),
        "--epochs",
        "5",
        "--seed",
        "3",
        "--target",
        "stm32g071rb",
        "--max-flash",
        "1000",
        "--quiet",
    ]);
    fails_with(
        &out,
        &[
            "--epochs (config.json keeps train/epochs: 1)",
            "--seed (config.json keeps seed: 42)",
            "--target (config.json keeps target/name: \"stm32f401re\")",
            "--max-flash",
            "refused",
        ],
    );
    // Fewer generations than configured: refused too.
    let out = nas(&["search", "--resume", s(&run), "--generations", "0"]);
    fails_with(&out, &["--generations 0", "configured for 1"]);
    assert_eq!(snapshot(&run), before);
}

#[test]
fn resume_applies_more_generations_and_session_arguments_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let run = fixture_copy(tmp.path());
    let out = ok(nas(&[
        "search",
        "--resume",
        s(&run),
        "--generations",
        "2",
        "--time-budget",
        "1h",
        "--quiet",
        "--json",
    ]));
    let err = stderr(&out);
    assert!(err.contains("continues to generation 2"), "{err}");
    assert!(
        err.contains("--time-budget applies to this session"),
        "{err}"
    );
    assert_eq!(read_json(&run.join("config.json"))["generations"], 2);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["candidates"], 3);
    assert!(run.join("candidates/g002-c00/record.json").is_file());
}

#[test]
fn resume_refuses_other_data_of_the_same_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let run = fixture_copy(tmp.path());
    // The same shape (784 bytes, 12 classes), other samples: the training split as test split.
    let other = tmp.path().join("other-data");
    std::fs::create_dir_all(&other).unwrap();
    for (to, from) in [
        ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz"),
        ("train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        ("t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz"),
        ("t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    ] {
        std::fs::copy(iscx().join(from), other.join(to)).unwrap();
    }
    let was = read_json(&run.join("data.json"));
    let mut cfg = read_json(&run.join("config.json"));
    cfg["data"]["path"] = serde_json::json!(s(&other));
    write_json(&run.join("config.json"), &cfg);
    let before = snapshot(&run);
    let out = nas(&["search", "--resume", s(&run), "--quiet"]);
    fails_with(
        &out,
        &[
            "was created on other data",
            was["hash"].as_str().unwrap(),
            s(&std::fs::canonicalize(iscx()).unwrap()),
            s(&other),
        ],
    );
    assert_eq!(snapshot(&run), before);
}

#[test]
fn an_edited_target_in_a_resumed_config_is_validated() {
    for (field, value, want) in [
        (
            "clock_hz",
            serde_json::json!(0),
            "clock_hz must be positive",
        ),
        ("name", serde_json::json!(" "), "name is empty"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let run = fixture_copy(tmp.path());
        let mut cfg = read_json(&run.join("config.json"));
        cfg["target"][field] = value;
        write_json(&run.join("config.json"), &cfg);
        for args in [
            vec!["search", "--resume", s(&run), "--quiet"],
            vec!["report", "--run", s(&run), "--format", "json"],
        ] {
            fails_with(&nas(&args), &[want]);
        }
    }
}
