#!/usr/bin/env python3
"""Regenerate the TFLite import fixtures in tests/fixtures/tflite/ with TensorFlow itself.

Each fixture is a small Keras Conv1D network trained for a few epochs on real ISCX VPN-nonVPN
SessionL7 samples (../shared/data), then converted by `tf.lite.TFLiteConverter` the way a user
deploying to a microcontroller would: full-integer post-training quantization (int8 input and
output, representative data = real training samples as byte / 255), or plain float32. Next to
each NAME.tflite the script writes NAME.json: 32 real test samples (their bytes) and what the
TFLite interpreter computes for them with its reference kernels (`BUILTIN_REF`): the int8
outputs of the last FULLY_CONNECTED (the logits before the softmax, which the kernels return),
and for the float fixture its float logits.

The tests do not need this script, nor Python: the outputs are committed. To regenerate them
(versions the committed files were made with):

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install "tensorflow-cpu==2.15.1" "numpy<2"
    /tmp/tfvenv/bin/python scripts/make_tflite_fixtures.py [--data ../shared/data/...]
"""

import argparse
import gzip
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "tflite")
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "iscx-vpn2016-12class-sessionl7")
SEED = 20261203
SAMPLES = 32
CALIBRATION = 300
TRAIN = 8000


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data[4 + 4 * dims:], dtype=np.uint8).reshape(shape)


