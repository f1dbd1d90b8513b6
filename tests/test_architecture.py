"""The house rules, checked on the import graph (docs/architecture.md):

* no import cycles between fer-edge's modules, counting the imports inside functions too (a lazy
  import hides a cycle from Python at import time, not from the design);
* device packages (edge, jetson, deeplens) never import host packages (train, convert, fer_edge);
* hardware SDKs and optional runtimes are imported only by their adapter modules;
* every package has an ``__init__.py`` and no module is past the size where it holds several jobs.

The graph is read from the source with ``ast`` (nothing is imported), so the test is fast and
sees every import statement, module level or not.
"""

import ast
import collections
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
DEVICE = ("edge", "jetson", "deeplens")
HOST = ("train", "convert", "fer_edge")
PACKAGES = DEVICE + HOST
MAX_LINES = 420
# Third-party modules that only their adapters may import: {top-level module: allowed files (prefixes)}.
ADAPTERS = {
    "tensorrt": (
        "jetson/trt_runtime.py",
        "jetson/trt_backend.py",
        "jetson/engine_build.py",
        "convert/tensorrt_build.py",
    ),
    "pycuda": ("jetson/trt_runtime.py", "jetson/engine_build.py"),
    "awscam": ("deeplens/device.py",),
    "mo": ("deeplens/device.py",),
    "greengrasssdk": ("deeplens/device.py", "deeplens/greengrass_publisher.py"),
    "paho": ("edge/delivery/client.py",),
    "openvino": ("edge/backends/openvino_backend.py", "convert/"),
    "onnxruntime": ("edge/backends/onnxruntime_backend.py", "convert/", "train/", "fer_edge/"),
    "tensorflow": ("train/", "convert/"),
    "keras": ("train/", "convert/"),
    "tf2onnx": ("convert/",),
    "starlette": ("fer_edge/serve/",),
    "uvicorn": ("fer_edge/serve/",),
    "multipart": ("fer_edge/serve/",),
    "python_multipart": ("fer_edge/serve/",),
    "websockets": ("fer_edge/web/browser.py",),  # the DevTools protocol client (the web extra)
    "ray": ("fer_edge/serve/ray_",),
}


def _module_name(path):
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _source_files():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path


def _exists(module):
    base = REPO.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


class Import(collections.namedtuple("Import", "source target line in_function")):
    """One import statement's edge: module ``source`` imports ``target`` (a module of ours or a
    third-party top-level name) at ``line``."""


def _imports(path):
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    out.append(Import(module, alias.name, child.lineno, in_function))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module
                submodules = [target + "." + a.name for a in child.names if _exists(target + "." + a.name)]
                out.extend(Import(module, t, child.lineno, in_function) for t in submodules)
                if len(submodules) < len(child.names):
                    out.append(Import(module, target, child.lineno, in_function))
            visit(child, inside)

    visit(tree, False)
    return out


@pytest.fixture(scope="module")
def graph():
    return {_module_name(p): (p, _imports(p)) for p in _source_files()}


def _ours(target):
    return target.split(".")[0] in PACKAGES


def test_no_import_cycles_counting_imports_inside_functions(graph):
    edges = collections.defaultdict(set)
    for module, (_, imports) in graph.items():
        for imp in imports:
            if _ours(imp.target) and imp.target != module and imp.target in graph:
                edges[module].add(imp.target)
    # Tarjan's strongly connected components, iteratively.
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
    assert not cycles, "import cycles (imports inside functions included): {}".format(cycles)


def test_device_packages_never_import_host_packages(graph):
    bad = [
        "{}:{} imports {}".format(path.relative_to(REPO), imp.line, imp.target)
        for module, (path, imports) in graph.items()
        if module.split(".")[0] in DEVICE
        for imp in imports
        if imp.target.split(".")[0] in HOST
    ]
    assert not bad, "device code imports host packages:\n" + "\n".join(bad)


def test_hardware_sdks_and_runtimes_only_in_their_adapters(graph):
    bad = []
    for _module, (path, imports) in graph.items():
        rel = path.relative_to(REPO).as_posix()
        for imp in imports:
            allowed = ADAPTERS.get(imp.target.split(".")[0])
            if allowed is not None and not rel.startswith(allowed):
                bad.append("{}:{} imports {}".format(rel, imp.line, imp.target))
    assert not bad, "SDK imports outside their adapters:\n" + "\n".join(bad)


def test_every_package_folder_is_a_package_and_modules_stay_small():
    missing, big = [], []
    for package in PACKAGES:
        for folder, dirs, files in os.walk(str(REPO / package)):
            dirs[:] = [d for d in dirs if d not in ("__pycache__", "templates", "schema")]
            if any(f.endswith(".py") for f in files) and "__init__.py" not in files:
                missing.append(folder)
            for name in files:
                if name.endswith(".py"):
                    lines = sum(1 for _ in open(os.path.join(folder, name), encoding="utf-8"))
                    if lines > MAX_LINES:
                        big.append(
                            "{} ({} lines)".format(os.path.relpath(os.path.join(folder, name), str(REPO)), lines)
                        )
    assert not missing, "folders with modules but no __init__.py: {}".format(missing)
    assert not big, "modules past {} lines (several jobs: cut them): {}".format(MAX_LINES, big)


def test_the_graph_reader_sees_lazy_imports(graph):
    """The reader itself: a known lazy import (the CLI loads TensorFlow-side code on demand)."""
    _, imports = graph["fer_edge.cli"]
    assert any(imp.in_function and imp.target.startswith("train.") for imp in imports)
