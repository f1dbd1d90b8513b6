"""The Greengrass V2 component's configuration, checked and turned into the agent's config.

The fer-edge component (``fer-edge bundle greengrass``, docs/greengrass.md) has this configuration:

    {"Python": "python3",                     # the interpreter the lifecycle runs (a path or a name)
     "Agent": {"broker": "mqtt://localhost:1883", "publish": "on-change", ...}}

``Agent`` holds keys of the agent config (``edge.config.agent``: the flag names of ``fer-edge run``
with underscores), checked key by key with the agent's own rules. The recipe's Run step is

    exec <Python> -m edge.greengrass.component --exec deeplens|jetson --defaults <artifact>/greengrass/defaults.json \\
        --work-dir {work:path} --out {work:path}/agent.json

with ``FER_GG_AGENT_CONFIG`` set (recipe ``Setenv``) to ``{configuration:/Agent}``, which the
Greengrass nucleus replaces by the object as compact JSON. This module checks it, fills in the
Greengrass defaults, writes the agent config file (mode 0600, by a temporary name then renamed)
and replaces itself (``os.execv``) by ``<python> -m deeplens|jetson --config agent.json``, so the
agent is the process Greengrass stops with SIGTERM (it then flushes its queue and goes offline).

Defaults, each used only when the key is not set in ``Agent``:

* the artifact's ``greengrass/defaults.json`` (the bundle's model, detector and source); relative
  paths there and in ``Agent`` (``model``, ``detector_model``, ``yunet_model``, ``ca_file``,
  ``cert_file``, ``key_file``, ``password_file``) are relative to the unpacked artifact;
  ``annotate`` and ``data_dir`` to the component's work folder;
* ``device_id``: the core device's thing name (``$AWS_IOT_THING_NAME``, set by the nucleus);
* ``data_dir``: the component's work folder (the on-disk event queue survives restarts and updates);
* for an AWS IoT Core broker (``mqtts://*.amazonaws.com``): ``ca_file`` = ``$GG_ROOT_CA_PATH`` (the
  core's Amazon root CA, set by nucleus 2.5.5+) and ``client_id`` = ``device_id`` (the IoT policy in
  examples/aws-iot-policy.json lets a thing connect only under its own name).

Refused, with the key named: unknown keys (with the closest known one), bad values (the agent's
types, choices and ranges), ``client_id`` equal to the core device's thing name on AWS IoT Core
(the nucleus holds that connection: AWS IoT Core drops the older of two connections with one client
id, so the two would knock each other off), files that do not exist on the device, a ``Python``
that is not a plain path. Exit status 78 (configuration error: nothing written, no agent started).

The same checks run on the host (``check_component_configuration(..., on_device=False)``), where
device files are not looked for: ``fer-edge bundle greengrass`` and ``fer-edge deploy greengrass``
refuse a bad configuration before anything is uploaded.

Python 3.6 compatible (device code); standard library and ``edge.config.agent``.
"""

import argparse
import difflib
import json
import os
import re
import sys
from typing import Any, Dict

from edge.config.agent import load_config
from edge.config.options import BY_NAME, ConfigError, apply_values
from edge.files import atomic_file

CONFIG_ENV = "FER_GG_AGENT_CONFIG"
THING_ENV = "AWS_IOT_THING_NAME"
ROOT_CA_ENV = "GG_ROOT_CA_PATH"
TOP_KEYS = ("Python", "Agent")
TARGETS = ("deeplens", "jetson")
WHERE = "component configuration"
# Agent keys holding files the agent reads (relative: to the unpacked artifact) or writes (to the work folder).
ARTIFACT_PATH_KEYS = ("model", "detector_model", "yunet_model", "ca_file", "cert_file", "key_file", "password_file")
WORK_PATH_KEYS = ("annotate", "data_dir")
EXIT_CONFIG = 78
_PYTHON_RE = re.compile(r"^[A-Za-z0-9_./+-]+$")
_PLACEHOLDER_RE = re.compile(r"^\{[.\w]+:[^:}]+\}$")


def _where(*parts):
    return "{} /{}".format(WHERE, "/".join(parts))


def _closest(name, known):
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return "; did you mean '{}'?".format(close[0]) if close else ""


