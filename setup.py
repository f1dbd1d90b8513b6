"""How the wheel is laid out (the project's metadata is in pyproject.toml).

The repository keeps the folders its design names (edge, jetson, deeplens, train, convert, fer_edge).
In an installed wheel:

* ``fer_edge`` (the CLI and host tools) and the device packages ``edge``, ``jetson`` and ``deeplens``
  keep their names: devices import them by those names (the Jetson bundle, the DeepLens Lambda zip,
  Greengrass recipes already deployed that run ``python3 -m edge.greengrass_config``), so the wheel
  does too (docs/architecture.md says why ``edge`` stays a top-level name);
* the host-only packages ``train`` and ``convert`` go under the one namespace, as
  ``fer_edge.train`` and ``fer_edge.convert``: their imports (and the converter names of the
  format table, ``"convert.onnx_export:export_onnx"``) are rewritten in the wheel's copies by
  :func:`namespaced` (as pip's vendoring does), so no generic ``train`` or ``convert`` lands in
  site-packages;
* the shipped models' ONNX and OpenVINO files (and their cards and licences) are package data under
  ``edge/models`` (``edge.shipped`` finds them there); the SavedModels stay in the repository.
"""

import os
import re

NAMESPACED = ("train", "convert")
NAMESPACE = "fer_edge"
DEVICE_PACKAGES = ("edge", "jetson", "deeplens")
MODEL_FILES = [
    "README.md",
    "BLAZEFACE.md",
    "LICENSE.*",
    "crop_mapping.json",
    "*/README.md",
    "*/LICENSE.*",
    "*/onnx/model.onnx",
    "*/openvino/model.xml",
    "*/openvino/model.bin",
    "*/openvino/model.xml.fer_edge.json",
]

_NAMES = "|".join(NAMESPACED)
_IMPORT = re.compile(r"^(\s*(?:from|import)\s+)({})(?=[.\s])".format(_NAMES), re.M)
_IMPORT_LIST = re.compile(r"^(\s*import\s+)(.+)$", re.M)
_STRING = re.compile(r"""(["'])({})(\.[A-Za-z_][\w.]*(?::[A-Za-z_]\w*)?)(?=\1)""".format(_NAMES))


def namespaced(source):
    """``source`` (a module's text) with the host-only packages' imports and module-name strings
    moved under ``fer_edge``: ``from train.x import y`` -> ``from fer_edge.train.x import y``,
    ``"convert.onnx_export:export_onnx"`` -> ``"fer_edge.convert.onnx_export:export_onnx"``.
    Words that merely look alike (``"train"``, ``fer_edge.train``, ``retrain.x``) are left alone."""
    source = _IMPORT.sub(lambda m: m.group(1) + NAMESPACE + "." + m.group(2), source)

    def import_list(match):
        names = [n.strip() for n in match.group(2).split(",")]
        if len(names) < 2:
            return match.group(0)
        out = [NAMESPACE + "." + n if n.split(".")[0] in NAMESPACED else n for n in names]
        return match.group(1) + ", ".join(out)

    source = _IMPORT_LIST.sub(import_list, source)
    return _STRING.sub(lambda m: m.group(1) + NAMESPACE + "." + m.group(2) + m.group(3), source)


def _packages():
    from setuptools import find_packages

    packages = find_packages(include=[p + s for p in DEVICE_PACKAGES + (NAMESPACE,) for s in ("", ".*")])
    for name in NAMESPACED:
        packages += [NAMESPACE + "." + p for p in find_packages(include=[name, name + ".*"])]
    return sorted(packages + ["edge.models"])


def _build_py():
    from setuptools.command.build_py import build_py

    class NamespacedBuildPy(build_py):
        """build_py that rewrites every copied module with :func:`namespaced`."""

        def build_module(self, module, module_file, package):
            result = super().build_module(module, module_file, package)
            target = (
                result[0]
                if isinstance(result, tuple)
                else self.get_module_outfile(
                    self.build_lib, package.split(".") if isinstance(package, str) else package, module
                )
            )
            with open(target, "r", encoding="utf-8") as handle:
                text = handle.read()
            rewritten = namespaced(text)
            if rewritten != text:
                with open(target, "w", encoding="utf-8") as handle:
                    handle.write(rewritten)
            return result

    return NamespacedBuildPy


if __name__ == "__main__":
    from setuptools import setup

    here = os.path.dirname(os.path.abspath(__file__))
    setup(
        packages=_packages(),
        package_dir=dict([(NAMESPACE + "." + n, n) for n in NAMESPACED] + [("edge.models", "models")]),
        package_data={
            "edge": ["events/schema/*.json"],
            "fer_edge": [
                "bundles/jetson_templates/*",
                "web/static/*.html",
                "web/static/*.css",
                "web/static/js/*.js",
                "web/static/vendor/*.mjs",  # `make web-vendor` (onnxruntime-web) before building the wheel
                "web/static/vendor/*.wasm",
            ],
            "edge.models": MODEL_FILES,
        },
        include_package_data=False,
        cmdclass={"build_py": _build_py()},
    )
