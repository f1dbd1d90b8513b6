"""1-epoch training on tiny real data, export, reload: predictions equal before and after."""

import json
import subprocess
import sys

import numpy as np
import pytest

from edge import metadata as md
from edge.preprocess import prepare_faces
from fer_testdata import REPO


def run_cli(*args, timeout=600):
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge"] + [str(a) for a in args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc


@pytest.fixture(scope="module")
def valid_majority_count(ferplus):
    """Majority-labelled faces among the 300 Valid rows of small_ferplus_dir."""
    from train.labels import labels_for

    return len(labels_for(ferplus.split("FER2013Valid").votes[:300], "majority")[0])


@pytest.fixture(scope="module")
def tiny_run(small_ferplus_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "tiny"
    # trained with the logit-adjusted loss (a custom Keras loss): evaluate/export must still load it
    proc = run_cli(
        "train",
        "--data",
        small_ferplus_dir,
        "--run-dir",
        run,
        "--arch",
        "vgg13-bn-half",
        "--epochs",
        1,
        "--batch-size",
        32,
        "--verbose",
        2,
        "--seed",
        3,
        "--logit-adjust",
        0.5,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def test_run_directory_holds_everything_to_reproduce(tiny_run, valid_majority_count):
    for name in ("config.json", "fer_edge.json", "history.csv", "best.keras", "last.keras", "metrics.json"):
        assert (tiny_run / name).is_file(), name
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["mode"] == "crossentropy" and config["size"] == 48 and config["seed"] == 3
    assert config["logit_adjust"] == 0.5
    meta = md.read(str(tiny_run / "fer_edge.json"))
    assert meta["labels"][0] == "neutral" and meta["input"]["height"] == 48
    assert meta["model"]["training_mode"] == "crossentropy"
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["valid_faces"] == valid_majority_count
    assert meta["model"]["valid_accuracy"] == pytest.approx(metrics["valid_accuracy"])
    assert len((tiny_run / "history.csv").read_text().strip().splitlines()) == 2  # header + 1 epoch


def test_resume_continues_from_the_last_epoch(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "resumed"
    shutil.copytree(tiny_run, run)
    proc = run_cli("train", "--resume", run, "--epochs", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming" in proc.stdout
    rows = (run / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[2].startswith("1,")


def test_export_reload_gives_the_same_predictions(tiny_run, valid_faces, tmp_path):
    import keras
    import tensorflow as tf

    from train.export import export_savedmodel

    out = export_savedmodel(tiny_run, tmp_path / "saved")
    meta = md.find(out)
    trained = md.read(str(tiny_run / "fer_edge.json"))
    assert meta["model"].pop("export_commit")  # export adds where it was exported from
    assert meta == trained
    x = prepare_faces(valid_faces[0][:200], meta)
    before = keras.saving.load_model(str(tiny_run / "best.keras"), compile=False).predict(x, verbose=0)
    serve = tf.saved_model.load(out).signatures["serving_default"]
    after = serve(face=tf.constant(x))["output_0"].numpy()
    np.testing.assert_allclose(after, before, atol=1e-5)
    assert np.array_equal(after.argmax(1), before.argmax(1))
    np.testing.assert_allclose(after.sum(1), 1.0, atol=1e-5)


def test_export_with_flip_averaging_and_measured_accuracy(tiny_run, small_ferplus_dir, valid_faces, tmp_path):
    import keras
    import tensorflow as tf

    from train.export import export_savedmodel

    out = export_savedmodel(
        tiny_run, tmp_path / "flip", flip_average=True, data=str(small_ferplus_dir), name="tiny_balanced_flipavg"
    )
    meta = md.find(out)
    base = md.read(str(tiny_run / "fer_edge.json"))
    assert meta["model"]["test_time"] == "flip-average"
    assert meta["model"]["name"] == "tiny_balanced_flipavg" != base["model"]["name"]  # --name: the events' model.id
    assert meta["model"]["macs"] == 2 * base["model"]["macs"] + 48**3
    assert 0.0 <= meta["model"]["valid_accuracy"] <= 1.0 and meta["model"]["export_commit"]
    x = prepare_faces(valid_faces[0][:64], meta)
    model = keras.saving.load_model(str(tiny_run / "best.keras"))
    expected = (model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)) / 2
    got = tf.saved_model.load(out).signatures["serving_default"](face=tf.constant(x))["output_0"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_export_refuses_an_existing_directory(tiny_run, tmp_path):
    (tmp_path / "exists").mkdir()
    proc = run_cli("export", "--model", tiny_run, "--out", tmp_path / "exists")
    assert proc.returncode == 2 and "exists" in proc.stderr


def test_evaluate_json_and_confusion_matrix(tiny_run, small_ferplus_dir, tmp_path, valid_majority_count):
    n = valid_majority_count
    proc = run_cli(
        "evaluate",
        "--model",
        tiny_run,
        "--data",
        small_ferplus_dir,
        "--split",
        "FER2013Valid",
        "--json",
        "--out",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["faces"] == n
    assert "evaluate: {}/{} faces (100%)".format(n, n) in proc.stderr  # progress on stderr, JSON alone on stdout
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (8, 8) and cm.sum() == n
    assert report["accuracy"] == pytest.approx(np.trace(cm) / n)
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 5000
    support = [c["support"] for c in report["per_class"].values()]
    assert support == cm.sum(1).tolist()


def test_missing_model_and_unknown_split_are_clear_errors(small_ferplus_dir, tiny_run, tmp_path):
    proc = run_cli("evaluate", "--model", tmp_path / "nope.keras", "--data", small_ferplus_dir)
    assert proc.returncode == 2 and "nope.keras" in proc.stderr and "not found" in proc.stderr
    proc = run_cli("evaluate", "--model", tiny_run, "--data", small_ferplus_dir, "--split", "FER2013Test")
    assert proc.returncode == 2 and "FER2013Test" in proc.stderr


@pytest.mark.parametrize("mode", ["majority", "probability", "multi_target"])
def test_every_label_mode_trains(mode, small_ferplus_dir, tmp_path):
    from train.config import TrainConfig
    from train.trainer import train

    metrics = train(
        TrainConfig(
            data=str(small_ferplus_dir),
            run_dir=str(tmp_path / mode),
            mode=mode,
            arch="vgg13-bn-half",
            epochs=1,
            batch_size=64,
            limit_train=256,
            limit_valid=64,
            verbose=0,
            patience=0,
        ),
        log=lambda *_: None,
    )
    assert metrics["epochs_run"] == 1 and 0.0 <= metrics["valid_accuracy"] <= 1.0
    assert md.read(str(tmp_path / mode / "fer_edge.json"))["model"]["training_mode"] == mode


def test_bad_config_values_are_named(tmp_path):
    from train.config import TrainConfig

    with pytest.raises(ValueError, match="config 'mode'"):
        TrainConfig(mode="soft").validate()
    with pytest.raises(ValueError, match="config 'arch'"):
        TrainConfig(arch="resnet9000").validate()
    (tmp_path / "c.json").write_text('{"epochs": 3, "epoch": 4}')
    with pytest.raises(ValueError, match="unknown config keys epoch"):
        TrainConfig.load(str(tmp_path / "c.json"))


@pytest.mark.slow
@pytest.mark.ferdata
def test_one_epoch_on_the_shared_data_then_evaluate_and_export(ferplus_tar, tmp_path):
    """The documented commands (README quick start, docs/models/) on the full shared data: build the cache,
    1 epoch, evaluate, export."""
    cache = tmp_path / "ferplus.npz"
    assert run_cli("data", "build", "--src", ferplus_tar, "--out", cache).returncode == 0
    run = tmp_path / "run"
    proc = run_cli("train", "--data", cache, "--run-dir", run, "--epochs", 1, "--verbose", 2, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli("evaluate", "--model", run, "--data", cache, "--json")
    report = json.loads(proc.stdout)
    assert report["faces"] == 3191 and report["accuracy"] > 0.25  # 1 warm-up epoch: about the majority-class rate (37%)
    assert run_cli("export", "--model", run, "--out", tmp_path / "saved").returncode == 0
    assert (tmp_path / "saved" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_jax_backend_trains_and_tensorflow_exports(small_ferplus_dir, tmp_path):
    """The GPU-host path of the `train-jax` extra: train with KERAS_BACKEND=jax, export with TensorFlow.
    Runs where JAX is importable (`pip install 'jax[cpu]'` is enough to check it on a CPU)."""
    import importlib.util
    import os

    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX not installed (the train-jax extra, or jax[cpu] to check this path on a CPU)")
    env = dict(os.environ, KERAS_BACKEND="jax")
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fer_edge",
            "train",
            "--data",
            str(small_ferplus_dir),
            "--run-dir",
            str(run),
            "--arch",
            "vgg13-bn-third",
            "--epochs",
            "1",
            "--verbose",
            "2",
        ],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "fer_edge.json").read_text())["model"]["keras_backend"] == "jax"
    env.pop("KERAS_BACKEND")
    proc = run_cli("export", "--model", run, "--out", tmp_path / "sm")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert md.find(str(tmp_path / "sm"))["labels"][0] == "neutral"
