"""The Jetson bundle: one self-contained ``fer-edge-jetson-<version>.tar.gz`` to copy to a device.

    from fer_edge.bundles.jetson import build_bundle
    path = build_bundle("dist/")                  # the shipped ONNX model, version of edge/
    path = build_bundle("dist/", model_onnx="models/x/onnx/model.onnx", version="0.2.0")

Layout (everything under ``fer-edge-jetson-<version>/``)::

    install.sh  uninstall.sh  README.txt  VERSION  MANIFEST.sha256
    edge/                     the device-agnostic agent (incl. edge/events/schema/*.json)
    jetson/                   this adapter (TensorRT backend, engines and their check, camera check, agent)
    model/model.onnx          the emotion classifier; its fer-edge metadata is embedded in the ONNX
    model/model.check.npz     its engine check set (inputs + ONNX Runtime's outputs on them, fer_edge.bundles.jetson_check_set)
    model/detector.onnx       the face detector (BlazeFace), its metadata embedded likewise
    model/detector.check.npz  the detector's engine check set
    config/agent.json         agent config template (all keys); config/agent.ini.example (with help)
    systemd/fer-edge.service  the service unit

Nothing in the bundle imports TensorFlow, Keras, train/, fer_edge/ or the onnx package at import
time (tests/test_jetson.py checks it, and that every file is Python 3.6 syntax). Runs on the host
(Python 3.10+) and is itself Python 3.6 compatible.
"""

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from edge.config.agent import OPTIONS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jetson_templates")
# jetson/ files that stay on the host
EXECUTABLE = ("install.sh", "uninstall.sh")
INSTALL_PREFIX = "/opt/fer-edge"

# Values of the device config template that differ from edge.config.agent's defaults.
JETSON_CONFIG = {
    "source": "csi://0?width=1280&height=720&framerate=30",
    "model": INSTALL_PREFIX + "/model/model.onnx",
    "detector_model": INSTALL_PREFIX + "/model/detector.onnx",
    "publish": "on-change",
    "data_dir": "/var/lib/fer-edge",  # the unit's StateDirectory: the on-disk event queue lives here
}


class BundleError(ValueError):
    """A bundle that cannot be built (no model, a model without metadata); the message says why."""


def config_template() -> Dict[str, Any]:
    """The device's agent.json: every key of edge.config.agent.OPTIONS, Jetson values where they differ."""
    return dict((o.name, JETSON_CONFIG.get(o.name, o.default)) for o in OPTIONS)


def config_ini_example() -> str:
    """The same settings as INI ([agent] section), each key with its help text and choices."""
    values = config_template()
    lines = [
        "# fer-edge agent settings (INI form of /etc/fer-edge/agent.json; either file works with",
        "# `python3 -m jetson --config FILE`). Precedence: these defaults < file < FER_EDGE_<KEY>",
        "# environment variables < command-line flags. Empty value = the documented default.",
        "",
        "[agent]",
    ]
    for option in OPTIONS:
        lines.append("")
        lines.append("# {}".format(option.help))
        extra = []
        if option.choices:
            extra.append("one of: {}".format(", ".join(str(c) for c in option.choices)))
        extra.append("type {}, built-in default {!r}".format(option.type.__name__, option.default))
        lines.append("# ({})".format("; ".join(extra)))
        value = values[option.name]
        lines.append("{} = {}".format(option.name, value).rstrip())
    return "\n".join(lines) + "\n"


def _edge_version():
    from edge.version import __version__

    return __version__


def _package_files(package, skip=()):
    """(path in the bundle, path on disk) of a package folder, caches and ``skip`` left out."""
    root = os.path.join(REPO, package)
    out = []
    for folder, dirs, files in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        dirs[:] = sorted(
            d for d in dirs if d != "__pycache__" and os.path.normpath(os.path.join(rel_folder, d)) not in skip
        )
        for name in sorted(files):
            rel = os.path.normpath(os.path.join(rel_folder, name))
            if name.endswith((".pyc", ".pyo")) or rel in skip or name.startswith("."):
                continue
            out.append((os.path.join(package, rel), os.path.join(folder, name)))
    return out


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _check_detector(detector_onnx):
    from edge import metadata as md
    from edge.onnx_meta import onnx_model_metadata

    if not os.path.isfile(detector_onnx):
        raise BundleError(
            "{}: face-detector ONNX not found; pass detector_onnx= or run `make detector-models`".format(detector_onnx)
        )
    try:
        meta = md.check_kind(onnx_model_metadata(detector_onnx), md.FACE_DETECTOR, detector_onnx)
    except ValueError as exc:
        raise BundleError("{}: not usable as the bundle's face detector: {}".format(detector_onnx, exc)) from exc
    from jetson.onnx_ops import check_for_tensorrt

    check_for_tensorrt(detector_onnx, BundleError)
    return meta


def _check_model(model_onnx):
    from edge.onnx_meta import onnx_model_metadata

    if not os.path.isfile(model_onnx):
        raise BundleError(
            "{}: ONNX model not found; pass model_onnx= (the output of `fer-edge convert onnx`) or "
            "ship the model first".format(model_onnx)
        )
    from edge import metadata as md

    try:
        meta = md.check_kind(onnx_model_metadata(model_onnx), md.CLASSIFIER, model_onnx)
    except ValueError as exc:
        raise BundleError("{}: not usable for the Jetson bundle: {}".format(model_onnx, exc)) from exc
    if meta["input"]["layout"] != "NCHW":
        raise BundleError(
            "{}: input layout {} (TensorRT engines are built from the NCHW ONNX of `fer-edge convert onnx`)".format(
                model_onnx, meta["input"]["layout"]
            )
        )
    from jetson.onnx_ops import check_for_tensorrt

    check_for_tensorrt(model_onnx, BundleError)  # the device builds its engine with TensorRT 8.2
    return meta


