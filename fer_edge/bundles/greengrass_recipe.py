"""The Greengrass V2 component recipe of fer-edge: names, the recipe itself, its checks (host side).

``make_recipe`` writes one manifest per device kind (``Platform`` os linux, architecture amd64 for
``deeplens``, aarch64 for ``jetson``), each with its artifact (``URI`` s3://<bucket>/<prefix>/<name>/
<version>/<zip>, ``Unarchive: ZIP``, read permission for all users, no execute) and its
lifecycle: ``Setenv`` (PYTHONPATH to the unpacked archive, the component configuration's ``Agent``
object as JSON in ``FER_GG_AGENT_CONFIG``, on a Jetson the TensorRT engine folder), ``Install``
(the module check ``edge/greengrass/check.py``, by path) and ``Run`` (``exec <Python> -m
edge.greengrass.component``, which checks the configuration, writes the agent config and replaces
itself by the agent). ``ComponentConfiguration.DefaultConfiguration`` is ``{"Python": "python3",
"Agent": {...}}``, checked with the agent's own rules. Format: AWS's component recipe reference,
RecipeFormatVersion 2020-01-25; the recipe variables used are ``{artifacts:decompressedPath}``,
``{work:path}`` and ``{configuration:/...}``.

``check_recipe``/``load_recipe`` check what fer-edge's tools rely on (not everything the service checks).
"""

import json
import re
from typing import Any, Mapping, Sequence

from edge.config.agent import ConfigError

RECIPE_FORMAT_VERSION = "2020-01-25"
DEFAULT_COMPONENT = "com.feredge.EmotionAgent"
PUBLISHER = "fer-edge"
TARGETS = ("deeplens", "jetson")
PLATFORMS = {"deeplens": {"os": "linux", "architecture": "amd64"}, "jetson": {"os": "linux", "architecture": "aarch64"}}
MANIFEST_NAMES = {
    "deeplens": "DeepLens hardware or any x86-64 Linux: OpenVINO (python3 -m deeplens)",
    "jetson": "NVIDIA Jetson: TensorRT on the GPU (python3 -m jetson)",
}
PLACEHOLDER_BUCKET = "REPLACE-WITH-BUCKET"
DEFAULT_KEY_PREFIX = "fer-edge"
DEFAULT_AGENT = {"broker": "mqtt://localhost:1883", "publish": "on-change"}
DEFAULTS_FILE = "greengrass/defaults.json"
INSTALL_TIMEOUT = 120
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SEMVER_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class BundleError(ValueError):
    """The component cannot be built as asked; the message says why."""


def check_component_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise BundleError(
            "component name {!r}: 1-128 letters, digits, '.', '-' or '_', starting with a letter or "
            "digit (e.g. {})".format(name, DEFAULT_COMPONENT)
        )
    if name.lower().startswith("aws."):
        raise BundleError("component name {!r}: names starting with 'aws.' are AWS's own components".format(name))
    return name


def check_component_version(version: str) -> str:
    if not isinstance(version, str) or len(version) > 64 or not _SEMVER_RE.match(version):
        raise BundleError(
            "component version {!r}: Greengrass needs a semantic version MAJOR.MINOR.PATCH "
            "(e.g. 1.0.0, 0.2.1-beta), at most 64 characters".format(version)
        )
    return version


def check_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise BundleError(
            "bucket {!r} is not a valid S3 bucket name (3-63 lower-case letters, digits, '-' and '.')".format(bucket)
        )
    return bucket


def artifact_name(target: str, version: str) -> str:
    return "fer-edge-greengrass-{}-{}.zip".format(target, version)


def artifact_key(key_prefix: str, component_name: str, version: str, file_name: str) -> str:
    return "/".join(p for p in (key_prefix.strip("/"), component_name, version, file_name) if p)


def artifact_uri(bucket: str, key_prefix: str, component_name: str, version: str, file_name: str) -> str:
    return "s3://{}/{}".format(bucket, artifact_key(key_prefix, component_name, version, file_name))


# ---------------------------------------------------------------- the recipe


def manifest(target: str, uri: str, stem: str) -> dict[str, Any]:
    """One recipe manifest: the platform, the lifecycle and the artifact of ``target``."""
    root = "{artifacts:decompressedPath}/" + stem
    setenv = {"PYTHONPATH": root, "PYTHONUNBUFFERED": "1", "FER_GG_AGENT_CONFIG": "{configuration:/Agent}"}
    if target == "jetson":
        setenv["FER_EDGE_ENGINE_DIR"] = "{work:path}/engines"  # TensorRT engines, built at the first start
    run = (
        'exec {{configuration:/Python}} -m edge.greengrass.component --exec {target} --defaults "{root}/{defaults}" '
        '--work-dir "{{work:path}}" --out "{{work:path}}/agent.json"'
    ).format(target=target, root=root, defaults=DEFAULTS_FILE)
    return {
        "Name": MANIFEST_NAMES[target],
        "Platform": dict(PLATFORMS[target]),
        "Lifecycle": {
            "Setenv": setenv,
            "Install": {
                "Script": '{{configuration:/Python}} "{}/edge/greengrass/check.py" {}'.format(root, target),
                "Timeout": INSTALL_TIMEOUT,
            },
            "Run": {"Script": run},
        },
        "Artifacts": [{"URI": uri, "Unarchive": "ZIP", "Permission": {"Read": "ALL", "Execute": "NONE"}}],
    }


