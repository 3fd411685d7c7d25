#!/usr/bin/env python3
"""Regenerate the ONNX import fixtures in tests/fixtures/onnx/ with the real exporters.

Each fixture is a small 1D-CNN built and exported by the framework a user would use:
PyTorch (`torch.onnx.export`, channels-first input [N, C, L]) and Keras through tf2onnx
(channels-last input [N, L, C]). Next to each NAME.onnx the script writes NAME.json with a few
byte samples and the logits the framework itself computes for them, so the Rust tests compare
the imported network against the exporting framework, not only against another ONNX runtime.

The tests do not need this script, nor Python: the outputs are committed. To regenerate them
(versions the committed files were made with):

    python3 -m venv /tmp/onnxfx
    /tmp/onnxfx/bin/pip install "tensorflow-cpu==2.15.1" "tf2onnx==1.16.1" "onnx==1.16.2" \
        "numpy<2" "protobuf==3.20.3" "torch==2.4.1"
    /tmp/onnxfx/bin/python scripts/make_onnx_fixtures.py            # every fixture
    /tmp/onnxfx/bin/python scripts/make_onnx_fixtures.py --only torch   # one framework's
    /tmp/onnxfx/bin/python scripts/make_onnx_fixtures.py --only torch_embedding keras_embedding

`--only` takes frameworks (all of their fixtures) or the names of the fixtures that have their
own group (`torch_embedding`, `keras_embedding`); each group draws from its own seeded
generators, so regenerating one group leaves the others' files as they are.

Inputs are bytes; a model's input is `byte / 255` unless the model rescales inside the graph
(the `keras_rescaling` fixture takes raw byte values and multiplies by 1/255 itself) or looks
each byte up in an input embedding (`torch_embedding`: int64 indices [N, L]; `keras_embedding`:
the byte values as float32 [N, L], which Keras casts to integers inside the graph).
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "onnx")
SAMPLES = 4
SEED = 20261130


def samples(rng, length, channels):
    """Byte samples [n][length][channels] (the layout `nas` feeds its kernels)."""
    return rng.integers(0, 256, size=(SAMPLES, length, channels), dtype=np.uint8)


def write_expected(name, producer, layout, input_scale_in_graph, x_bytes, logits, note):
    doc = {
        "producer": producer,
        "layout": layout,
        "note": note,
        # Bytes per sample as [length][channels], flattened; the graph's input is byte/255
        # unless input_scale_in_graph.
        "input_scale_in_graph": input_scale_in_graph,
        "length": int(x_bytes.shape[1]),
        "channels": int(x_bytes.shape[2]),
        "samples": [s.reshape(-1).tolist() for s in x_bytes],
        "logits": [[float(v) for v in row] for row in logits],
    }
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


# ---------------------------------------------------------------- PyTorch (channels-first)


def make_torch():
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)

    def randomise_bn(model):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d) or isinstance(m, nn.BatchNorm2d):
                with torch.no_grad():
                    m.running_mean.uniform_(-0.3, 0.3)
                    m.running_var.uniform_(0.5, 1.5)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)

    def export(name, model, x_bytes, channels_first_input, note, **kw):
        model.eval()
        x = torch.tensor(x_bytes, dtype=torch.float32) / 255.0  # [n, L, C]
        if channels_first_input:
            x = x.permute(0, 2, 1)  # [n, C, L]
        if kw.pop("unit_height", False):
            x = x.unsqueeze(2)  # [n, C, 1, L]
        with torch.no_grad():
            logits = model(x).numpy()
        torch.onnx.export(
            model,
            x[:1],
            os.path.join(OUT, name + ".onnx"),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
            dynamo=False,
            **kw,
        )
        write_expected(name, "pytorch " + torch.__version__, "channels_first", False, x_bytes,
                       logits, note)
        print("wrote", name)

    # 1. The usual PyTorch 1D-CNN: Conv1d/BN/ReLU/MaxPool, Conv1d/ReLU/AvgPool, adaptive average
    #    pooling, Linear. Exported in eval mode, so torch folds each BN into its conv. (No
    #    padding on the strided conv: PyTorch's symmetric padding=k//2 with stride 2 is not
    #    Keras 'same' padding, which the kernels compute; the importer refuses it, naming both.)
    m = nn.Sequential(
        nn.Conv1d(1, 8, 5, stride=2, padding=0), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(8, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU(), nn.AvgPool1d(2),
        nn.Dropout(0.3),
        nn.Conv1d(16, 12, 3, padding=0), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(12, 5),
    )
    randomise_bn(m)
    export("torch_conv1d", m, samples(rng, 64, 1), True,
           "Conv1d (stride 2, no padding)+BN+ReLU+MaxPool1d, Conv1d (padding 1)+BN+ReLU+AvgPool1d, Dropout, Conv1d+ReLU, "
           "AdaptiveAvgPool1d, Flatten, Linear; eval export (BN folded into the convs)",
           opset_version=13)

    # 2. BatchNormalization kept as nodes (TrainingMode.PRESERVE on an eval model), three input
    #    channels, a mean over the length axis as the pooling, softmax at the end.
    class MeanHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv1d(3, 6, 4, stride=2, padding=1), nn.ReLU(),
                nn.Conv1d(6, 10, 3, padding=1, bias=False), nn.BatchNorm1d(10), nn.ReLU(),
                nn.MaxPool1d(3),
            )
            self.fc = nn.Linear(10, 3)

        def forward(self, x):
            return torch.softmax(self.fc(self.features(x).mean(dim=2)), dim=1)

    class Logits(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.fc(self.inner.features(x).mean(dim=2))

    m = MeanHead()
    randomise_bn(m)
    m.eval()
    x_bytes = samples(rng, 48, 3)
    x = (torch.tensor(x_bytes, dtype=torch.float32) / 255.0).permute(0, 2, 1)
    with torch.no_grad():
        logits = Logits(m)(x).numpy()
    torch.onnx.export(m, x[:1], os.path.join(OUT, "torch_bn_mean_softmax.onnx"),
                      input_names=["input"], output_names=["probabilities"],
                      dynamic_axes={"input": {0: "N"}, "probabilities": {0: "N"}},
                      training=torch.onnx.TrainingMode.PRESERVE, opset_version=17, dynamo=False)
    write_expected("torch_bn_mean_softmax", "pytorch " + torch.__version__, "channels_first",
                   False, x_bytes, logits,
                   "3 channels; Conv1d(bias=False)+BatchNorm1d kept as nodes (PRESERVE); "
                   "mean over the length (ReduceMean); Linear; softmax (logits are pre-softmax)")
    print("wrote torch_bn_mean_softmax")

    # 3. Conv2d with a unit height over [N, C, 1, L], as 1-D models written with 2-D layers are.
    m = nn.Sequential(
        nn.Conv2d(1, 6, (1, 5), stride=(1, 3), padding=(0, 0)), nn.ReLU(),
        nn.MaxPool2d((1, 2)),
        nn.Conv2d(6, 8, (1, 3), padding=(0, 1)), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )
    randomise_bn(m)
    export("torch_conv2d_unit_height", m, samples(rng, 80, 1), True,
           "Conv2d (1, k) over [N, 1, 1, L], MaxPool2d (1, 2), Conv2d+BN2d+ReLU, "
           "AdaptiveAvgPool2d, Flatten, Linear", unit_height=True, opset_version=13)


def make_torch_embedding():
    """6. nn.Embedding(256, D) on int64 byte indices [N, L] → permute to [N, D, L] → Conv1d
    blocks, the input embedding as PyTorch writes it (Gather, Transpose)."""
    import torch
    from torch import nn

    torch.manual_seed(SEED + 6)
    rng = np.random.default_rng(SEED + 6)

    class EmbeddingNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(256, 6)
            self.features = nn.Sequential(
                nn.Conv1d(6, 8, 5, stride=2, padding=0), nn.BatchNorm1d(8), nn.ReLU(),
                nn.MaxPool1d(2),
                nn.Conv1d(8, 12, 3, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(12, 4),
            )

        def forward(self, x):
            return self.features(self.embedding(x).permute(0, 2, 1))

    m = EmbeddingNet()
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm1d):
            with torch.no_grad():
                bn.running_mean.uniform_(-0.3, 0.3)
                bn.running_var.uniform_(0.5, 1.5)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)
    m.eval()
    x_bytes = samples(rng, 60, 1)
    x = torch.tensor(x_bytes[:, :, 0].astype(np.int64))  # [n, L] byte indices
    with torch.no_grad():
        logits = m(x).numpy()
    torch.onnx.export(m, x[:1], os.path.join(OUT, "torch_embedding.onnx"),
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                      opset_version=13, dynamo=False)
    write_expected("torch_embedding", "pytorch " + torch.__version__, "indices", False, x_bytes,
                   logits,
                   "nn.Embedding(256, 6) on int64 bytes [N, L], permute to [N, 6, L], Conv1d "
                   "(stride 2, no padding)+BN+ReLU+MaxPool1d, Conv1d (padding 1)+ReLU, "
                   "AdaptiveAvgPool1d, Flatten, Linear; eval export (BN folded)")
    print("wrote torch_embedding")


# ---------------------------------------------------------------- Keras + tf2onnx (channels-last)


def make_keras():
    import tensorflow as tf
    import tf2onnx
    from tensorflow import keras
    from tensorflow.keras import layers

    tf.random.set_seed(SEED)
    rng = np.random.default_rng(SEED + 1)

    def randomise_bn(model):
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization):
                gamma, beta, mean, var = layer.get_weights()
                n = gamma.shape[0]
                layer.set_weights([
                    rng.uniform(0.5, 1.5, n).astype(np.float32),
                    rng.uniform(-0.2, 0.2, n).astype(np.float32),
                    rng.uniform(-0.3, 0.3, n).astype(np.float32),
                    rng.uniform(0.5, 1.5, n).astype(np.float32),
                ])

    def export(name, model, logits_model, x_bytes, scale_in_graph, note):
        x = x_bytes.astype(np.float32)
        if not scale_in_graph:
            x = x / 255.0
        logits = logits_model.predict(x, verbose=0)
        spec = (tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="input"),)
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=13,
                                   output_path=os.path.join(OUT, name + ".onnx"))
        write_expected(name, "keras %s + tf2onnx %s" % (tf.__version__, tf2onnx.__version__),
                       "channels_last", scale_in_graph, x_bytes, logits, note)
        print("wrote", name)

    # 4. The seed's kind of network, as Keras writes it: 'same' and 'valid' Conv1D, BN, ReLU,
    #    max and average pooling, dropout, global average pooling, dense + softmax.
    inp = keras.Input((64, 1))
    x = layers.Conv1D(8, 5, strides=2, padding="same")(inp)
    x = layers.ReLU()(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Conv1D(12, 4, strides=1, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.Conv1D(16, 3, strides=1, padding="valid")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.AveragePooling1D(3)(x)
    x = layers.Dropout(0.3)(x)
    x = layers.GlobalAveragePooling1D()(x)
    logits = layers.Dense(6)(x)
    out = layers.Softmax()(logits)
    model = keras.Model(inp, out)
    randomise_bn(model)
    export("keras_conv1d", model, keras.Model(inp, logits), samples(rng, 64, 1), False,
           "Conv1D same s2 + ReLU, Dropout, Conv1D same + BN + ReLU + MaxPooling1D, "
           "Conv1D valid + BN + relu + AveragePooling1D, Dropout, GlobalAveragePooling1D, "
           "Dense, Softmax")

    # 5. Raw bytes in, the scaling inside the graph (Rescaling), two channels, a conv without
    #    bias before its BN, relu as the conv's activation.
    inp = keras.Input((40, 2))
    x = layers.Rescaling(1.0 / 255)(inp)
    x = layers.Conv1D(6, 3, strides=1, padding="same", activation="relu")(x)
    x = layers.Conv1D(8, 5, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.AveragePooling1D(2)(x)
    x = layers.GlobalAveragePooling1D()(x)
    logits = layers.Dense(3)(x)
    model = keras.Model(inp, layers.Activation("softmax")(logits))
    randomise_bn(model)
    export("keras_rescaling", model, keras.Model(inp, logits), samples(rng, 40, 2), True,
           "Rescaling(1/255) on raw bytes, 2 channels, Conv1D relu, Conv1D(use_bias=False) + BN "
           "+ ReLU + AveragePooling1D, GlobalAveragePooling1D, Dense, softmax activation")


def make_keras_embedding():
    """7. Keras Embedding(256, D) → Conv1D blocks, through tf2onnx: the input is the byte values
    as float32 [N, L] (Keras's default), which the graph casts to integers before the Gather."""
    import tensorflow as tf
    import tf2onnx
    from tensorflow import keras
    from tensorflow.keras import layers

    tf.random.set_seed(SEED + 7)
    rng = np.random.default_rng(SEED + 7)
    inp = keras.Input((48,))
    emb = layers.Embedding(256, 5)
    x = emb(inp)
    x = layers.Conv1D(8, 5, strides=2, padding="same")(x)
    x = layers.ReLU()(x)
    x = layers.Conv1D(10, 3, strides=1, padding="valid")(x)
    bn = layers.BatchNormalization()
    x = bn(x)
    x = layers.ReLU()(x)
    x = layers.AveragePooling1D(2)(x)
    x = layers.GlobalAveragePooling1D()(x)
    logits = layers.Dense(3)(x)
    model = keras.Model(inp, layers.Softmax()(logits))
    # About the spread a trained table reaches (Keras initialises it within ±0.05).
    emb.set_weights([rng.uniform(-1.0, 1.0, (256, 5)).astype(np.float32)])
    bn.set_weights([
        rng.uniform(0.5, 1.5, 10).astype(np.float32),
        rng.uniform(-0.2, 0.2, 10).astype(np.float32),
        rng.uniform(-0.3, 0.3, 10).astype(np.float32),
        rng.uniform(0.5, 1.5, 10).astype(np.float32),
    ])
    x_bytes = samples(rng, 48, 1)
    logits = keras.Model(inp, logits).predict(x_bytes[:, :, 0].astype(np.float32), verbose=0)
    spec = (tf.TensorSpec((None, 48), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=13,
                               output_path=os.path.join(OUT, "keras_embedding.onnx"))
    write_expected("keras_embedding", "keras %s + tf2onnx %s" % (tf.__version__,
                   tf2onnx.__version__), "indices", False, x_bytes, logits,
                   "Embedding(256, 5) on the byte values as float32 [N, L] (cast to integers in "
                   "the graph), Conv1D same s2 + ReLU, Conv1D valid + BN + ReLU + "
                   "AveragePooling1D, GlobalAveragePooling1D, Dense, Softmax")
    print("wrote keras_embedding")


GROUPS = {
    "torch": [make_torch, make_torch_embedding],
    "keras": [make_keras, make_keras_embedding],
    "torch_embedding": [make_torch_embedding],
    "keras_embedding": [make_keras_embedding],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=sorted(GROUPS),
                    help="frameworks or fixture groups to regenerate (default: all)")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    todo = []
    for name in args.only or ["torch", "keras"]:
        todo += [f for f in GROUPS[name] if f not in todo]
    for make in todo:
        make()
    return 0


if __name__ == "__main__":
    sys.exit(main())
