"""The DeepLens deliverables: the Lambda function zip and the model artifact (host side).

``build_bundle(out_dir, model_artifact=None, savedmodel=None, ...)`` writes into ``out_dir``:

* ``fer-edge-deeplens-lambda.zip``: ``lambda_function.py`` at the root (handler
  ``lambda_function.function_handler``), the ``edge`` and ``deeplens`` modules the Lambda imports
  (found by following its import statements with ``ast``, so host-only modules such as
  ``fer_edge.bundles.deeplens_deploy`` or ``edge.delivery.subscribe`` stay out), ``edge/events/schema/*.json``, and the installed
  ``greengrasssdk`` package with its licence (a Greengrass v1 Lambda carries the Core SDK in its
  zip, as AWS's DeepLens function template does). Nothing it holds imports paho, ONNX Runtime,
  TensorFlow or fer-edge's host packages when the Lambda runs; that is checked before writing
  (``edge.delivery.client`` imports paho only when an MQTT client is created, which the Lambda never does);
* ``model.tar.gz`` (+ ``model.tar.gz.fer_edge.json``): the DeepLens model artifact, converted now
  from ``savedmodel`` by ``fer-edge convert deeplens`` (``faces``/``data`` check the conversion),
  or a copy of ``model_artifact`` (an existing ``.tar.gz`` from that converter, checked).

Every file is written under a temporary name and renamed into place. The zip is reproducible
(sorted entries, fixed timestamps), so an unchanged bundle uploads as unchanged code.
Host tool; kept Python 3.6-compatible like the rest of ``deeplens/``.
"""

import ast
import glob
import importlib.util
import os
import shutil
import tempfile
import zipfile
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

from edge import metadata as md
from edge.files import copy_atomic, sha256_file

if TYPE_CHECKING:
    import numpy.typing as npt

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZIP_NAME = "fer-edge-deeplens-lambda.zip"
MODEL_NAME = "model.tar.gz"
ENTRY = os.path.join("deeplens", "lambda_function.py")
PACKAGES = ("edge", "deeplens")
HANDLER = "lambda_function.function_handler"
# Top-level modules that must not be imported when the Lambda module loads (the device lacks them).
FORBIDDEN_MODULES = frozenset(
    [
        "paho",
        "onnxruntime",
        "tensorflow",
        "keras",
        "tf2onnx",
        "onnx",
        "openvino",
        "train",
        "convert",
        "fer_edge",
        "boto3",
        "botocore",
        "jetson",
    ]
)
# Imports inside functions that are allowed although forbidden at module level: never run on DeepLens.
LAZY_ALLOWED = {
    "edge/delivery/client.py": frozenset(["paho"]),  # MQTT clients only
    "edge/backends/__init__.py": frozenset(["onnx", "onnxruntime"]),
}  # ONNX metadata only
ZIP_TIME = (2020, 1, 1, 0, 0, 0)


class BundleError(RuntimeError):
    """The bundle cannot be built; the message says why."""


def _say(log, text):
    if log is not None:
        log(text)


def _module_file(name, root=REPO_ROOT):
    """The source file of module ``name`` under ``root`` (package __init__ or module), or None."""
    base = os.path.join(root, *name.split("."))
    for path in (os.path.join(base, "__init__.py"), base + ".py"):
        if os.path.isfile(path):
            return path
    return None


def imports_of(path: str, module_name: str) -> List[Tuple[str, bool]]:
    """(module name, at module level?) for every import statement of a file, relative ones resolved.

    "Module level" is anything that runs when the module is imported (class bodies and ``if``/``try``
    blocks included); imports inside functions run only when the function is called."""
    with open(path, "r", encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    is_package = os.path.basename(path) == "__init__.py"
    package = module_name if is_package else module_name.rpartition(".")[0]
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    in_function = set()
    for fn in functions:
        for node in ast.walk(fn):
            if node is not fn:
                in_function.add(id(node))
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names = [base] + [base + "." + a.name for a in node.names if a.name != "*"]
        for name in names:
            out.append((name, id(node) not in in_function))
    return out


def lambda_modules(entry: str = ENTRY, root: str = REPO_ROOT) -> Dict[str, str]:
    """{archive name: source path} of the Lambda entry and every edge/deeplens module it imports."""
    files = {"lambda_function.py": os.path.join(root, entry)}
    queue = [("lambda_function", os.path.join(root, entry))]
    seen = set()
    while queue:
        name, path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for imported, _ in imports_of(path, name):
            if imported.split(".")[0] not in PACKAGES:
                continue
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):  # the module and every package above it
                sub = ".".join(parts[:i])
                source = _module_file(sub, root)
                if source is None:
                    continue
                arc = os.path.relpath(source, root).replace(os.sep, "/")
                if arc not in files:
                    files[arc] = source
                    queue.append((sub, source))
    return files


