"""The AWS IoT Greengrass V2 component: a recipe and one artifact archive per device kind (host side).

    from fer_edge.bundles.greengrass import build_component
    out = build_component("dist/greengrass")                       # both targets, the shipped models
    out = build_component("dist/greengrass", targets=["deeplens"], model="models/x/openvino/model.xml",
                          agent_config={"broker": "mqtts://<prefix>-ats.iot.eu-west-1.amazonaws.com:8883",
                                        "cert_file": "/greengrass/v2/fer-edge/door-cam.crt", ...})

``fer-edge bundle greengrass --out DIR`` runs it. It writes into ``out_dir``:

* ``fer-edge-greengrass-deeplens-<version>.zip`` (target ``deeplens``: DeepLens hardware on
  Ubuntu, or any x86-64 Linux core, OpenVINO): the ``edge`` package, ``deeplens/__init__.py`` and
  ``deeplens/__main__.py`` (``python3 -m deeplens``, the standalone agent), the emotion model (the
  shipped ONNX, which OpenVINO reads, or ``model`` as ``model/``), both BlazeFace OpenVINO IRs and
  their licences, in the checkout's layout so the agent finds them as it does in a checkout;
* ``fer-edge-greengrass-jetson-<version>.zip`` (target ``jetson``, aarch64): the Jetson bundle of
  ``fer_edge.bundles.jetson.build_bundle`` (called, then repacked from its .tar.gz: Greengrass unpacks ZIP
  archives only), i.e. ``edge``, ``jetson`` and ``model/*.onnx``, run as
  ``python3 -m jetson`` (built without install.sh and the systemd unit: the nucleus runs it);
* each archive also holds ``greengrass/defaults.json``, the agent settings of that device kind
  (the source), read by ``edge.greengrass.component`` on the device;
* ``<ComponentName>-<version>.yaml`` (or ``.json``): the recipe, one manifest per target
  (``fer_edge.bundles.greengrass_recipe``); the agent settings given (``agent_config``) become its default
  configuration's ``Agent`` object, checked with the agent's own rules before anything is written.

Without ``bucket`` the URIs name the bucket ``REPLACE-WITH-BUCKET``; ``fer-edge deploy
greengrass`` writes the real bucket and key into the recipe it sends, whatever the file says.
Archives are reproducible (sorted entries, fixed times); every file is written under a temporary
name and renamed. Nothing here ran on a real Greengrass core (docs/greengrass.md says what ran where).
"""

import argparse
import copy
import json
import os
import shutil
import tarfile
import tempfile
from typing import Any, Callable, Mapping, Sequence

from edge.files import write_atomic

from .greengrass_recipe import (
    DEFAULT_COMPONENT,
    DEFAULT_KEY_PREFIX,
    DEFAULTS_FILE,
    PLACEHOLDER_BUCKET,
    TARGETS,
    BundleError,
    artifact_name,
    artifact_uri,
    check_bucket,
    check_component_name,
    check_component_version,
    dump_recipe,
    make_recipe,
)

DETECTOR_FOLDERS = ("blazeface-back-256", "blazeface-short-128")
# Top-level modules that no file of the DeepLens archive may import when it loads (not on the device).
HOST_MODULES = frozenset(
    [
        "tensorflow",
        "keras",
        "tf2onnx",
        "onnx",
        "train",
        "convert",
        "fer_edge",
        "boto3",
        "botocore",
        "jetson",
        "greengrasssdk",
        "awscam",
        "mo",
    ]
)


# ---------------------------------------------------------------- the archives


def repo_root() -> str:
    import edge

    return os.path.dirname(os.path.dirname(os.path.abspath(edge.__file__)))


def _check_classifier(path):
    """The metadata of an emotion-model artifact (.onnx or OpenVINO .xml); BundleError otherwise."""
    from edge import metadata as md
    from edge.backends import artifact_metadata

    if not os.path.isfile(path):
        raise BundleError("{}: emotion model not found".format(path))
    if not path.endswith((".onnx", ".xml")):
        raise BundleError("{}: the component takes an ONNX (.onnx) or OpenVINO IR (.xml) emotion model".format(path))
    try:
        return md.check_kind(artifact_metadata(path), md.CLASSIFIER, path)
    except (ValueError, OSError) as exc:
        raise BundleError("{}: not usable as the component's emotion model: {}".format(path, exc)) from exc


