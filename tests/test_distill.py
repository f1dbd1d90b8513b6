"""Distillation: `fer-edge teacher` on real faces through the shipped models, the trainer's mixed
targets, and every bad teacher input named (file and key)."""

import json

import numpy as np
import pytest

from edge import metadata as md
from test_train_export import run_cli

LIMIT = 256  # Train faces of the tiny runs (the teacher is made with the same --limit)


@pytest.fixture(scope="module")
def teacher_file(small_ferplus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "teacher.npz"
    proc = run_cli(
        "teacher", "--data", small_ferplus_dir, "--models", "accurate,balanced", "--limit", LIMIT, "--out", out
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert summary["faces"] == LIMIT and summary["models"] == ["accurate", "balanced"]
    return out


def _train_faces(small_ferplus_dir, mode="crossentropy", limit=LIMIT):
    from train.dataset import read_source

    faces, dists, _ = read_source(str(small_ferplus_dir)).split("FER2013Train").labelled(mode)
    return faces[:limit], dists[:limit]


def _config(small_ferplus_dir, run_dir, **changes):
    from train.config import TrainConfig

    values = dict(
        data=str(small_ferplus_dir),
        run_dir=str(run_dir),
        arch="vgg13-bn-half",
        epochs=1,
        batch_size=64,
        limit_train=LIMIT,
        limit_valid=64,
        verbose=0,
        patience=0,
    )
    values.update(changes)
    return TrainConfig(**values)


def test_teacher_file_is_the_geometric_mean_of_the_calibrated_shipped_models(teacher_file, small_ferplus_dir):
    from edge.classifier import load_classifier
    from train.teacher import faces_sha256

    faces, _ = _train_faces(small_ferplus_dir)
    with np.load(teacher_file) as f:
        assert str(f["mode"]) == "crossentropy" and int(f["count"]) == LIMIT
        assert str(f["faces_sha256"]) == faces_sha256(faces)
        assert list(f["models"]) == ["accurate", "balanced"]
        assert np.all(f["temperatures"] > 0)  # both shipped models carry a calibration temperature
        probs = f["probs"]
    # the same probabilities by hand: each shipped model's calibrated output, then exp(mean log), renormalised
    logs = [np.log(load_classifier(name, runtime="onnxruntime").predict(faces)) for name in ("accurate", "balanced")]
    expected = np.exp(np.mean(logs, axis=0))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_targets_mix_teacher_and_mode_numerically(teacher_file, small_ferplus_dir):
    from train.trainer import FerPlusSequence

    faces, dists = _train_faces(small_ferplus_dir)
    with np.load(teacher_file) as f:
        teacher = f["probs"]
    seq = FerPlusSequence(faces, dists, "crossentropy", 48, 32, True, 0, {}, teacher, 0.25)
    np.testing.assert_allclose(seq.targets, 0.25 * teacher + 0.75 * dists, atol=1e-6)
    _, y = seq[0]
    np.testing.assert_allclose(y, (0.25 * teacher + 0.75 * dists)[seq.order[:32]], atol=1e-6)
    plain = FerPlusSequence(faces, dists, "crossentropy", 48, 32, True, 0, {})
    np.testing.assert_array_equal(plain.targets, dists)


def test_tiny_distilled_run_records_its_teacher_and_resumes(teacher_file, small_ferplus_dir, tmp_path):
    from train.config import TrainConfig
    from train.trainer import train

    run = tmp_path / "kd"
    config = _config(small_ferplus_dir, run, teacher=str(teacher_file), distill=0.5, logit_adjust=0.5)
    metrics = train(config, log=lambda *_: None)
    assert metrics["epochs_run"] == 1
    distillation = md.read(str(run / "fer_edge.json"))["model"]["distillation"]
    assert distillation["teacher"] == str(teacher_file) and distillation["alpha"] == 0.5
    assert distillation["models"] == ["accurate", "balanced"] and distillation["faces"] == LIMIT
    saved = TrainConfig.in_run(str(run))
    assert saved.teacher == str(teacher_file) and saved.distill == 0.5
    saved.epochs = 2
    assert train(saved, resume=True, log=lambda *_: None)["epochs_run"] == 2


def test_bad_distill_settings_name_the_key(small_ferplus_dir, tmp_path):
    from train.config import TrainConfig

    with pytest.raises(ValueError, match="config 'distill': 1.5 is outside 0..1"):
        TrainConfig(distill=1.5, teacher="t.npz").validate()
    with pytest.raises(ValueError, match="config 'distill'.*multi_target"):
        TrainConfig(distill=0.5, teacher="t.npz", mode="multi_target").validate()
    with pytest.raises(ValueError, match="config 'distill'.*config 'teacher'"):
        _config(small_ferplus_dir, tmp_path, distill=0.5).validate()
    proc = run_cli("train", "--data", small_ferplus_dir, "--run-dir", tmp_path / "r", "--distill", "1.5")
    assert proc.returncode == 2 and "config 'distill'" in proc.stderr


def _tampered(teacher_file, tmp_path, **changes):
    with np.load(teacher_file) as f:
        raw = {k: f[k] for k in f.files}
    raw.update({k: np.array(v) for k, v in changes.items()})
    out = tmp_path / "tampered.npz"
    with open(out, "wb") as f:
        np.savez(f, **raw)
    return out


def test_a_teacher_for_other_faces_is_refused_naming_file_and_key(teacher_file, small_ferplus_dir, tmp_path):
    from train.trainer import train

    bad_hash = _tampered(teacher_file, tmp_path, faces_sha256="0" * 64)
    cases = [
        (dict(teacher=str(bad_hash)), str(bad_hash), "faces_sha256"),
        (dict(teacher=str(teacher_file), limit_train=LIMIT // 2), str(teacher_file), "count"),
        (dict(teacher=str(teacher_file), mode="majority"), str(teacher_file), "mode"),
        (dict(teacher=str(tmp_path / "none.npz")), str(tmp_path / "none.npz"), "teacher"),
    ]
    for changes, path, key in cases:
        config = _config(small_ferplus_dir, tmp_path / "run", distill=0.5, **changes)
        with pytest.raises(ValueError) as err:
            train(config, log=lambda *_: None)
        assert path in str(err.value) and "'{}'".format(key) in str(err.value), str(err.value)
    assert not (tmp_path / "run" / "last.keras").exists()  # refused before any training


class _FixedPredictions:
    """Stands in for the model in ValidMetrics: returns the given one-hot predictions."""

    def __init__(self, pred):
        self.pred = np.eye(8)[pred]

    def predict(self, x, batch_size=None, verbose=0):
        return self.pred


def test_select_rule_ranks_epochs_meeting_the_default_rule_by_accuracy():
    from train.trainer import SELECT_MONITORS, ValidMetrics

    labels = np.repeat(np.arange(8), 4)  # 4 faces per class
    y_val = np.eye(8)[labels]
    every = labels.copy()
    every[[0, 8, 12]] = 1  # one miss in three classes: every class >= 0.75
    blind = labels.copy()
    blind[28:32] = 0  # contempt never named: lowest class 0, so the rule is not met
    logs = {}
    for name, pred in (("every", every), ("blind", blind)):
        cb = ValidMetrics(np.zeros((32, 48, 48, 1), np.float32), y_val)
        cb.set_model(_FixedPredictions(pred))
        entry: dict = {}
        cb.on_epoch_end(0, entry)
        logs[name] = entry
    assert logs["every"]["val_min_recall"] == 0.75 and logs["blind"]["val_min_recall"] == 0.0
    assert logs["every"]["val_rule"] == pytest.approx(29 / 32.0)  # meets it: its accuracy
    assert logs["blind"]["val_rule"] == pytest.approx(logs["blind"]["val_balanced"] - 1.0)
    assert logs["every"]["val_rule"] > logs["blind"]["val_rule"]
    assert SELECT_MONITORS["rule"] == "val_rule"
