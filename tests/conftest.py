"""Shared fixtures: the FER+ data, AWS stand-ins, test certificates (``pki``), the numbers a test
measures (``report``) and the DeepLens Lambda's stand-ins. FER+ data is found through one variable, FER_EDGE_DATA (default
../shared/data). Plain helper functions and classes are in helpers.py."""

import importlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_testdata import REPO, synthetic_faces, write_ferplus_folder
from helpers import DEEPLENS_THING, DOUBLES, CoreIpc, make_pki

DATA_ENV = "FER_EDGE_DATA"
TARBALL = "ferplus-trainval.tar.gz"
VOTES_CSV = "fer2013new.csv"


def fer_data_dir():
    return Path(os.environ.get(DATA_ENV, str(REPO.parent / "shared" / "data")))


def _require(name):
    path = fer_data_dir() / name
    if not path.is_file():
        pytest.skip("FER+ data not found: {} is missing (set {} to the folder holding {})".format(path, DATA_ENV, name))
    return path


@pytest.fixture(scope="session")
def ferplus_tar():
    """Path of ferplus-trainval.tar.gz (skips with the reason when absent)."""
    return _require(TARBALL)


@pytest.fixture(scope="session")
def ferplus_votes_csv():
    """Path of fer2013new.csv (skips with the reason when absent)."""
    return _require(VOTES_CSV)


@pytest.fixture(scope="session")
def ferplus(ferplus_tar):
    """The whole FER+ train/valid data, read once per session from the tarball."""
    from train.dataset import read_ferplus_tar

    return read_ferplus_tar(ferplus_tar)


@pytest.fixture(scope="session")
def small_ferplus_dir(ferplus, tmp_path_factory):
    """A small FERPlus folder (600 Train + 300 Valid faces) sliced from the real data."""
    return write_ferplus_folder(
        tmp_path_factory.mktemp("ferplus_small"), ferplus, {"FER2013Train": 600, "FER2013Valid": 300}
    )


@pytest.fixture(scope="session")
def valid_faces(ferplus):
    """Real Valid faces under the majority protocol: (uint8 faces [K,48,48], label index [K])."""
    faces, dists, _ = ferplus.split("FER2013Valid").labelled("majority")
    return faces, np.argmax(dists, axis=1)


# ---------------------------------------------------------------- AWS stand-ins (moto's server, awscli's environment)


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto's server on a free local port (S3, IoT, Lambda, ... as awscli and boto3 call them)."""
    from moto.server import ThreadedMotoServer

    from mqtt_broker import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield "http://127.0.0.1:{}".format(port)
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Test credentials and a region for awscli/boto3; nothing read from the user's AWS files or endpoints."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_GREENGRASSV2"):
        monkeypatch.delenv(key, raising=False)


# ---------------------------------------------------------------- certificates


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Test certificates (:func:`helpers.make_pki`): {name: path of <name>.crt}, the key beside it as
    <name>.key; skips when the openssl command is not installed."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed")
    return make_pki(tmp_path_factory.mktemp("pki"))


# ---------------------------------------------------------------- measurements


@pytest.fixture
def report(request):
    """A dict for the numbers a test measures (``report["outage"] = {...}``), printed when the test ends,
    passed or not (``pytest -s``): ``REPORT <test> {...}``. Each measurement must be a non-empty dict."""
    values = {}
    yield values
    print("\nREPORT {} {}".format(request.node.name, json.dumps(values, sort_keys=True)))
    for name, value in values.items():
        assert isinstance(value, dict) and value, (name, value)


# ---------------------------------------------------------------- the DeepLens Lambda on test doubles

DOUBLE_MODULES = ("awscam", "mo", "greengrass_common", "greengrass_ipc_python_sdk", "greengrasssdk")


