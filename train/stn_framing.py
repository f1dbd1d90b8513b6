"""Attention as learned framing (issue 25, item 3): Deep-Emotion's transformer in front of a trained network.

The localization branch of :mod:`train.models` (started at the identity transform) and the
:class:`~train.attention.AffineSampler` are put in front of a frozen backbone (the single network
inside the shipped flip-averaged model, its weights read from the SavedModel); only the transformer
trains, on Train faces cut with the detector's framing noise (:func:`jitter_faces`), so it has
something to correct. ``python -m train.stn_framing`` runs the experiment and writes a JSON of the
numbers before and after (``docs/experiments/2026-12-07-deep-emotion.md``, "The framing experiment").
"""

import argparse
import json
import os
import time
from typing import Any, Sequence

import cv2
import keras
import numpy as np
from keras import layers

from .attention import AffineSampler
from .models import NORM_OFFSET, NORM_SCALE, _localization, build, count_macs

# The detector's framing noise on far faces (docs/experiments/2026-12-07-keypoint-framing.md): crop
# side 0.92-1.14 of the true square (interquartile), centre offset (the larger of x and y) 0.065 /
# 0.10 of the side (median / 75th percentile). A log-normal side and a normal offset per axis give
# about those quantiles.
SIDE_LOG_MEAN = 0.024
SIDE_LOG_STD = 0.159
OFFSET_STD = 0.065


def jitter_faces(faces: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """uint8 faces [N, 48, 48] -> (float32 faces [N, 48, 48, 1] re-cut with framing noise, the noise
    [N, 3]: side ratio, centre offset x and y in units of the side). Outside the face: the border
    pixels repeated (a FER+ face has nothing around it; a detector's crop has the scene)."""
    n, h, w = faces.shape
    side = np.exp(rng.normal(SIDE_LOG_MEAN, SIDE_LOG_STD, n))
    shift = rng.normal(0.0, OFFSET_STD, (n, 2))
    out = np.empty((n, h, w, 1), np.float32)
    for i in range(n):
        s = side[i]
        cx, cy = (w - 1) / 2.0 + shift[i, 0] * w, (h - 1) / 2.0 + shift[i, 1] * h
        # output pixel -> input pixel: scale by s around the moved centre
        m = np.array([[s, 0.0, cx - s * (w - 1) / 2.0], [0.0, s, cy - s * (h - 1) / 2.0]])
        out[i, :, :, 0] = cv2.warpAffine(
            faces[i], m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )
    return out, np.column_stack([side, shift]).astype(np.float32)


def load_backbone(saved_model: str, arch: str = "vgg13-bn-half") -> keras.Model:
    """The single network inside a flip-averaged SavedModel: ``arch`` built fresh, its weights copied
    from the SavedModel's variables in order (the seed generators skipped), shapes checked."""
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model)
    saved = [v for v in loaded.variables if "seed_generator" not in v.name]
    model = build(arch)
    if len(saved) != len(model.weights):
        raise ValueError(
            "{}: {} variables, {} has {} weights".format(saved_model, len(saved), arch, len(model.weights))
        )
    for weight, variable in zip(model.weights, saved):
        if tuple(weight.shape) != tuple(variable.shape):
            raise ValueError(
                "{}: {} is {}, expected {}".format(saved_model, variable.name, variable.shape, weight.shape)
            )
        weight.assign(variable.numpy())
    return model


def with_transformer(backbone: keras.Model) -> keras.Model:
    """``backbone`` (frozen, inference mode) behind Deep-Emotion's localization branch and sampler.

    The sampler works on the normalised face (its zero padding is mid-gray) and the result is
    mapped back to [0, 255] for the backbone, which normalises it itself."""
    backbone.trainable = False
    size = int(backbone.input_shape[1])
    inp = keras.Input(shape=(size, size, 1), name="face")
    x = layers.Rescaling(NORM_SCALE, offset=NORM_OFFSET, name="stn_normalize")(inp)
    sampled = AffineSampler(name="attention")([x, _localization(x)])
    back = layers.Rescaling(1.0 / NORM_SCALE, offset=-NORM_OFFSET / NORM_SCALE, name="stn_denormalize")(sampled)
    out = backbone(back, training=False)
    return keras.Model(inp, out, name="stn_" + backbone.name)


def theta_model(model: keras.Model) -> keras.Model:
    """The 6 numbers of the affine transform the localization branch predicts for each face."""
    return keras.Model(model.input, model.get_layer("theta").output)


def _check_backbone(backbone: keras.Model, saved_model: str, faces: np.ndarray) -> float:
    """Max |difference| of the flip-averaged ``backbone`` from the SavedModel on ``faces``: the copy is right."""
    from .models import with_flip_averaging
    from .predictors import load_predictor

    _, predict = load_predictor(saved_model)
    ours = with_flip_averaging(backbone).predict(faces, verbose=0)
    return float(np.max(np.abs(ours - predict(faces))))


