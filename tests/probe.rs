//! What a black-box probe of the binary found (issue 22), each held by a test: a closed stdout
//! ends a command quietly (status 141, nothing on stderr, a search resumable), a `--json`
//! command's error is JSON on stdout, a failed write names its file and leaves no temporary
//! file, a zero budget reads sensibly, stray test labels and class-count mismatches are clear
//! errors, and a profile name cannot inject code into generated files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn nas_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nas"));
    c.args(args);
    c
}

fn nas(args: &[&str]) -> Output {
    nas_cmd(args).output().expect("run nas")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A clear error: non-zero exit, no panic, `want` in the message on stderr.
fn fails_with(o: &Output, want: &str) {
    let err = text(&o.stderr);
    assert!(!o.status.success(), "expected a failure, got success");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(want), "expected {want:?} in: {err}");
}

/// Run `nas args` with a stdout whose reader is gone before the first write (what `| head -1`
/// does to every write after the first line): the command ends quietly.
fn closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = rustix::pipe::pipe().expect("pipe");
    drop(reader);
    let child = nas_cmd(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nas");
    child.wait_with_output().expect("wait for nas")
}

fn ends_quietly(o: &Output, what: &str) {
    let err = text(&o.stderr);
    assert!(!err.contains("panicked"), "{what}: panic: {err}");
    assert!(err.is_empty(), "{what}: stderr: {err}");
    assert_eq!(o.status.code(), Some(141), "{what}: {}", o.status);
}

/// An IDX images file of `n` samples of `len` bytes, and its labels file.
fn write_pair(dir: &Path, prefix: &str, labels: &[u8], len: usize) {
    let n = labels.len() as u32;
    let mut img = vec![0, 0, 8, 3];
    for d in [n, 1, len as u32] {
        img.extend(d.to_be_bytes());
    }
    img.extend((0..labels.len() * len).map(|i| (i * 7 % 251) as u8));
    let mut lab = vec![0, 0, 8, 1];
    lab.extend(n.to_be_bytes());
    lab.extend(labels);
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), img).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), lab).unwrap();
}

/// A small dataset: `classes` classes, 6 train and 2 test samples each, of `len` bytes.
fn dataset(dir: &Path, classes: u8, len: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let train: Vec<u8> = (0..6 * classes).map(|i| i % classes).collect();
    let test: Vec<u8> = (0..2 * classes).map(|i| i % classes).collect();
    write_pair(dir, "train", &train, len);
    write_pair(dir, "t10k", &test, len);
    dir.to_path_buf()
}

fn spec_file(dir: &Path) -> PathBuf {
    let p = dir.join("spec.json");
    std::fs::write(&p, nas::net::NetSpec::smart_start(784, 12).to_json()).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The smallest search there is: synthetic data, the initial candidate, one step.
const TINY_SEARCH: &[&str] = &[
    "search",
    "--generations",
    "0",
    "--epochs",
    "1",
    "--steps-per-epoch",
    "1",
    "--final-top",
    "0",
];

#[test]
fn a_closed_stdout_ends_commands_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("d"), 3, 16);
    let spec = spec_file(tmp.path());
    ends_quietly(
        &closed_stdout(&["data", "inspect", s(&data)]),
        "data inspect",
    );
    ends_quietly(&closed_stdout(&["cost", "--net", s(&spec)]), "cost");
    ends_quietly(
        &closed_stdout(&["cost", "--net", s(&spec), "--json"]),
        "cost --json",
    );
    ends_quietly(&closed_stdout(&["targets"]), "targets");
}

#[test]
fn a_search_with_a_closed_stdout_stops_cleanly_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut args = TINY_SEARCH.to_vec();
    args.extend(["--out", s(&run)]);
    ends_quietly(&closed_stdout(&args), "search");
    assert!(run.join("config.json").is_file(), "the run was not created");
    assert!(
        !run.join("summary.json").exists(),
        "the search did not stop"
    );
    let out = nas(&["search", "--resume", s(&run), "--quiet"]);
    assert!(out.status.success(), "resume failed: {}", text(&out.stderr));
    assert!(run.join("summary.json").is_file());
}

#[test]
fn json_commands_report_errors_as_json_on_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let m = s(&missing);
    let cases: Vec<Vec<&str>> = vec![
        vec!["cost", "--net", m, "--json"],
        vec!["data", "inspect", m, "--json"],
        vec!["eval", "--run", m, "--json"],
        vec!["verify", "--run", m, "--json"],
        vec!["search", "--resume", m, "--json"],
        vec!["train", "--net", m, "--data", m, "--out", m, "--json"],
        vec!["bench", "--data", m, "--json"],
        vec!["data", "from-pcap", "--input", m, "--out", m, "--json"],
        vec!["report", "--run", m, "--format", "json"],
        // A usage error of a JSON command.
        vec!["cost", "--net", m, "--json", "--no-such-flag"],
    ];
    for args in cases {
        let o = nas(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let out = text(&o.stdout);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {out:?}"));
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(!msg.is_empty(), "{args:?}: {v}");
        assert!(!text(&o.stderr).contains("panicked"), "{args:?}");
        if args[0] != "cost" || args.len() == 4 {
            // The message is the whole chain, as on stderr.
            assert!(msg.contains("missing"), "{args:?}: {msg}");
        }
    }
}

