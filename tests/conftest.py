"""Shared fixtures. FER+ data is found through one variable, FER_EDGE_DATA (default ../shared/data)."""

import os
from pathlib import Path

import numpy as np
import pytest

from fer_testdata import REPO, write_ferplus_folder

DATA_ENV = "FER_EDGE_DATA"
TARBALL = "ferplus-trainval.tar.gz"
VOTES_CSV = "fer2013new.csv"


def fer_data_dir():
    return Path(os.environ.get(DATA_ENV, str(REPO.parent / "shared" / "data")))


def _require(name):
    path = fer_data_dir() / name
    if not path.is_file():
        pytest.skip("FER+ data not found: {} is missing (set {} to the folder holding {})".format(
            path, DATA_ENV, name))
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
    return write_ferplus_folder(tmp_path_factory.mktemp("ferplus_small"), ferplus,
                                {"FER2013Train": 600, "FER2013Valid": 300})


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
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_CONFIG_FILE": str(tmp_path / "none"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_GREENGRASSV2"):
        monkeypatch.delenv(key, raising=False)