def check_agent_settings(values, where=None):
    """The ``Agent`` object's settings, converted by edge.config.agent's rules ({key: value}, only the
    keys given); ConfigError naming ``where`` and the key. Device files are not looked for here."""
    where = where or _where("Agent")
    if not isinstance(values, dict):
        raise ConfigError(
            "{}: expected an object of agent settings (keys of `fer-edge run --help`), got {}".format(
                where, type(values).__name__
            )
        )
    for key in sorted(values):
        if key not in BY_NAME:
            raise ConfigError(
                "{}: unknown key '{}'{} (the keys are those of the agent config: `fer-edge run "
                "--help`, docs/greengrass.md)".format(where, key, _closest(key, BY_NAME))
            )
    out: Dict[str, Any] = {}
    apply_values(out, values, where)
    return out


def check_python(value, where=None):
    """The ``Python`` setting: a non-empty interpreter name or path the lifecycle shell can run as it is."""
    where = where or _where("Python")
    if not isinstance(value, str) or not _PYTHON_RE.match(value):
        raise ConfigError(
            "{}: expected the Python interpreter to run (a name such as python3 or an absolute path, "
            "letters, digits and . _ / + - only), got {!r}".format(where, value)
        )
    return value


def check_component_configuration(config, where=WHERE):
    """A whole or partial (deployment merge) component configuration, checked: {"Python": ..., "Agent": {...}}."""
    if not isinstance(config, dict):
        raise ConfigError(
            "{}: expected a JSON object with the keys {}, got {}".format(
                where, ", ".join(TOP_KEYS), type(config).__name__
            )
        )
    for key in sorted(config):
        if key not in TOP_KEYS:
            hint = _closest(key, TOP_KEYS)
            if not hint and key in BY_NAME:
                hint = '; agent settings go under Agent: {{"Agent": {{"{}": ...}}}}'.format(key)
            raise ConfigError("{}: unknown key '{}'{} (known: {})".format(where, key, hint, ", ".join(TOP_KEYS)))
    out = {}
    if "Python" in config:
        out["Python"] = check_python(config["Python"], "{} /Python".format(where))
    if "Agent" in config:
        out["Agent"] = check_agent_settings(config["Agent"], "{} /Agent".format(where))
    return out


def parse_agent_json(text, variable=CONFIG_ENV):
    """The ``Agent`` object from the text the nucleus put in ``variable``; ConfigError saying what is wrong."""
    if text is None:
        raise ConfigError(
            "${} is not set: the component recipe sets it to {{configuration:/Agent}} (Setenv); "
            "run this only from the component's lifecycle".format(variable)
        )
    stripped = text.strip()
    if _PLACEHOLDER_RE.match(stripped):
        raise ConfigError(
            "${} is {!r}: the nucleus did not replace it, so the component configuration has no "
            'Agent object (a deployment reset it away?); deploy with {{"Agent": {{...}}}}'.format(variable, stripped)
        )
    try:
        value = json.loads(stripped) if stripped else {}
    except ValueError as exc:
        raise ConfigError(
            "{}: ${} is not JSON ({}): {!r}".format(_where("Agent"), variable, exc, stripped[:200])
        ) from exc
    return value


