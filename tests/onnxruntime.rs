//! The exported ONNX models in onnxruntime (CPU, graph optimisations off and on) on the whole
//! ISCX test split, against `nas eval`'s figures: the float32 export predicts what the float
//! reference predicts on every sample; the int8 QDQ export's every output is within one output
//! step of the int8 reference (which the kernels equal bit for bit). How many predictions the
//! int8 export changes is printed, for the README.
//!
//! Needs a Python with `onnxruntime` and `numpy`: `NAS_ONNXRUNTIME_PYTHON` (which
//! `scripts/test.sh` sets to a venv it installs them into), else `python3` when it has them.
//! Without one the test prints `SKIPPED: …` and passes.

mod common;
use nas::codegen::{lower_weights, reference_logits};
use nas::data::{load_dir, Dataset, LoadOptions};
use nas::net::NetSpec;
use nas::quant::{calibrate::DEFAULT_CALIBRATION_SAMPLES, ptq, reference_int8, CalibrationMethod};
use nas::weights::Weights;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a model in onnxruntime on the inputs (raw little-endian f32, `[N, C, L]`), once with
/// every graph optimisation off and once with all on; writes each run's outputs as raw f32.
const RUN_ORT: &str = r#"
import sys
import numpy as np
import onnxruntime as ort

