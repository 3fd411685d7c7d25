//! The exported ONNX models in onnxruntime (CPU, graph optimisations off and on) on the whole
//! ISCX test split, against `nas eval`'s figures: the float32 export predicts what `nas eval`
//! predicts on every sample; in the int8 QDQ export every layer's int8 output, given
//! onnxruntime's own previous tensor, is within one step of the int8 reference's layer (which
//! the kernels equal bit for bit). End to end the steps add up: how many int8 outputs and
//! predictions differ from `nas eval --dtype int8` is printed, for the README.
//!
//! `NAS_ONNXRUNTIME_RUN=DIR` measures the model a run delivered instead of the briefly trained
//! smart start.
//!
//! Needs a Python with `onnxruntime` and `numpy`: `NAS_ONNXRUNTIME_PYTHON` (which
//! `scripts/test.sh` sets to a venv it installs them into), else `python3` when it has them.
//! Without one the test prints `SKIPPED: …` and passes.

mod common;
use nas::data::{load_dir, Dataset, LoadOptions};
use nas::net::NetSpec;
use nas::quant::reference::{input_int8, run_layer};
use nas::quant::{
    calibrate::DEFAULT_CALIBRATION_SAMPLES, ptq, reference_int8, CalibrationMethod, QuantLowered,
};
use nas::weights::Weights;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a model in onnxruntime on the inputs (raw little-endian, element type DTYPE — `<f4`,
/// or `<i8` for an input embedding's int64 indices — of shape DIMS, comma-separated), once with
/// every graph optimisation off and once with all on; writes each output of each run raw (in
/// its own element type, `OUT.off.K` and `OUT.on.K`).
const RUN_ORT: &str = r#"
import sys
import numpy as np
import onnxruntime as ort

model, inputs, dtype, dims, out = sys.argv[1:6]
x = np.fromfile(inputs, dtype=dtype).reshape([int(d) for d in dims.split(",")])
levels = {
    "off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "on": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
for name, level in levels.items():
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    ys = s.run(None, {s.get_inputs()[0].name: x})
    for k, y in enumerate(ys):
        np.ascontiguousarray(y).tofile("%s.%s.%d" % (out, name, k))
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

/// The test samples as the graphs' input: byte × 1/255, `[N, C, L]` (f32), or with an input
/// embedding the bytes, `[N, L]` (int64).
fn graph_inputs(test: &Dataset, spec: &NetSpec) -> Vec<u8> {
    graph_inputs_of(spec, (0..test.n()).map(|i| test.sample(i)))
}

fn graph_inputs_of<'a>(spec: &NetSpec, samples: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let (c, l) = (spec.input_channels, spec.input_len);
    let mut out = Vec::new();
    for x in samples {
        if spec.input.embedding_dim().is_some() {
            out.extend(x.iter().flat_map(|&b| (b as i64).to_le_bytes()));
            continue;
        }
        for ch in 0..c {
            for t in 0..l {
                let v = x[t * c + ch] as f32 * nas::data::INPUT_SCALE;
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

/// `model` run by onnxruntime on `inputs`: the onnxruntime version, and per optimisation level
/// (off, on) the raw bytes of each of the graph's `outputs` outputs.
fn run_ort(
    python: &Path,
    dir: &Path,
    model: &[u8],
    inputs: &Path,
    spec: &NetSpec,
    n: usize,
    outputs: usize,
) -> (String, [Vec<Vec<u8>>; 2]) {
    let (m, script, out) = (dir.join("m.onnx"), dir.join("run.py"), dir.join("out"));
    std::fs::write(&m, model).unwrap();
    std::fs::write(&script, RUN_ORT).unwrap();
    let (dtype, dims) = match spec.input.embedding_dim() {
        None => (
            "<f4",
            format!("{n},{},{}", spec.input_channels, spec.input_len),
        ),
        Some(_) => ("<i8", format!("{n},{}", spec.input_len)),
    };
    let o = Command::new(python)
        .arg(&script)
        .arg(&m)
        .arg(inputs)
        .args([dtype, &dims])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "onnxruntime failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let read = |level: &str| -> Vec<Vec<u8>> {
        (0..outputs)
            .map(|k| std::fs::read(dir.join(format!("out.{level}.{k}"))).unwrap())
            .collect()
    };
    let version = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (version, [read("off"), read("on")])
}

/// Raw little-endian f32 as rows of `width`.
fn f32_rows(bytes: &[u8], width: usize) -> Vec<Vec<f32>> {
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    v.chunks(width).map(|r| r.to_vec()).collect()
}

/// `[C][L]` → `[L][C]`.
fn channels_last(x: &[i8], channels: usize) -> Vec<i8> {
    let len = x.len() / channels;
    (0..len)
        .flat_map(|t| (0..channels).map(move |c| x[c * len + t]))
        .collect()
}

/// The int8 export with every layer's int8 output tensor as a graph output too (after the
/// logits), and those tensors' names and channels.
fn with_layer_outputs(model: &[u8], q: &QuantLowered) -> (Vec<u8>, Vec<(String, usize)>) {
    use nas::net::plan::Op;
    use onnx_ir::{Message, ModelProto, ValueInfoProto};
    let layers: Vec<(String, usize)> = q
        .plan
        .layers
        .iter()
        .map(|layer| match &layer.op {
            Op::Conv(c) | Op::LutConv(c) if c.pool.is_some() => {
                (format!("{}.pooled", layer.name), c.out_channels)
            }
            Op::Conv(c) | Op::LutConv(c) => (format!("{}.out", layer.name), c.out_channels),
            Op::GlobalAvgPool { channels, .. } => (format!("{}.out", layer.name), *channels),
            Op::Dense { outputs, .. } => (format!("{}.out", layer.name), *outputs),
            Op::Embed { dim, .. } => (format!("{}.out", layer.name), *dim),
        })
        .collect();
    let mut m = ModelProto::parse_from_bytes(model).unwrap();
    let g = m.graph.mut_or_insert_default();
    for (name, _) in &layers {
        let mut v = ValueInfoProto::new();
        v.name = name.clone();
        // int8, shape left to the runtime.
        v.type_.mut_or_insert_default().mut_tensor_type().elem_type = 3;
        g.output.push(v);
    }
    (m.write_to_bytes().unwrap(), layers)
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
            eprintln!("SKIPPED: exported_models_in_onnxruntime_agree_with_nas_eval: {why}");
            return;
        }
    };
    let splits = load_dir(&common::iscx(), &LoadOptions::default()).unwrap();
    let (train, test) = (&splits.train, &splits.test);
    // NAS_ONNXRUNTIME_RUN=DIR measures the model a run (or `nas train` directory) delivered.
    let (spec, w) = match std::env::var_os("NAS_ONNXRUNTIME_RUN") {
        Some(dir) => {
            let m = nas::search::rundir::ModelDir::open(Path::new(&dir)).unwrap();
            println!("the model of {}: {}", m.dir.display(), m.spec.summary());
            (m.spec, m.weights)
        }
        None => {
            let spec = NetSpec::smart_start(train.len, train.classes);
            let w = trained(&spec, train);
            (spec, w)
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("inputs.f32");
    std::fs::write(&inputs, graph_inputs(test, &spec)).unwrap();
    let n = test.n();

    // float32: the predictions `nas eval` reports (the training framework's inference).
    let logits = nas::train::model::infer_logits(&spec, &w, &test.samples, n).unwrap();
    let ours: Vec<usize> = logits.chunks(spec.classes).map(argmax).collect();
    assert_eq!(ours.len(), n);
    let model = nas::onnx::export(&spec, &w, "onnxruntime").unwrap();
    let (version, runs) = run_ort(&python, tmp.path(), &model, &inputs, &spec, n, 1);
    for (level, out) in ["off", "on"].iter().zip(&runs) {
        let logits = f32_rows(&out[0], spec.classes);
        assert_eq!(logits.len(), n);
        let differ = (0..n).filter(|&i| argmax(&logits[i]) != ours[i]).count();
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
    let (model, layers) = with_layer_outputs(
        &nas::onnx::export_int8(&spec, &q, "onnxruntime").unwrap(),
        &q,
    );
    let (_, runs) = run_ort(
        &python,
        tmp.path(),
        &model,
        &inputs,
        &spec,
        n,
        1 + layers.len(),
    );
    for (level, out) in ["off", "on"].iter().zip(&runs) {
        // Layer by layer, each of our layers fed onnxruntime's previous int8 tensor: within
        // one step (a float runtime rounds where the kernels use TFLite's fixed-point
        // multipliers). End to end the steps add up: counted, and the predictions compared.
        let (mut elements, mut apart, mut worst_layer) = (0usize, 0usize, 0i32);
        let (mut predictions, mut outputs_apart, mut worst_end) = (0usize, 0usize, 0i32);
        let tensors: Vec<&[u8]> = out[1..].iter().map(|t| t.as_slice()).collect();
        for i in 0..n {
            let x = test.sample(i);
            let theirs: Vec<Vec<i8>> = tensors
                .iter()
                .zip(&layers)
                .map(|(t, (_, ch))| {
                    let per = t.len() / n;
                    let cf: Vec<i8> = t[i * per..(i + 1) * per].iter().map(|&b| b as i8).collect();
                    channels_last(&cf, *ch)
                })
                .collect();
            let mut input = input_int8(x);
            for ((layer, ql), t) in q.plan.layers.iter().zip(&q.layers).zip(&theirs) {
                let o = run_layer(layer, ql, &input);
                assert_eq!(o.len(), t.len(), "{}", layer.name);
                for (a, b) in o.iter().zip(t) {
                    let d = (*a as i32 - *b as i32).abs();
                    worst_layer = worst_layer.max(d);
                    apart += (d > 0) as usize;
                }
                elements += o.len();
                input = t.clone();
            }
            let r = reference_int8(&q, x);
            let last = theirs.last().unwrap();
            for (a, b) in r.q.iter().zip(last) {
                let d = (*a as i32 - *b as i32).abs();
                worst_end = worst_end.max(d);
                outputs_apart += (d > 0) as usize;
            }
            let best = (0..last.len()).fold(0, |b, k| if last[k] > last[b] { k } else { b });
            predictions += (best != r.predict()) as usize;
        }
        println!(
            "onnxruntime {version}, int8 QDQ export, optimisations {level}: {predictions} of {n} \
             predictions differ from nas eval --dtype int8; end to end {outputs_apart} of {} \
             int8 outputs differ, by at most {worst_end} steps; layer by layer {apart} of \
             {elements} int8 values differ, by at most {worst_layer} step",
            n * spec.classes
        );
        assert!(
            worst_layer <= 1,
            "int8, optimisations {level}: a layer's value {worst_layer} steps away"
        );
    }
}

/// An input-embedding network (random weights, random byte samples: no training, so the test
/// stays fast) exported float and int8 and run in onnxruntime: the float logits equal the host
/// reference within 1e-5 relative; int8 layer by layer, each of our layers fed onnxruntime's
/// previous int8 tensor, the embedded rows exactly and every other value within one step; end
/// to end the int8 outputs and predictions against the int8 reference are counted.
#[test]
fn embedding_exports_in_onnxruntime_agree_with_the_references() {
    use nas::lower::{lower_weights, reference_logits};
    use nas::net::{plan::Op, InputStage};
    use nas::quant::{calibrate, quantize};
    let python = match python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: embedding_exports_in_onnxruntime_agree_with_the_references: {why}");
            return;
        }
    };
    let spec = NetSpec::smart_start(784, 12).with_input(InputStage::embedding(8));
    let w = Weights::random(&spec, 18);
    let mut s = 0x9e37_79b9u32;
    let mut byte = || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s >> 24) as u8
    };
    let calib: Vec<Vec<u8>> = (0..64)
        .map(|_| (0..784).map(|_| byte()).collect())
        .collect();
    let samples: Vec<Vec<u8>> = (0..64)
        .map(|_| (0..784).map(|_| byte()).collect())
        .collect();
    let n = samples.len();
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("inputs.i64");
    std::fs::write(
        &inputs,
        graph_inputs_of(&spec, samples.iter().map(|x| x.as_slice())),
    )
    .unwrap();

    let lowered = lower_weights(&spec, &w).unwrap();
    let model = nas::onnx::export(&spec, &w, "onnxruntime").unwrap();
    let (version, runs) = run_ort(&python, tmp.path(), &model, &inputs, &spec, n, 1);
    for (level, out) in ["off", "on"].iter().zip(&runs) {
        let logits = f32_rows(&out[0], spec.classes);
        let mut worst = 0.0f32;
        for (x, theirs) in samples.iter().zip(&logits) {
            let ours = reference_logits(&lowered, x);
            let scale = 1.0 + ours.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = ours
                .iter()
                .zip(theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            worst = worst.max(d / scale);
            assert_eq!(
                argmax(&ours),
                argmax(theirs),
                "float, optimisations {level}"
            );
        }
        println!(
            "onnxruntime {version}, float32 embedding export, optimisations {level}: logits \
             within {worst:e} (relative) of the host reference"
        );
        assert!(worst <= 1e-5, "float, optimisations {level}: {worst}");
    }

    let ranges = calibrate(
        &lowered,
        calib.iter().map(|s| s.as_slice()),
        nas::quant::CalibrationMethod::MinMax,
    )
    .unwrap();
    let q = quantize(&lowered, &ranges).unwrap();
    let (model, layers) = with_layer_outputs(
        &nas::onnx::export_int8(&spec, &q, "onnxruntime").unwrap(),
        &q,
    );
    let (_, runs) = run_ort(
        &python,
        tmp.path(),
        &model,
        &inputs,
        &spec,
        n,
        1 + layers.len(),
    );
    for (level, out) in ["off", "on"].iter().zip(&runs) {
        let (mut elements, mut apart, mut worst_layer) = (0usize, 0usize, 0i32);
        let (mut predictions, mut outputs_apart, mut worst_end) = (0usize, 0usize, 0i32);
        for (i, x) in samples.iter().enumerate() {
            let theirs: Vec<Vec<i8>> = out[1..]
                .iter()
                .zip(&layers)
                .map(|(t, (_, ch))| {
                    let per = t.len() / n;
                    let cf: Vec<i8> = t[i * per..(i + 1) * per].iter().map(|&b| b as i8).collect();
                    channels_last(&cf, *ch)
                })
                .collect();
            let mut input = input_int8(x);
            for ((layer, ql), t) in q.plan.layers.iter().zip(&q.layers).zip(&theirs) {
                let o = run_layer(layer, ql, &input);
                input = t.clone();
                if let Op::Embed {
                    dim,
                    pad_left,
                    pad_right,
                    ..
                } = layer.op
                {
                    // onnxruntime's embedded rows are unpadded (the first conv pads with real
                    // 0); ours hold the padding as rows of the table's zero point.
                    let pad = vec![ql.output.zero_point as i8; dim];
                    input = [pad.repeat(pad_left), input, pad.repeat(pad_right)].concat();
                    assert_eq!(o, input, "optimisations {level}: the embedded rows");
                }
                assert_eq!(o.len(), input.len(), "{}", layer.name);
                for (a, b) in o.iter().zip(&input) {
                    let d = (*a as i32 - *b as i32).abs();
                    worst_layer = worst_layer.max(d);
                    apart += (d > 0) as usize;
                }
                elements += o.len();
            }
            let r = reference_int8(&q, x);
            let last = theirs.last().unwrap();
            for (a, b) in r.q.iter().zip(last) {
                let d = (*a as i32 - *b as i32).abs();
                worst_end = worst_end.max(d);
                outputs_apart += (d > 0) as usize;
            }
            let best = (0..last.len()).fold(0, |b, k| if last[k] > last[b] { k } else { b });
            predictions += (best != r.predict()) as usize;
        }
        println!(
            "onnxruntime {version}, int8 QDQ embedding export, optimisations {level}: \
             {predictions} of {n} predictions differ from the int8 reference; end to end \
             {outputs_apart} of {} int8 outputs differ, by at most {worst_end} steps; layer by \
             layer {apart} of {elements} int8 values differ, by at most {worst_layer} step",
            n * spec.classes
        );
        assert!(
            worst_layer <= 1,
            "int8, optimisations {level}: a layer's value {worst_layer} steps away"
        );
    }
}
