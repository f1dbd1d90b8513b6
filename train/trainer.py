"""The FER+ trainer: Keras 3, backend-agnostic (TensorFlow here; JAX or torch on a GPU machine).

A run directory holds everything needed to reproduce and continue a run:

    config.json      the TrainConfig
    fer_edge.json    the model metadata (labels, input, normalisation, mode, Valid accuracy)
    history.csv      one row per epoch (loss, accuracy, val_loss, val_accuracy, lr)
    best.keras       best model on Valid accuracy (majority protocol)
    last.keras       model + optimizer state after the last finished epoch (for --resume)
    metrics.json     Valid evaluation of best.keras at the end
    tensorboard/     TensorBoard logs (TensorFlow backend)
"""

import csv
import datetime
import json
import math
import os
from typing import Any, Callable, Sequence

import keras
import numpy as np

from edge import metadata as md
from edge.labels import NUM_CLASSES
from edge.preprocess import prepare_faces

from . import distribute
from .augment import MAX_SCALE, MAX_SHIFT, augment_batch
from .config import RULE_MACRO_RECALL, RULE_MIN_RECALL, TrainConfig
from .dataset import FerPlusData, read_source
from .labels import EVAL_MODE, class_counts, training_target
from .losses import training_loss
from .models import ARCHITECTURES, NORM_OFFSET, NORM_SCALE, build, count_macs
from .provenance import source_commit
from .teacher import distilled_target, load_teacher


class FerPlusSequence(keras.utils.PyDataset):
    """Training batches: per-epoch shuffle, mode targets resampled, paper augmentation; with a
    teacher [N, 8] and ``distill`` alpha > 0 the targets are alpha * teacher + (1 - alpha) * the mode's."""

    def __init__(
        self,
        faces: np.ndarray,
        dists: np.ndarray,
        mode: str,
        size: int,
        batch_size: int,
        augment: bool,
        seed: int,
        meta: dict[str, Any],
        teacher: np.ndarray | None = None,
        distill: float = 0.0,
        max_scale: float = MAX_SCALE,
        max_shift: float = MAX_SHIFT,
    ):
        super().__init__()
        self.faces, self.dists, self.mode = faces, dists, mode
        self.teacher, self.distill = teacher, distill
        self.max_scale, self.max_shift = max_scale, max_shift
        self.size, self.batch_size, self.augment, self.meta = size, batch_size, augment, meta
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self):
        return int(math.ceil(len(self.faces) / float(self.batch_size)))

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.faces))
        self.targets = training_target(self.dists, self.mode, self.rng)
        if self.teacher is not None:
            self.targets = distilled_target(self.targets, self.teacher, self.distill)

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        if self.augment:
            x = augment_batch(
                self.faces[idx], self.size, self.size, self.rng, max_scale=self.max_scale, max_shift=self.max_shift
            )[..., None]
        else:
            x = prepare_faces(self.faces[idx], self.meta)
        return x, self.targets[idx]