def deeplens_files(model: str | None = None, root: str | None = None) -> dict[str, str]:
    """{archive name: path} of the DeepLens/x86-64 archive (without its defaults file), checked."""
    root = root or repo_root()
    files = {}
    for package in ("edge",):
        base = os.path.join(root, package)
        for folder, dirs, names in os.walk(base):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            for name in sorted(names):
                if name.endswith((".py", ".json")) and not name.startswith("."):
                    path = os.path.join(folder, name)
                    files[os.path.relpath(path, root).replace(os.sep, "/")] = path
    for name in ("__init__.py", "__main__.py"):
        files["deeplens/" + name] = os.path.join(root, "deeplens", name)
    if model is None:
        from edge.classifier import SHIPPED_MODEL

        _check_classifier(SHIPPED_MODEL)
        files[os.path.relpath(SHIPPED_MODEL, root).replace(os.sep, "/")] = SHIPPED_MODEL
    else:
        model = str(model)
        _check_classifier(model)
        if model.endswith(".xml"):
            from edge import metadata as md

            for src, arc in (
                (model, "model/model.xml"),
                (model[:-4] + ".bin", "model/model.bin"),
                (md.sidecar_path(model), "model/model.xml.fer_edge.json"),
            ):
                if not os.path.isfile(src):
                    raise BundleError(
                        "{}: missing (an OpenVINO IR is the .xml, its .bin and the fer-edge sidecar {})".format(
                            src, os.path.basename(md.sidecar_path(model))
                        )
                    )
                files[arc] = src
        else:
            files["model/model.onnx"] = model
    licence = os.path.join(root, "models", "LICENSE.Apache-2.0")
    if os.path.isfile(licence):
        files["models/LICENSE.Apache-2.0"] = licence
    for folder in DETECTOR_FOLDERS:
        base = os.path.join(root, "models", folder)
        for rel in ("openvino/model.xml", "openvino/model.bin", "openvino/model.xml.fer_edge.json"):
            path = os.path.join(base, rel)
            if not os.path.isfile(path):
                raise BundleError("{}: face-detector IR missing (`make detector-models` regenerates it)".format(path))
            files["models/{}/{}".format(folder, rel)] = path
        for name in sorted(os.listdir(base)):
            if name.startswith("LICENSE"):
                files["models/{}/{}".format(folder, name)] = os.path.join(base, name)
    check_device_imports(files)
    return files


def check_device_imports(files: Mapping[str, str]) -> None:
    """BundleError when a Python file of the archive imports a host-only module when it loads."""
    from fer_edge.bundles.deeplens import imports_of

    problems = []
    for arc, path in sorted(files.items()):
        if not arc.endswith(".py"):
            continue
        name = arc[:-3].replace("/", ".")
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        for imported, module_level in imports_of(path, name):
            if module_level and imported.split(".")[0] in HOST_MODULES:
                problems.append("{} imports {}".format(arc, imported))
    if problems:
        raise BundleError("the device archive would import modules the device lacks: " + "; ".join(problems))


def jetson_files(stage: str, model: str | None = None, version: str | None = None) -> dict[str, str]:
    """{archive name: path} of the Jetson bundle (``fer_edge.bundles.jetson.build_bundle``), unpacked into ``stage``."""
    from fer_edge.bundles.jetson import BundleError as JetsonBundleError
    from fer_edge.bundles.jetson import build_bundle

    try:
        tarball = build_bundle(stage, model_onnx=model, version=version, include_installer=False)
    except (JetsonBundleError, ValueError) as exc:
        raise BundleError("the Jetson bundle cannot be built: {}".format(exc)) from exc
    unpacked = os.path.join(stage, "unpacked")
    files = {}
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if member.isdir():
                continue
            if not member.isfile() or len(parts) < 2 or ".." in parts or member.name.startswith("/"):
                raise BundleError("{}: unexpected entry {!r} in the Jetson bundle".format(tarball, member.name))
            rel = "/".join(parts[1:])
            dest = os.path.join(unpacked, *parts[1:])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            src = tar.extractfile(member)
            if src is None:  # only for what is not a regular file, refused above
                raise BundleError("{}: unexpected entry {!r} in the Jetson bundle".format(tarball, member.name))
            with src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
            files[rel] = dest
    for needed in (
        "edge/greengrass/component.py",
        "edge/greengrass/check.py",
        "jetson/__main__.py",
        "model/model.onnx",
    ):
        if needed not in files:
            raise BundleError("the Jetson bundle lacks {}, which the component runs".format(needed))
    return files


def target_defaults(target: str, model: str | None = None) -> dict[str, str]:
    """The agent settings of ``greengrass/defaults.json`` in a target's archive (paths relative to it)."""
    if target == "deeplens":
        defaults = {}
        if model:
            defaults["model"] = "model/model.xml" if str(model).endswith(".xml") else "model/model.onnx"
        return defaults
    from fer_edge.bundles.jetson import JETSON_CONFIG

    return {"source": JETSON_CONFIG["source"]}


# ---------------------------------------------------------------- all of it