def load(data_dir):
    x_train = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
    y_train = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"))
    x_test = read_idx(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz"))
    y_test = read_idx(os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz"))
    flat = lambda x: x.reshape(x.shape[0], -1)
    return flat(x_train), y_train, flat(x_test), y_test


def models(tf, length, classes):
    """name → (model, note)."""
    L = tf.keras.layers

    def inp():
        return tf.keras.Input(shape=(length, 1))

    x = i1 = inp()
    x = L.Conv1D(24, 5, strides=2, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.MaxPooling1D(2)(x)
    x = L.Conv1D(48, 3, padding="valid")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.AveragePooling1D(2)(x)
    x = L.Conv1D(64, 3, strides=2, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dense(classes, activation="softmax")(x)
    m1 = tf.keras.Model(i1, x, name="conv_bn")
    n1 = ("Conv1D(24, k5, s2, same)+BN+ReLU+MaxPooling1D(2), Conv1D(48, k3, valid)+BN+ReLU+"
          "AveragePooling1D(2), Conv1D(64, k3, s2, same, relu), GlobalAveragePooling1D, "
          "Dense(softmax)")

    x = i2 = inp()
    x = L.Conv1D(16, 4, strides=4, padding="valid", activation="relu")(x)
    x = L.AveragePooling1D(3)(x)
    x = L.Conv1D(64, 3, padding="same", activation="relu")(x)
    x = L.MaxPooling1D(2)(x)
    x = L.Conv1D(96, 2, padding="valid", activation="relu")(x)
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dense(classes)(x)
    m2 = tf.keras.Model(i2, x, name="conv_plain")
    n2 = ("Conv1D(16, k4, s4, valid, relu)+AveragePooling1D(3), Conv1D(64, k3, same, relu)+"
          "MaxPooling1D(2), Conv1D(96, k2, valid, relu), GlobalAveragePooling1D, Dense (logits)")
    x = i3 = inp()
    x = L.Conv1D(6, 4, strides=4, padding="valid", activation="relu")(x)
    x = L.Activation("tanh")(x)
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dense(classes)(x)
    m3 = tf.keras.Model(i3, x, name="unsupported_tanh")
    n3 = "Conv1D(6, k4, s4, relu), Activation('tanh') (a TANH operator: not supported), GAP, Dense"
    return {"conv_bn": (m1, n1), "conv_plain": (m2, n2), "unsupported_tanh": (m3, n3)}


def train(tf, model, x, y, classes):
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(
                      from_logits=model.layers[-1].activation.__name__ != "softmax"),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=12, batch_size=64, verbose=0)


def last_fc_output(interp):
    """Tensor index of the last FULLY_CONNECTED's output (the logits before any softmax)."""
    ops = interp._get_ops_details()
    fc = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    return fc[-1]["outputs"][0]


def run(tf, content, x_bytes, quantized):
    interp = tf.lite.Interpreter(
        model_content=content,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    logits_index = last_fc_output(interp)
    outs = []
    for s in x_bytes:
        if quantized:
            scale, zp = inp["quantization"]
            q = np.round(s.astype(np.float32) / np.float32(255.0) / np.float32(scale)) + zp
            v = np.clip(q, -128, 127).astype(np.int8)
        else:
            v = s.astype(np.float32) / np.float32(255.0)
        interp.set_tensor(inp["index"], v.reshape(inp["shape"]))
        interp.invoke()
        outs.append(interp.get_tensor(logits_index).reshape(-1).copy())
    details = interp.get_tensor_details()
    logits = next(d for d in details if d["index"] == logits_index)
    return outs, inp, logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--only", nargs="*", help="fixtures to (re)generate, e.g. unsupported_tanh")
    args = ap.parse_args()

    import tensorflow as tf

    os.makedirs(OUT, exist_ok=True)
    tf.keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    x_train, y_train, x_test, y_test = load(args.data)
    classes = int(max(y_train.max(), y_test.max())) + 1
    length = x_train.shape[1]
    pick = rng.choice(len(x_train), size=min(TRAIN, len(x_train)), replace=False)
    xt = x_train[pick].astype(np.float32)[..., None] / 255.0
    yt = y_train[pick]
    calib = x_train[rng.choice(len(x_train), size=CALIBRATION, replace=False)]
    test_idx = np.sort(rng.choice(len(x_test), size=SAMPLES, replace=False))
    x_samples = x_test[test_idx]

    def representative():
        for s in calib:
            yield [s.astype(np.float32).reshape(1, length, 1) / np.float32(255.0)]

    for name, (model, note) in models(tf, length, classes).items():
        if args.only and name not in args.only:
            continue
        tf.keras.utils.set_random_seed(SEED)
        train(tf, model, xt, yt, classes)
        for quantized in ([True, False] if name == "conv_bn" else [True]):
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            if quantized:
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.representative_dataset = representative
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
            content = conv.convert()
            fixture = name + ("_int8" if quantized else "_f32")
            with open(os.path.join(OUT, fixture + ".tflite"), "wb") as f:
                f.write(content)
            if name.startswith("unsupported"):
                print("wrote", fixture, len(content), "bytes (no outputs: not importable)")
                continue
            outs, inp, logits = run(tf, content, x_samples, quantized)
            doc = {
                "producer": "tensorflow " + tf.__version__ + " TFLiteConverter",
                "note": note + ("; full-integer PTQ on %d real training samples" % CALIBRATION
                                if quantized else "; float32"),
                "source": "%s, test split, samples %s" % (os.path.basename(
                    os.path.normpath(args.data)), test_idx.tolist()),
                "length": int(length),
                "classes": classes,
                "input_quantization": [float(inp["quantization"][0]),
                                       int(inp["quantization"][1])] if quantized else None,
                "logits_quantization": [float(logits["quantization"][0]),
                                        int(logits["quantization"][1])] if quantized else None,
                "labels": [int(v) for v in y_test[test_idx]],
                "samples": [s.tolist() for s in x_samples],
            }
            if quantized:
                doc["int8_logits"] = [[int(v) for v in o] for o in outs]
            else:
                doc["logits"] = [[float(v) for v in o] for o in outs]
            with open(os.path.join(OUT, fixture + ".json"), "w") as f:
                # One line per key and per sample: small, and readable in a diff.
                f.write("{\n")
                items = list(doc.items())
                for k, (key, value) in enumerate(items):
                    end = ",\n" if k + 1 < len(items) else "\n"
                    if isinstance(value, list) and value and isinstance(value[0], list):
                        rows = ",\n  ".join(json.dumps(r, separators=(",", ":")) for r in value)
                        f.write(" %s: [\n  %s\n ]%s" % (json.dumps(key), rows, end))
                    else:
                        f.write(" %s: %s%s" % (json.dumps(key), json.dumps(value), end))
                f.write("}\n")
            print("wrote", fixture, len(content), "bytes")


if __name__ == "__main__":
    main()