def _accuracy(model: keras.Model, faces: np.ndarray, labels: np.ndarray) -> float:
    probs = model.predict(faces, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def _measure(
    model: keras.Model, valid: np.ndarray, jittered: np.ndarray, labels: np.ndarray, noise: np.ndarray
) -> dict[str, Any]:
    thetas = theta_model(model)
    result: dict[str, Any] = {
        "valid_accuracy": _accuracy(model, valid, labels),
        "jittered_valid_accuracy": _accuracy(model, jittered, labels),
    }
    for name, faces in (("valid", valid), ("jittered", jittered)):
        t = np.asarray(thetas.predict(faces, batch_size=256, verbose=0))
        result["theta_mean_" + name] = [round(float(v), 4) for v in t.mean(axis=0)]
        result["theta_std_" + name] = [round(float(v), 5) for v in t.std(axis=0)]
        if name == "jittered":  # does the predicted transform follow the applied noise? (None: theta constant)
            for key, col, noise_col in (
                ("corr_tx_offset_x", 2, 1),
                ("corr_ty_offset_y", 5, 2),
                ("corr_scale_side", 0, 0),
            ):
                varies = t[:, col].std() > 1e-4
                result[key] = float(np.corrcoef(t[:, col], noise[:, noise_col])[0, 1]) if varies else None
    return result


def run(
    data: str, saved_model: str, out_dir: str, train_faces: int, valid_faces: int, epochs: int, lr: float, seed: int
) -> dict[str, Any]:
    """The experiment: before/after numbers on the same Valid faces, written to ``out_dir``/result.json."""
    from .dataset import read_source

    os.makedirs(out_dir, exist_ok=True)
    source = read_source(data)
    train_x, train_y, _ = source.split("FER2013Train").labelled("crossentropy")
    valid_x, valid_dist, _ = source.split("FER2013Valid").labelled("majority")
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(train_x))[:train_faces] if train_faces else np.arange(len(train_x))
    train_x, train_y = train_x[pick], train_y[pick].astype(np.float32)
    if valid_faces:
        valid_x, valid_dist = valid_x[:valid_faces], valid_dist[:valid_faces]
    labels = np.argmax(valid_dist, axis=1)
    valid = valid_x[..., None].astype(np.float32)
    jittered, noise = jitter_faces(valid_x, np.random.default_rng(seed + 1000))

    backbone = load_backbone(saved_model)
    result_check = _check_backbone(backbone, saved_model, valid[:64])
    model = with_transformer(backbone)
    macs_total, macs_backbone = count_macs(model), count_macs(backbone)
    result: dict[str, Any] = {
        "train_faces": int(len(train_x)),
        "valid_faces": int(len(valid)),
        "epochs": epochs,
        "lr": lr,
        "macs_backbone": macs_backbone,
        "macs_added": macs_total - macs_backbone,
        "trainable_parameters": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
        "backbone_flipavg_vs_savedmodel_max_abs_diff": result_check,
    }
    start = time.time()
    result["before"] = _measure(model, valid, jittered, labels, noise)
    result["measure_s"] = round(time.time() - start, 1)
    print(json.dumps(result), flush=True)

    model.compile(optimizer=keras.optimizers.Adam(lr), loss="categorical_crossentropy")
    epoch_s = []
    for epoch in range(epochs):
        start = time.time()
        x, _ = jitter_faces(train_x, rng)
        flip = rng.random(len(x)) < 0.5
        x[flip] = x[flip, :, ::-1]
        history = model.fit(x, train_y, batch_size=64, epochs=1, verbose=0, shuffle=True)
        epoch_s.append(round(time.time() - start, 1))
        print("epoch {} loss {:.4f} {:.0f} s".format(epoch + 1, history.history["loss"][-1], epoch_s[-1]), flush=True)
    result["epoch_s"] = epoch_s
    model.save_weights(os.path.join(out_dir, "stn.weights.h5"))  # state for later looks, never committed
    result["after"] = _measure(model, valid, jittered, labels, noise)
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result), flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.stn_framing", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.path.expanduser("~/fer-edge-runs/deep-emotion/ferplus.npz"))
    p.add_argument("--saved-model", default="models/ferplus-vgg13bn-48/saved_model")
    p.add_argument("--out", default=os.path.expanduser("~/fer-edge-runs/stn-framing"))
    p.add_argument("--train-faces", type=int, default=4000, help="a random subset of Train (0: all)")
    p.add_argument("--valid-faces", type=int, default=0, help="the first N Valid faces (0: all)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run(args.data, args.saved_model, args.out, args.train_faces, args.valid_faces, args.epochs, args.lr, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