def lr_at(epoch: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 1% of the peak, by epoch."""
    if epoch < config.warmup_epochs:
        return config.lr * (epoch + 1) / float(config.warmup_epochs + 1)
    span = max(1, config.epochs - config.warmup_epochs)
    t = min(1.0, (epoch - config.warmup_epochs) / float(span))
    return config.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t)))


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=config.lr, momentum=0.9, nesterov=True)
    return keras.optimizers.AdamW(learning_rate=config.lr, weight_decay=config.weight_decay)


def compile_model(model: keras.Model, config: TrainConfig, prior: Sequence[float] | None = None) -> keras.Model:
    model.compile(
        optimizer=make_optimizer(config),
        loss=training_loss(config.mode, prior, config.logit_adjust),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model


def init_weights(model: keras.Model, source: str, log: Callable[[str], None] = print) -> keras.Model:
    """Copy weights into ``model`` from a .keras file or a SavedModel written by ``fer-edge export``
    (its variables in the order of the trained network's ``model.variables``; shapes are checked)."""
    if source.endswith(".keras"):
        model.set_weights(keras.saving.load_model(source, compile=False).get_weights())
        log("initialised from {}".format(source))
        return model
    import tensorflow as tf

    loaded = tf.saved_model.load(source)
    values = list(loaded.variables)  # the exported network's model.variables, in order
    count = len(values)
    if count != len(model.variables):
        raise ValueError(
            "{}: {} variables, the {} model has {}: not the same architecture".format(
                source, count, model.name, len(model.variables)
            )
        )
    for value, var in zip(values, model.variables):
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(
                "{}: variable {} has shape {}, the model's {} has {}: not the same architecture".format(
                    source, value.name, tuple(value.shape), var.path, var.shape
                )
            )
        var.assign(value.numpy())
    log("initialised from {} ({} variables)".format(source, count))
    return model


SELECT_MONITORS = {"accuracy": "val_accuracy", "balanced": "val_balanced", "rule": "val_rule"}


class ValidMetrics(keras.callbacks.Callback):
    """Per epoch on Valid: macro recall (mean of per-class recalls) and the 'balanced' score
    (mean of accuracy and macro recall), added to the logs so checkpoints and history see them."""

    def __init__(self, x_val: np.ndarray, y_val: np.ndarray):
        super().__init__()
        self.x_val, self.labels = x_val, np.argmax(y_val, 1)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        pred = np.argmax(self.model.predict(self.x_val, batch_size=256, verbose=0), 1)
        recalls = [float(np.mean(pred[self.labels == c] == c)) for c in range(NUM_CLASSES) if np.any(self.labels == c)]
        logs["val_macro_recall"] = float(np.mean(recalls))
        logs["val_min_recall"] = float(np.min(recalls))
        accuracy = float(np.mean(pred == self.labels))
        logs["val_balanced"] = 0.5 * (accuracy + logs["val_macro_recall"])
        # issue 22's rule for the default: the most accurate among models naming every emotion
        meets = logs["val_macro_recall"] >= RULE_MACRO_RECALL and logs["val_min_recall"] >= RULE_MIN_RECALL
        logs["val_rule"] = accuracy if meets else logs["val_balanced"] - 1.0


def _history_rows(path):
    if not os.path.isfile(path):
        return []
    with open(path, "r", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def build_metadata(
    config: TrainConfig, model: keras.Model, distillation: dict[str, Any] | None = None
) -> dict[str, Any]:
    size = model.input_shape[1]
    meta = md.default_metadata(size, size, "NHWC", NORM_SCALE, NORM_OFFSET)
    meta["model"] = {
        "name": model.name,
        "architecture": config.arch,
        "training_mode": config.mode,
        "macs": count_macs(model),
        "parameters": int(model.count_params()),
        "source_commit": source_commit(),
        "keras_backend": keras.backend.backend(),
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
    }
    if distillation is not None:  # provenance: the teacher file, its models and the weight alpha
        meta["model"]["distillation"] = distillation
    return meta


def valid_arrays(data: FerPlusData, meta: dict[str, Any], limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Valid faces preprocessed by the one preprocessing, with majority one-hot targets."""
    valid = data.split("FER2013Valid")
    faces, dists, _ = valid.labelled(EVAL_MODE)
    if limit:
        faces, dists = faces[:limit], dists[:limit]
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[np.argmax(dists, axis=1)]
    return prepare_faces(faces, meta), onehot


def train(config: TrainConfig, resume: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) training; returns the metrics dict written to metrics.json."""
    config.validate()
    run = config.run_dir
    os.makedirs(run, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    data = read_source(config.data)
    if "FER2013Train" not in data.available_splits() or "FER2013Valid" not in data.available_splits():
        raise ValueError(
            "{}: training needs FER2013Train and FER2013Valid splits, found {}".format(
                config.data, ", ".join(data.available_splits()) or "none"
            )
        )
    size = config.size or ARCHITECTURES[config.arch][1]
    faces, dists, _ = data.split("FER2013Train").labelled(config.mode)
    if config.limit_train:
        faces, dists = faces[: config.limit_train], dists[: config.limit_train]
    teacher, distillation = None, None
    if config.teacher:  # checked before any model is built: a mismatched file fails fast
        teacher, distillation = load_teacher(config.teacher, config.mode, faces)
        distillation["alpha"] = config.distill
    history_path = os.path.join(run, "history.csv")
    last_path = os.path.join(run, "last.keras")
    rows = _history_rows(history_path) if resume else []
    with distribute.scope(log):
        if resume and os.path.isfile(last_path) and rows:
            model = keras.saving.load_model(last_path)
            log("resuming {} from epoch {}".format(run, len(rows)))
        else:
            rows = []
            model = build(config.arch, size)
            if config.init_from:
                init_weights(model, config.init_from, log)
            prior = class_counts(data.split("FER2013Train").labelled(config.mode)[1])
            model = compile_model(model, config, (prior / prior.sum()).tolist())
    config.size = model.input_shape[1]
    config.save(os.path.join(run, "config.json"))
    meta = build_metadata(config, model, distillation)
    md.write(meta, os.path.join(run, md.METADATA_FILENAME))

    x_val, y_val = valid_arrays(data, meta, config.limit_valid)
    log(
        "model {}: {:.1f} M MACs, {:.2f} M parameters, input {}x{}".format(
            model.name, meta["model"]["macs"] / 1e6, meta["model"]["parameters"] / 1e6, size, size
        )
    )
    counts = class_counts(dists)
    log(
        "train faces ({} mode): {} ({})".format(
            config.mode, len(faces), ", ".join("{} {}".format(name, int(n)) for name, n in zip(meta["labels"], counts))
        )
    )
    log("valid faces (majority): {}".format(len(x_val)))
    if distillation is not None:
        log(
            "distillation: alpha {} of teacher {} ({})".format(
                config.distill, config.teacher, ", ".join(distillation["models"])
            )
        )

    seq = FerPlusSequence(
        faces,
        dists,
        config.mode,
        config.size,
        config.batch_size,
        config.augment,
        config.seed + len(rows),
        meta,
        teacher,
        config.distill,
        config.aug_scale,
        config.aug_shift,
    )
    monitor = SELECT_MONITORS[config.select]
    best_so_far = max(float(r.get(monitor) or 0) for r in rows) if rows else None
    callbacks = [
        ValidMetrics(x_val, y_val),
        keras.callbacks.LearningRateScheduler(lambda epoch: lr_at(epoch, config)),
        keras.callbacks.ModelCheckpoint(
            os.path.join(run, "best.keras"),
            monitor=monitor,
            mode="max",
            save_best_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.ModelCheckpoint(last_path),
        keras.callbacks.CSVLogger(history_path, append=bool(rows)),
    ]
    if config.patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=config.patience))
    if keras.backend.backend() == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run, "tensorboard"), write_graph=False))
    if len(rows) < config.epochs:
        model.fit(
            seq,
            validation_data=(x_val, y_val),
            epochs=config.epochs,
            initial_epoch=len(rows),
            callbacks=callbacks,
            verbose=config.verbose,
        )

    best = keras.saving.load_model(os.path.join(run, "best.keras"))
    probs = best.predict(x_val, batch_size=256, verbose=0)
    accuracy = float(np.mean(np.argmax(probs, 1) == np.argmax(y_val, 1)))
    history = _history_rows(history_path)
    metrics = {
        "valid_accuracy": accuracy,
        "valid_faces": int(len(x_val)),
        "epochs_run": len(history),
        "best_epoch": 1 + int(np.argmax([float(r.get(monitor) or 0) for r in history])) if history else 0,
        "selected_by": monitor,
    }
    meta["model"]["valid_accuracy"] = accuracy
    md.write(meta, os.path.join(run, md.METADATA_FILENAME))
    with open(os.path.join(run, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    log("best Valid accuracy (majority): {:.4f} at epoch {}".format(accuracy, metrics["best_epoch"]))
    return metrics