model, inputs, n, c, l, out = sys.argv[1:7]
x = np.fromfile(inputs, dtype="<f4").reshape(int(n), int(c), int(l))
levels = {
    "off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "on": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
for name, level in levels.items():
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    y = s.run(None, {s.get_inputs()[0].name: x})[0]
    np.ascontiguousarray(y, dtype="<f4").tofile(out + "." + name)
print(ort.__version__)
"#;

/// The Python to run onnxruntime with, or why there is none.
fn python() -> Result<PathBuf, String> {
    let works = |p: &Path| {
        Command::new(p)
            .args(["-c", "import onnxruntime, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Some(p) = std::env::var_os("NAS_ONNXRUNTIME_PYTHON") {
        let p = PathBuf::from(p);
        // Set on purpose (scripts/test.sh sets it after installing): it must work.
        assert!(
            works(&p),
            "NAS_ONNXRUNTIME_PYTHON={} cannot import onnxruntime and numpy",
            p.display()
        );
        return Ok(p);
    }
    let p = PathBuf::from("python3");
    if works(&p) {
        Ok(p)
    } else {
        Err(
            "no Python with onnxruntime and numpy (set NAS_ONNXRUNTIME_PYTHON, or run \
             scripts/test.sh, which installs them into a venv under target/)"
                .into(),
        )
    }
}

/// The test samples as the graphs' input: byte × 1/255, `[N, C, L]`.
fn graph_inputs(test: &Dataset, spec: &NetSpec) -> Vec<u8> {
    let (c, l) = (spec.input_channels, spec.input_len);
    let mut out = Vec::with_capacity(test.n() * c * l * 4);
    for i in 0..test.n() {
        let x = test.sample(i);
        for ch in 0..c {
            for t in 0..l {
                let v = x[t * c + ch] as f32 * nas::data::INPUT_SCALE;
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

/// `model` run by onnxruntime on `inputs`: (the onnxruntime version, outputs with graph
/// optimisations off, outputs with them on), one row of logits per sample.
fn run_ort(
    python: &Path,
    dir: &Path,
    model: &[u8],
    inputs: &Path,
    spec: &NetSpec,
    n: usize,
) -> (String, [Vec<Vec<f32>>; 2]) {
    let (m, script, out) = (dir.join("m.onnx"), dir.join("run.py"), dir.join("out"));
    std::fs::write(&m, model).unwrap();
    std::fs::write(&script, RUN_ORT).unwrap();
    let o = Command::new(python)
        .arg(&script)
        .arg(&m)
        .arg(inputs)
        .args([n, spec.input_channels, spec.input_len].map(|v| v.to_string()))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "onnxruntime failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let read = |level: &str| -> Vec<Vec<f32>> {
        let bytes = std::fs::read(dir.join(format!("out.{level}"))).unwrap();
        let v: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(v.len(), n * spec.classes, "onnxruntime's output size");
        v.chunks(spec.classes).map(|r| r.to_vec()).collect()
    };
    let version = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (version, [read("off"), read("on")])
}

/// The first largest value, as the kernels' `predict`.
fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// A network with trained weights: the smart start after a short training on the ISCX
/// training split (enough to make predictions depend on the input).
fn trained(spec: &NetSpec, train: &Dataset) -> Weights {
    let cfg = nas::train::TrainConfig {
        epochs: 1,
        batch_size: 64,
        max_steps_per_epoch: Some(40),
        ..nas::train::TrainConfig::proxy()
    };
    let val = train.stratified_head(5);
    let init = nas::train::initial_weights(spec, 7);
    nas::train::train(spec, &init, train, &val, &cfg, 7, &mut |_, _| {})
        .unwrap()
        .weights
}

#[test]
fn exported_models_in_onnxruntime_agree_with_nas_eval() {
    let python = match python() {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED exported_models_in_onnxruntime_agree_with_nas_eval: {why}");
            return;
        }
    };
    let splits = load_dir(&common::iscx(), &LoadOptions::default()).unwrap();
    let (train, test) = (&splits.train, &splits.test);
    let spec = NetSpec::smart_start(train.len, train.classes);
    let w = trained(&spec, train);
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("inputs.f32");
    std::fs::write(&inputs, graph_inputs(test, &spec)).unwrap();
    let n = test.n();

    // float32: the host reference's predictions, which `nas eval` reports.
    let lowered = lower_weights(&spec, &w).unwrap();
    let ours: Vec<usize> = (0..n)
        .map(|i| argmax(&reference_logits(&lowered, test.sample(i))))
        .collect();
    let model = nas::onnx::export(&spec, &w, "onnxruntime").unwrap();
    let (version, runs) = run_ort(&python, tmp.path(), &model, &inputs, &spec, n);
    for (level, out) in ["off", "on"].iter().zip(&runs) {
        let differ = (0..n).filter(|&i| argmax(&out[i]) != ours[i]).count();
        println!(
            "onnxruntime {version}, float32 export, optimisations {level}: {differ} of {n} \
             predictions differ from nas"
        );
        assert_eq!(differ, 0, "float32, optimisations {level}");
    }

    // int8: quantized as `nas eval --dtype int8` quantizes (calibrated on the training split).
    let q = ptq(
        &spec,
        &w,
        train,
        DEFAULT_CALIBRATION_SAMPLES,
        CalibrationMethod::MinMax,
    )
    .unwrap();
    let out_params = q.layers.last().unwrap().output;
    let ours: Vec<_> = (0..n).map(|i| reference_int8(&q, test.sample(i))).collect();
    let model = nas::onnx::export_int8(&spec, &q, "onnxruntime").unwrap();
    let (_, runs) = run_ort(&python, tmp.path(), &model, &inputs, &spec, n);
    for (level, out) in ["off", "on"].iter().zip(&runs) {
        let (mut predictions, mut values, mut worst) = (0, 0, 0);
        for (o, theirs) in ours.iter().zip(out) {
            // Their dequantized output back in output steps.
            let steps: Vec<i32> = theirs
                .iter()
                .map(|&v| (v / out_params.scale).round() as i32 + out_params.zero_point)
                .collect();
            for (a, b) in o.q.iter().zip(&steps) {
                let d = (*a as i32 - b).abs();
                worst = worst.max(d);
                values += (d > 0) as usize;
            }
            let best = (0..steps.len()).fold(0, |b, i| if steps[i] > steps[b] { i } else { b });
            predictions += (best != o.predict()) as usize;
        }
        println!(
            "onnxruntime {version}, int8 QDQ export, optimisations {level}: {predictions} of {n} \
             predictions differ from nas eval --dtype int8; {values} of {} output values differ, \
             by at most {worst} step",
            n * spec.classes
        );
        assert!(
            worst <= 1,
            "int8, optimisations {level}: an output {worst} steps away"
        );
    }
}