#[test]
fn a_failed_write_names_the_file_and_leaves_no_temporary() {
    // A file size limit makes writes fail as a full disk does (EFBIG instead of ENOSPC); the
    // signal it raises is ignored so that the write returns the error.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("imported");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/torch_conv1d.onnx");
    let o = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 2; exec \"$0\" import \"$1\" --out \"$2\"")
        .args([env!("CARGO_BIN_EXE_nas"), s(&model), s(&out)])
        .output()
        .unwrap();
    fails_with(&o, "weights.safetensors");
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left.iter().any(|f| f.contains(".tmp")),
        "temporary files left: {left:?}"
    );
    assert!(!left.iter().any(|f| f == "weights.safetensors"), "{left:?}");
}

#[test]
fn a_zero_budget_reads_sensibly() {
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("zero.toml");
    let base = include_str!("../targets/stm32f401re.toml");
    std::fs::write(
        &profile,
        base.replace(
            "max_tensor = 22_000",
            "max_tensor = 22_000\nmax_flash_bytes = 0",
        ),
    )
    .unwrap();
    let spec = spec_file(tmp.path());
    let o = nas(&["cost", "--net", s(&spec), "--target", s(&profile)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(!out.contains("00.0 %") && !out.contains("inf"), "{out}");
    assert!(
        out.contains("fits: NO") && out.contains("a budget of 0 admits nothing"),
        "{out}"
    );
}

#[test]
fn a_test_label_outside_the_training_labels_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dataset(&tmp.path().join("d"), 3, 16);
    write_pair(&d, "t10k", &[0, 1, 99, 2], 16);
    let o = nas(&["data", "inspect", s(&d)]);
    fails_with(&o, "label 99");
    fails_with(&o, "t10k-labels-idx1-ubyte");
    fails_with(&o, "labels 0..=2");
}

#[test]
fn unknown_spec_fields_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("spec.json");
    let json = nas::net::NetSpec::smart_start(784, 12).to_json().replacen(
        "\"kernel\"",
        "\"dilation\": 2, \"kernel\"",
        1,
    );
    std::fs::write(&spec, json).unwrap();
    fails_with(
        &nas(&["cost", "--net", s(&spec)]),
        "unknown field `dilation`",
    );
}

#[test]
fn eval_names_the_model_and_the_data_on_a_class_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/torch_conv1d.onnx");
    let im = nas::onnx::import_file(&model, &Default::default()).unwrap();
    let classes = im.spec.classes as u8 + 2;
    let d = dataset(&tmp.path().join("d"), classes, im.spec.input_len);
    let o = nas(&["eval", "--onnx", s(&model), "--data", s(&d)]);
    fails_with(&o, &format!("the model {}", model.display()));
    fails_with(&o, &format!("{} output classes", im.spec.classes));
    fails_with(&o, &format!("the dataset {}", d.display()));
    fails_with(&o, &format!("use {classes} classes"));
    assert!(!text(&o.stderr).contains("winner"), "{}", text(&o.stderr));
}

#[test]
fn a_profile_name_cannot_inject_code() {
    let tmp = tempfile::tempdir().unwrap();
    let hostile = "x */ int injected_symbol = 42; /* y";
    let profile = tmp.path().join("evil.toml");
    let base = include_str!("../targets/stm32f401re.toml");
    std::fs::write(
        &profile,
        base.replace("name = \"stm32f401re\"", &format!("name = {hostile:?}")),
    )
    .unwrap();
    let spec = spec_file(tmp.path());
    fails_with(
        &nas(&["cost", "--net", s(&spec), "--target", s(&profile)]),
        "not a plain name",
    );

    // The same name edited into a run's config.json is refused when the run is opened.
    let run = tmp.path().join("run");
    let mut args = TINY_SEARCH.to_vec();
    args.extend(["--out", s(&run), "--quiet"]);
    let o = nas(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let cfg = run.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["target"]["name"] = hostile.into();
    std::fs::write(&cfg, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let kernel = tmp.path().join("kernel");
    fails_with(
        &nas(&[
            "export",
            "--run",
            s(&run),
            "--lang",
            "c",
            "--out",
            s(&kernel),
        ]),
        "not a plain name",
    );
    assert!(!kernel.exists(), "export wrote {}", kernel.display());
    let keep = tmp.path().join("fw");
    fails_with(
        &nas(&["verify", "--run", s(&run), "--keep", s(&keep)]),
        "not a plain name",
    );
    assert!(!keep.exists(), "verify wrote {}", keep.display());
}