def make_recipe(
    component_name: str,
    version: str,
    targets: Sequence[str],
    uris: Mapping[str, str],
    agent: Mapping[str, Any] | None = None,
    python: str = "python3",
    description: str | None = None,
) -> dict[str, Any]:
    """The recipe as a dict (``uris``: {target: s3 URI of its archive})."""
    from edge.greengrass.component import check_component_configuration

    configuration = {"Python": python, "Agent": dict(DEFAULT_AGENT, **(agent or {}))}
    try:  # values converted to the agent's types (a "5" for interval becomes 5.0)
        configuration = check_component_configuration(configuration, "the component's DefaultConfiguration")
    except ConfigError as exc:
        raise BundleError(str(exc)) from exc
    return {
        "RecipeFormatVersion": RECIPE_FORMAT_VERSION,
        "ComponentName": component_name,
        "ComponentVersion": version,
        "ComponentDescription": description
        or (
            "fer-edge: facial emotion recognition (FER+) on the camera, emotion events over MQTT to AWS IoT Core "
            "or a local broker"
        ),
        "ComponentPublisher": PUBLISHER,
        "ComponentConfiguration": {"DefaultConfiguration": configuration},
        "Manifests": [manifest(t, uris[t], artifact_name(t, version)[: -len(".zip")]) for t in targets],
    }


def check_recipe(recipe: Any, source: str = "recipe") -> dict[str, Any]:
    """The recipe, checked for what this project's tools rely on; BundleError naming the field."""

    def need(mapping, key, where, kind):
        if not isinstance(mapping, dict) or key not in mapping:
            raise BundleError("{}: {} has no {}".format(source, where, key))
        if not isinstance(mapping[key], kind):
            raise BundleError(
                "{}: {}{} must be {}".format(source, where + "." if where != "the recipe" else "", key, kind.__name__)
            )
        return mapping[key]

    if not isinstance(recipe, dict):
        raise BundleError("{}: a recipe is a JSON/YAML object".format(source))
    if need(recipe, "RecipeFormatVersion", "the recipe", str) != RECIPE_FORMAT_VERSION:
        raise BundleError(
            "{}: RecipeFormatVersion {!r} (expected {})".format(
                source, recipe["RecipeFormatVersion"], RECIPE_FORMAT_VERSION
            )
        )
    check_component_name(need(recipe, "ComponentName", "the recipe", str))
    check_component_version(need(recipe, "ComponentVersion", "the recipe", str))
    manifests = need(recipe, "Manifests", "the recipe", list)
    if not manifests:
        raise BundleError("{}: Manifests is empty".format(source))
    for i, item in enumerate(manifests):
        where = "Manifests[{}]".format(i)
        need(item, "Platform", where, dict)
        need(item, "Lifecycle", where, dict)
        for j, artifact in enumerate(need(item, "Artifacts", where, list)):
            uri = need(artifact, "URI", "{}.Artifacts[{}]".format(where, j), str)
            if not uri.startswith("s3://") or uri.count("/") < 3:
                raise BundleError("{}: {}.Artifacts[{}].URI {!r} is not s3://bucket/key".format(source, where, j, uri))
    configuration = recipe.get("ComponentConfiguration", {}).get("DefaultConfiguration")
    if configuration is not None:
        from edge.greengrass.component import check_component_configuration

        try:
            check_component_configuration(
                configuration, "{}: ComponentConfiguration.DefaultConfiguration".format(source)
            )
        except ConfigError as exc:
            raise BundleError(str(exc)) from exc
    return recipe


def dump_recipe(recipe: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(recipe, indent=2) + "\n"
    try:
        import yaml
    except ImportError:
        raise BundleError("writing a YAML recipe needs PyYAML (pip install pyyaml), or use --format json") from None
    return "---\n" + yaml.safe_dump(recipe, sort_keys=False, default_flow_style=False, width=1000)


def load_recipe(path: str) -> dict[str, Any]:
    """A recipe file (JSON, or YAML when PyYAML is installed) as a dict, checked."""
    with open(path, "r", encoding="utf-8") as handle:
        text = handle.read()
    if path.endswith(".json") or text.lstrip().startswith("{"):
        try:
            recipe = json.loads(text)
        except ValueError as exc:
            raise BundleError("{}: not valid JSON ({})".format(path, exc)) from exc
    else:
        try:
            import yaml
        except ImportError:
            raise BundleError("{}: reading a YAML recipe needs PyYAML (pip install pyyaml)".format(path)) from None
        try:
            recipe = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BundleError("{}: not valid YAML ({})".format(path, exc)) from exc
    return check_recipe(recipe, path)