def is_aws_iot_core(broker):
    """True for an mqtts:// broker on an AWS IoT Core endpoint (*.amazonaws.com, *.amazonaws.com.cn)."""
    from edge.delivery.url import parse_url

    try:
        url = parse_url(broker)
    except ValueError:
        return False
    host = url.host.lower()
    return url.tls and (host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn"))


def _resolve(value, folder):
    if not value or os.path.isabs(value):
        return value
    return os.path.normpath(os.path.join(folder, value))


def agent_config(agent, defaults, env, artifact_dir, work_dir):
    """The agent settings to write: ``defaults`` (the artifact's) < ``agent`` (the component
    configuration's, checked) < nothing else, with the Greengrass defaults and checks (module doc)."""
    settings = check_agent_settings(
        defaults, "{} (the artifact's defaults)".format(os.path.join(artifact_dir, "greengrass", "defaults.json"))
    )
    settings.update(check_agent_settings(agent))
    from edge.classifier import NAMED_MODELS

    for key in ARTIFACT_PATH_KEYS:
        if key in settings and not (key == "model" and settings[key] in NAMED_MODELS):
            settings[key] = _resolve(settings[key], artifact_dir)
    for key in WORK_PATH_KEYS:
        if key in settings:
            settings[key] = _resolve(settings[key], work_dir)
    thing = env.get(THING_ENV, "")
    if not settings.get("device_id"):
        if not thing:
            raise ConfigError(
                "{}: key 'device_id' is empty and ${} (the core device's thing name, set by the "
                "nucleus) is not set: give device_id".format(_where("Agent"), THING_ENV)
            )
        settings["device_id"] = thing
    settings.setdefault("data_dir", work_dir)
    if is_aws_iot_core(settings.get("broker", "")):
        if not settings.get("ca_file") and env.get(ROOT_CA_ENV):
            settings["ca_file"] = env[ROOT_CA_ENV]
        if not settings.get("client_id"):
            settings["client_id"] = settings["device_id"]
        if thing and settings["client_id"] == thing:
            raise ConfigError(
                "{}: key 'client_id' (or device_id, which it defaults to) is {!r}, the core device's own thing name: "
                "the Greengrass nucleus is connected to AWS IoT Core with that client id, and AWS IoT Core drops the "
                "older of two connections with one client id. Give the agent its own thing, certificate and client id "
                "(device_id and client_id = that thing's name; docs/greengrass.md)".format(
                    _where("Agent"), settings["client_id"]
                )
            )
    for key in ("model", "detector_model"):
        value = settings.get(key)
        if value and not (key == "model" and value in NAMED_MODELS) and not os.path.isfile(value):
            raise ConfigError("{}: key '{}': file {} not found on this device".format(_where("Agent"), key, value))
    try:  # the agent's own whole-config checks (files exist, broker URL, TLS keys, ranges across keys)
        load_config(None, env={}, overrides=settings)
    except ConfigError as exc:
        raise ConfigError("{}: {}".format(_where("Agent"), exc)) from exc
    return settings


def write_config(settings, path):
    """Write the settings as JSON to ``path`` (mode 0600; a temporary name, then renamed)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        os.makedirs(folder)
    with atomic_file(path, mode=0o600) as handle:
        json.dump(settings, handle, indent=2, sort_keys=True)
        handle.write("\n")
    return path


def read_defaults(path):
    try:
        with open(path, "r") as handle:
            value = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError("{}: the artifact's agent defaults cannot be read ({})".format(path, exc)) from exc
    return value


def agent_command(python, target, config_path, settings):
    """The argv that replaces this process: the target's agent on the written config."""
    argv = [python, "-m", target, "--config", config_path]
    if settings.get("runtime"):
        argv += ["--runtime", settings["runtime"]]  # python3 -m deeplens picks openvino unless told on its command line
    return argv


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python3 -m edge.greengrass.component",
        description="fer-edge Greengrass component: check the component configuration, "
        "write the agent config, start the agent.",
    )
    parser.add_argument(
        "--exec",
        dest="target",
        choices=TARGETS,
        required=True,
        help="the agent to start: deeplens (python3 -m deeplens, OpenVINO) or jetson (python3 -m jetson)",
    )
    parser.add_argument("--defaults", required=True, help="the artifact's greengrass/defaults.json")
    parser.add_argument("--work-dir", required=True, help="the component's work folder ({work:path})")
    parser.add_argument("--out", required=True, help="agent config file to write")
    parser.add_argument(
        "--dry-run", action="store_true", help="check and write, print the agent command, start nothing"
    )
    return parser


def main(argv=None, env=None, execv=os.execv):
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env
    artifact_dir = os.path.dirname(os.path.dirname(os.path.abspath(args.defaults)))
    try:
        settings = agent_config(
            parse_agent_json(env.get(CONFIG_ENV)),
            read_defaults(args.defaults),
            env,
            artifact_dir,
            os.path.abspath(args.work_dir),
        )
        write_config(settings, args.out)
    except ConfigError as exc:
        print("fer-edge greengrass: error: {}".format(exc), file=sys.stderr, flush=True)
        return EXIT_CONFIG
    command = agent_command(sys.executable, args.target, args.out, settings)
    print(
        "fer-edge greengrass: agent config {} (device {}, broker {}); starting: {}".format(
            args.out, settings["device_id"], _redacted(settings.get("broker", "")) or "none", " ".join(command[1:])
        ),
        flush=True,
    )
    if args.dry_run:
        return 0
    execv(command[0], command)
    return 0  # only reached when execv is replaced (tests)


def _redacted(broker):
    from edge.delivery.url import parse_url

    try:
        return parse_url(broker).redacted() if broker else ""
    except ValueError:
        return "(invalid)"


if __name__ == "__main__":
    sys.exit(main())