def _purge(prefixes):
    """Forget the modules under ``prefixes``; returns them, for :func:`_restore`."""
    gone = {}
    for name in list(sys.modules):
        if name.split(".")[0] in prefixes:
            gone[name] = sys.modules.pop(name)
    return gone


def _restore(prefixes, saved):
    """Forget what was imported under ``prefixes`` meanwhile and put the earlier modules back, so code
    imported before (e.g. fer_edge.bundles.greengrass_deploy holding fer_edge.bundles.deeplens_deploy.DeployError) keeps seeing
    the same classes as code imported after."""
    _purge(prefixes)
    sys.modules.update(saved)


@pytest.fixture(scope="module")
def deeplens_doubles():
    """tests/doubles first on sys.path for the module (and the modules it shadows forgotten, then
    restored): the ``awscam`` and ``mo`` doubles."""
    prefixes = DOUBLE_MODULES + ("deeplens",)
    saved = _purge(prefixes)
    sys.path.insert(0, DOUBLES)
    try:
        yield importlib.import_module("awscam"), importlib.import_module("mo")
    finally:
        sys.path.remove(DOUBLES)
        _restore(prefixes, saved)


@pytest.fixture
def greengrass_core(deeplens_doubles, monkeypatch):
    """A recording :class:`helpers.CoreIpc` and the environment a Greengrass v1 core gives its Lambda
    (thing ``helpers.DEEPLENS_THING``); the Greengrass modules are imported afresh with it."""
    core = CoreIpc()
    env = {
        "AWS_IOT_THING_NAME": DEEPLENS_THING,
        "GG_DAEMON_PORT": str(core.port),
        "MY_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:deeplens-fer-edge:1",
        "ROUTER_FUNCTION_ARN": "arn:aws:lambda:::function:GGRouter",
        "SHADOW_FUNCTION_ARN": "arn:aws:lambda:::function:GGShadowService",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "test-token",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _purge(("greengrass_common", "greengrass_ipc_python_sdk", "greengrasssdk"))  # env is read at import
    try:
        yield core
    finally:
        core.close()
        _purge(("greengrass_common", "greengrass_ipc_python_sdk", "greengrasssdk"))


@pytest.fixture(scope="module")
def deeplens_faces():
    """24 synthetic faces: the DeepLens conversions' calibration set and the parity checks' inputs."""
    return synthetic_faces(24, seed=5)


@pytest.fixture(scope="module")
def tiny_savedmodel(tmp_path_factory):
    """A tiny untrained model with the real models' input (face [N,48,48,1], Rescaling inside)."""
    import keras
    from keras import layers

    from edge import metadata as md
    from train.export import export_savedmodel
    from train.models import NORM_OFFSET, NORM_SCALE

    keras.utils.set_random_seed(11)
    inp = keras.Input((48, 48, 1), name="face")
    x = layers.Rescaling(NORM_SCALE, offset=NORM_OFFSET, name="normalize")(inp)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(4)(x)
    x = layers.Flatten()(x)
    model = keras.Model(inp, layers.Dense(8, activation="softmax", name="probabilities")(x), name="tiny-deeplens")
    root = tmp_path_factory.mktemp("tiny")
    path = str(root / "tiny.keras")
    model.save(path)
    meta = md.default_metadata(48, 48)
    meta["model"] = {"name": "tiny-deeplens"}
    md.write(meta, md.sidecar_path(path))
    return export_savedmodel(path, str(root / "saved_model"))


@pytest.fixture(scope="module")
def deeplens_bundle(tiny_savedmodel, deeplens_faces, tmp_path_factory):
    """fer_edge.bundles.deeplens.build_bundle from the tiny SavedModel (runs `convert deeplens`)."""
    from fer_edge.bundles.deeplens import build_bundle

    logs = []
    out = str(tmp_path_factory.mktemp("bundle") / "deeplens")
    result = build_bundle(out, savedmodel=tiny_savedmodel, faces=deeplens_faces, log=logs.append)
    result["logs"] = logs
    return result