def _check_set_entries(model_onnx, detector_onnx):
    """model/model.check.npz (and model/detector.check.npz): what install.sh and the service check the
    engines against (``fer_edge.bundles.jetson_check_set``); computed here with ONNX Runtime on the shipped ONNX files."""
    from fer_edge.bundles import jetson_check_set as check_set

    folder = tempfile.mkdtemp(prefix="fer-edge-check-")
    try:
        entries = [
            (
                "model/model.check.npz",
                _read(
                    check_set.classifier_check_set(model_onnx, detector_onnx, os.path.join(folder, "model.check.npz"))
                ),
            )
        ]
        if detector_onnx:
            entries.append(
                (
                    "model/detector.check.npz",
                    _read(check_set.detector_check_set(detector_onnx, os.path.join(folder, "detector.check.npz"))),
                )
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return entries


def bundle_entries(
    model_onnx: str, version: str, detector_onnx: Optional[str] = None, include_installer: bool = True
) -> List[Tuple[str, bytes]]:
    """[(path inside the bundle, bytes)] of every file, in order (MANIFEST.sha256 last).

    ``include_installer=False``: without install.sh, uninstall.sh and the systemd unit (a Greengrass
    V2 component runs the agent itself: ``fer-edge bundle greengrass``)."""
    entries = []
    for rel, disk in _package_files("edge", ("models",)) + _package_files("jetson"):
        entries.append((rel, _read(disk)))
    entries.append(("model/model.onnx", _read(model_onnx)))
    entries += _check_set_entries(model_onnx, detector_onnx)
    if detector_onnx:
        entries.append(("model/detector.onnx", _read(detector_onnx)))
    entries.append(("config/agent.json", (json.dumps(config_template(), indent=2) + "\n").encode("utf-8")))
    entries.append(("config/agent.ini.example", config_ini_example().encode("utf-8")))
    if include_installer:
        entries.append(("systemd/fer-edge.service", _read(os.path.join(TEMPLATES, "fer-edge.service"))))
        for name in EXECUTABLE:
            entries.append((name, _read(os.path.join(TEMPLATES, name))))
    readme = _read(os.path.join(TEMPLATES, "README.txt")).decode("utf-8").replace("@VERSION@", version)
    entries.append(("README.txt", readme.encode("utf-8")))
    entries.append(("VERSION", (version + "\n").encode("utf-8")))
    manifest = "".join("{}  {}\n".format(hashlib.sha256(data).hexdigest(), rel) for rel, data in entries)
    entries.append(("MANIFEST.sha256", manifest.encode("utf-8")))
    return entries


def _tarinfo(name, size, mode, mtime, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, mode, mtime, kind
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build_bundle(
    out_dir: Union[str, "os.PathLike[str]"],
    model_onnx: Union[str, "os.PathLike[str]", None] = None,
    version: Optional[str] = None,
    detector_onnx: Union[str, "os.PathLike[str]", None] = None,
    include_installer: bool = True,
) -> str:
    """Write ``fer-edge-jetson-<version>.tar.gz`` into ``out_dir``; returns its path.

    ``model_onnx``: the ONNX to ship (default: the project's shipped model,
    ``edge.classifier.SHIPPED_MODEL``); it must carry fer-edge metadata (NCHW). ``detector_onnx``:
    the face detector (default: the shipped default detector's ONNX). ``version``:
    default ``edge.__version__``; ``include_installer``: see :func:`bundle_entries`. Written to a
    temporary file, then renamed into place.
    """
    if model_onnx is None:
        from edge.classifier import SHIPPED_MODEL

        model_onnx = SHIPPED_MODEL
    model_onnx = str(model_onnx)
    version = str(version or _edge_version())
    if not version or "/" in version or version.strip() != version:
        raise BundleError("bad bundle version {!r}".format(version))
    _check_model(model_onnx)
    if detector_onnx is None:
        from edge.detect.factory import DEFAULT_DETECTOR, shipped_detector_path

        detector_onnx = shipped_detector_path(DEFAULT_DETECTOR)
    detector_onnx = str(detector_onnx)
    _check_detector(detector_onnx)
    out_dir = os.path.abspath(str(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    top = "fer-edge-jetson-{}".format(version)
    path = os.path.join(out_dir, top + ".tar.gz")
    entries = bundle_entries(model_onnx, version, detector_onnx, include_installer)
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())
    fd, tmp = tempfile.mkstemp(prefix="." + top, suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            tar.addfile(_tarinfo(top, 0, 0o755, mtime, tarfile.DIRTYPE))
            seen = set()
            for rel, data in entries:
                parts = rel.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    folder = "/".join(parts[:i])
                    if folder not in seen:
                        seen.add(folder)
                        tar.addfile(_tarinfo(top + "/" + folder, 0, 0o755, mtime, tarfile.DIRTYPE))
                mode = 0o755 if rel in EXECUTABLE else 0o644
                tar.addfile(_tarinfo(top + "/" + rel, len(data), mode, mtime), io.BytesIO(data))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m fer_edge.bundles.jetson --out DIR [--model ONNX] [--version V]`` (the CLI wires the same call)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m fer_edge.bundles.jetson", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for the .tar.gz")
    parser.add_argument("--model", help="ONNX model with fer-edge metadata (default: the shipped model)")
    parser.add_argument("--detector", help="face-detector ONNX (default: the shipped default detector)")
    parser.add_argument("--version", help="bundle version (default: edge.__version__)")
    args = parser.parse_args(argv)
    try:
        print(build_bundle(args.out, args.model, args.version, args.detector))
    except (BundleError, OSError) as exc:
        print("bundle: error: {}".format(exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
