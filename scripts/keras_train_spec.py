"""Train a `nas` network spec in Keras (TensorFlow CPU) with the seed's full routine, for comparison
with what `nas search` / `nas train` deliver for the same architecture.

The model is the spec's, layer for layer, as `../shared/bench/keras_baseline.py` builds its
reference networks: per block Conv1D ('same' or 'valid', stride) → BatchNormalization (where the
spec has it) → ReLU → max/average pooling (window = stride, 'valid') → Dropout; then global
average pooling and a dense layer to the logits. The routine is the seed's full training, the
one `nas train` runs: Adam 1e-3, batch 64, at most 60 epochs, a stratified 11 % of the training
split held out, early stopping on its loss with patience 12 and the best epoch's weights
restored, learning rate x 0.7 after 5 flat epochs. The test split is used once, at the end.

usage: python3 scripts/keras_train_spec.py SPEC.json [--data DIR] [--epochs 60] [--seed 42]
needs: pip install tensorflow-cpu (see ../shared/bench/README.md)
Prints the test accuracy, weighted F1 and macro F1, and one JSON line (`RESULT {...}`).
"""
import argparse
import gzip
import json
import os
import struct
import time

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("spec")
ap.add_argument("--data", default="../shared/data/iscx-vpn2016-12class-sessionl7")
ap.add_argument("--epochs", type=int, default=60)
ap.add_argument("--batch-size", type=int, default=64)
ap.add_argument("--val-fraction", type=float, default=0.11)
ap.add_argument("--seed", type=int, default=42)
args = ap.parse_args()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
from keras import layers  # noqa: E402


def read_idx(path):
    with gzip.open(path, "rb") as f:
        buf = f.read()
    nd = buf[3]
    dims = struct.unpack(">" + "I" * nd, buf[4 : 4 + 4 * nd])
    return np.frombuffer(buf, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def load(prefix, length):
    x = read_idx(f"{args.data}/{prefix}-images-idx3-ubyte.gz").reshape(-1, length, 1)
    y = read_idx(f"{args.data}/{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if len(x) != len(y):
        raise SystemExit(f"{prefix}: {len(x)} images but {len(y)} labels")
    return x.astype(np.float32) / 255.0, y


def build(spec):
    inp = keras.Input((spec["input_len"], spec.get("input_channels", 1)))
    x = inp
    for b in spec["blocks"]:
        x = layers.Conv1D(b["filters"], b["kernel"], strides=b["stride"], padding=b["padding"])(x)
        if b["batch_norm"]:
            x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        pool = b.get("pool")
        if pool:
            cls = layers.MaxPooling1D if pool["kind"] == "max" else layers.AveragePooling1D
            x = cls(pool["size"], strides=pool["size"], padding="valid")(x)
        x = layers.Dropout(b["dropout"])(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inp, layers.Dense(spec["classes"])(x))


def stratified_split(y, fraction, rng):
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        val.extend(idx[: int(round(len(idx) * fraction))])
    val = np.array(sorted(val))
    train = np.setdiff1d(np.arange(len(y)), val)
    return train, val


def scores(pred, y, n):
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y, pred), 1)
    f1 = []
    for c in range(n):
        tp, sup, prd = cm[c, c], cm[c].sum(), cm[:, c].sum()
        pr = tp / prd if prd else 0.0
        rc = tp / sup if sup else 0.0
        f1.append((2 * pr * rc / (pr + rc) if pr + rc else 0.0, sup))
    acc = np.trace(cm) / len(y)
    weighted = sum(f * s for f, s in f1) / len(y)
    present = [f for f, s in f1 if s]
    return acc, weighted, sum(present) / len(present)


spec = json.load(open(args.spec))
keras.utils.set_random_seed(args.seed)
xtr, ytr = load("train", spec["input_len"])
xte, yte = load("t10k", spec["input_len"])
tr, val = stratified_split(ytr, args.val_fraction, np.random.default_rng(args.seed))
model = build(spec)
model.compile(
    optimizer=keras.optimizers.Adam(1e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
start = time.perf_counter()
hist = model.fit(
    xtr[tr],
    ytr[tr],
    validation_data=(xtr[val], ytr[val]),
    batch_size=args.batch_size,
    epochs=args.epochs,
    shuffle=True,
    verbose=2,
    callbacks=[
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=12, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.7, patience=5, min_lr=1e-6),
    ],
)
seconds = time.perf_counter() - start
pred = np.argmax(model.predict(xte, batch_size=256, verbose=0), 1)
acc, wf1, mf1 = scores(pred, yte, spec["classes"])
epochs = len(hist.history["loss"])
best = int(np.argmin(hist.history["val_loss"])) + 1
print(
    f"Keras: {epochs} epochs (best {best}), {seconds:.0f} s; test acc {100 * acc:.2f} %  "
    f"weighted F1 {100 * wf1:.2f} %  macro F1 {100 * mf1:.2f} %"
)
print("RESULT " + json.dumps({"epochs": epochs, "best_epoch": best, "seconds": seconds,
                              "test_accuracy": acc, "test_weighted_f1": wf1, "test_macro_f1": mf1}))