def check_imports(files: Mapping[str, str]) -> None:
    """BundleError if a bundled module imports a forbidden module when it loads (see FORBIDDEN_MODULES)."""
    problems = []
    for arc, path in sorted(files.items()):
        if not arc.endswith(".py") or arc.startswith("greengrasssdk/"):
            continue
        name = arc[:-3].replace("/", ".")
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        for imported, module_level in imports_of(path, name):
            top = imported.split(".")[0]
            if top not in FORBIDDEN_MODULES:
                continue
            if not module_level and top in LAZY_ALLOWED.get(arc, ()):
                continue
            problems.append("{} imports {}{}".format(arc, imported, "" if module_level else " (in a function)"))
    if problems:
        raise BundleError("the Lambda zip would import modules the DeepLens lacks: " + "; ".join(problems))


def greengrasssdk_files() -> Dict[str, str]:
    """{archive name: path} of the installed greengrasssdk package and its licence (not imported)."""
    spec = importlib.util.find_spec("greengrasssdk")
    if spec is None or not spec.origin:
        raise BundleError(
            "greengrasssdk is not installed on this host, and the Lambda zip must carry it: "
            "pip install 'greengrasssdk>=1.6,<2' (or build with include_sdk=False if the device "
            "has it)"
        )
    pkg = os.path.dirname(spec.origin)
    site = os.path.dirname(pkg)
    files = {}
    for folder, dirs, names in os.walk(pkg):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for n in names:
            if n.endswith(".py"):
                path = os.path.join(folder, n)
                files["greengrasssdk/" + os.path.relpath(path, pkg).replace(os.sep, "/")] = path
    licences = sorted(glob.glob(os.path.join(site, "greengrasssdk-*.dist-info", "LICENSE*")))
    if licences:
        files["greengrasssdk/LICENSE"] = licences[0]
    return files


def lambda_files(include_sdk: bool = True, root: str = REPO_ROOT) -> Dict[str, str]:
    """Everything that goes into the Lambda zip: {archive name: source path}, checked."""
    files = lambda_modules(root=root)
    check_imports(files)
    if "edge/events/payloads.py" in files:
        for path in sorted(glob.glob(os.path.join(root, "edge", "events", "schema", "*.json"))):
            files["edge/events/schema/" + os.path.basename(path)] = path
    if include_sdk:
        files.update(greengrasssdk_files())
    return files


def write_zip(files: Mapping[str, str], path: str) -> str:
    """A reproducible zip of ``files`` ({archive name: path}) at ``path`` (temporary name, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".zip", dir=folder)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for arc in sorted(files):
                info = zipfile.ZipInfo(arc, date_time=ZIP_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(files[arc], "rb") as handle:
                    zf.writestr(info, handle.read())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def check_model_artifact(path: str) -> Dict[str, Any]:
    """The metadata of a DeepLens model tarball (one .pb and its metadata inside); BundleError otherwise."""
    from deeplens.awscam_backend import tar_metadata
    from edge.backends.base import BackendError

    if not str(path).endswith(".tar.gz") or not os.path.isfile(path):
        raise BundleError("{}: expected the model.tar.gz written by `fer-edge convert deeplens`".format(path))
    try:
        return tar_metadata(path)
    except (BackendError, md.MetadataError) as exc:
        raise BundleError(str(exc)) from exc


def build_bundle(
    out_dir: str,
    model_artifact: Optional[str] = None,
    savedmodel: Optional[str] = None,
    faces: Optional["npt.ArrayLike"] = None,
    data: Optional[str] = None,
    include_sdk: bool = True,
    zip_name: str = ZIP_NAME,
    log: Optional[Callable[[str], None]] = print,
) -> Dict[str, Any]:
    """Write the Lambda zip and the model artifact into ``out_dir``; returns
    ``{"zip": path, "model": path or None, "files": [archive names], "zip_sha256": hex}``."""
    if model_artifact and savedmodel:
        raise BundleError("give model_artifact or savedmodel, not both")
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    files = lambda_files(include_sdk=include_sdk)
    zip_path = write_zip(files, os.path.join(out_dir, zip_name))
    _say(
        log,
        "Lambda zip: {} ({} files, {} bytes, handler {})".format(
            zip_path, len(files), os.path.getsize(zip_path), HANDLER
        ),
    )
    result = {"zip": zip_path, "model": None, "files": sorted(files), "zip_sha256": sha256_file(zip_path)}
    model_path = os.path.join(out_dir, MODEL_NAME)
    if savedmodel:
        from convert.formats import converter

        stage = tempfile.mkdtemp(prefix=".model-", dir=out_dir)
        try:
            built = converter("deeplens")(
                savedmodel, os.path.join(stage, "out"), faces=faces, data=data, force=True, log=log
            )
            check_model_artifact(built)
            copy_atomic(md.sidecar_path(built), md.sidecar_path(model_path))
            os.replace(built, model_path)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    elif model_artifact:
        meta = check_model_artifact(model_artifact)
        if os.path.abspath(model_artifact) != os.path.abspath(model_path):
            copy_atomic(model_artifact, model_path)
            md.write(meta, md.sidecar_path(model_path))
    if savedmodel or model_artifact:
        result["model"] = model_path
        _say(
            log,
            "model artifact: {} (upload to an S3 bucket named deeplens-...; import it in the DeepLens "
            "console as an externally trained TensorFlow model)".format(model_path),
        )
    return result