def build_component(
    out_dir: str,
    targets: Sequence[str] = TARGETS,
    component_name: str = DEFAULT_COMPONENT,
    version: str | None = None,
    bucket: str | None = None,
    key_prefix: str = DEFAULT_KEY_PREFIX,
    agent_config: dict[str, Any] | None = None,
    python: str = "python3",
    model: str | None = None,
    recipe_format: str = "yaml",
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Write the archives and the recipe into ``out_dir``; returns ``{"recipe": path, "artifacts":
    {target: path}, "uris": {target: uri}, "component_name", "component_version"}``."""
    from edge.files import sha256_file
    from edge.version import __version__
    from fer_edge.bundles.deeplens import write_zip

    targets = list(dict.fromkeys(targets or TARGETS))
    for target in targets:
        if target not in TARGETS:
            raise BundleError("unknown target {!r}; choose from {}".format(target, ", ".join(TARGETS)))
    check_component_name(component_name)
    version = check_component_version(version or __version__)
    if recipe_format not in ("yaml", "json"):
        raise BundleError("recipe format {!r}: yaml or json".format(recipe_format))
    if bucket is not None:
        check_bucket(bucket)
    if model is not None and str(model).endswith(".xml") and "jetson" in targets:
        raise BundleError(
            "{}: the Jetson builds its TensorRT engine from an ONNX; give an .onnx model or build "
            "the deeplens target alone".format(model)
        )
    uris = dict(
        (t, artifact_uri(bucket or PLACEHOLDER_BUCKET, key_prefix, component_name, version, artifact_name(t, version)))
        for t in targets
    )
    recipe = make_recipe(component_name, version, targets, uris, agent_config, python)  # checks the configuration
    out_dir = os.path.abspath(str(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".greengrass-", dir=out_dir)
    artifacts = {}
    try:
        for target in targets:
            files = (
                deeplens_files(model)
                if target == "deeplens"
                else jetson_files(os.path.join(stage, target), model, version)
            )
            defaults_path = os.path.join(stage, target + "-defaults.json")
            write_atomic(defaults_path, json.dumps(target_defaults(target, model), indent=2, sort_keys=True) + "\n")
            files[DEFAULTS_FILE] = defaults_path
            path = write_zip(files, os.path.join(out_dir, artifact_name(target, version)))
            artifacts[target] = path
            if log is not None:
                log(
                    "{} archive: {} ({} files, {} bytes, sha256 {})".format(
                        target, path, len(files), os.path.getsize(path), sha256_file(path)[:16]
                    )
                )
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    recipe_path = os.path.join(out_dir, "{}-{}.{}".format(component_name, version, recipe_format))
    write_atomic(recipe_path, dump_recipe(recipe, recipe_format))
    if log is not None:
        log(
            "recipe: {} ({}, {} manifest(s); artifact URIs {})".format(
                recipe_path,
                component_name + " " + version,
                len(targets),
                "in s3://" + bucket
                if bucket
                else "name the bucket " + PLACEHOLDER_BUCKET + ": `fer-edge deploy greengrass` writes the real one",
            )
        )
    return {
        "recipe": recipe_path,
        "artifacts": artifacts,
        "uris": uris,
        "component_name": component_name,
        "component_version": version,
        "recipe_data": copy.deepcopy(recipe),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fer-edge bundle greengrass`` (``--out``, ``--model``, ``--version`` are shared)."""
    group = parser.add_argument_group("greengrass")
    group.add_argument(
        "--platform",
        action="append",
        choices=TARGETS,
        dest="platforms",
        help="greengrass: device kinds to build for, repeatable (default: both): deeplens (x86-64, "
        "OpenVINO), jetson (aarch64, TensorRT)",
    )
    group.add_argument(
        "--component-name",
        dest="component_name",
        default=DEFAULT_COMPONENT,
        help="greengrass: component name (default: %(default)s)",
    )
    group.add_argument(
        "--bucket", help="greengrass: S3 bucket for the artifact URIs (deploy greengrass sets them anyway)"
    )
    group.add_argument(
        "--key-prefix",
        dest="key_prefix",
        default=DEFAULT_KEY_PREFIX,
        help="greengrass: S3 key prefix (default: %(default)s)",
    )
    group.add_argument(
        "--agent-config",
        dest="agent_config",
        help="greengrass: JSON file of agent settings for the component's default configuration "
        "(keys of `fer-edge run --help`)",
    )
    group.add_argument(
        "--python", default="python3", help="greengrass: the device's Python interpreter (default: %(default)s)"
    )
    group.add_argument(
        "--format",
        dest="recipe_format",
        choices=("yaml", "json"),
        default="yaml",
        help="greengrass: recipe format (default: %(default)s)",
    )


def run_command(args: argparse.Namespace) -> int:
    """``fer-edge bundle greengrass``."""
    agent = None
    if args.agent_config:
        try:
            with open(args.agent_config, "r", encoding="utf-8") as handle:
                agent = json.load(handle)
        except ValueError as exc:
            raise BundleError("{}: not valid JSON ({})".format(args.agent_config, exc)) from exc
        if not isinstance(agent, dict):
            raise BundleError("{}: expected a JSON object of agent settings".format(args.agent_config))
    result = build_component(
        args.out,
        targets=args.platforms or TARGETS,
        component_name=args.component_name,
        version=args.version,
        bucket=args.bucket,
        key_prefix=args.key_prefix,
        agent_config=agent,
        python=args.python,
        model=args.model,
        recipe_format=args.recipe_format,
    )
    print(
        "wrote the Greengrass component {} {}: recipe {}, archives {} (deploy: fer-edge deploy greengrass; "
        "docs/greengrass.md)".format(
            result["component_name"],
            result["component_version"],
            result["recipe"],
            ", ".join(result["artifacts"][t] for t in sorted(result["artifacts"])),
        )
    )
    return 0
