"""Agent configuration: one file (JSON or INI), environment variables, then command-line flags.

Precedence: defaults < file < environment (FER_EDGE_<KEY>, e.g. FER_EDGE_DEVICE_ID) < flags.
Unknown keys and bad values are rejected with a message naming the source and the key.

Several cameras in one agent: the file's ``cameras`` key (JSON: a list of objects; INI: the same
JSON as the value of ``cameras``), checked by ``edge.config.cameras`` (which also gives one full
config per camera).
Python 3.6 compatible (the Jetson service reads /etc/fer-edge/agent.json or .ini).
"""

import configparser
import difflib
import json
import os
import socket
from typing import Set

from edge.config.cameras import check_cameras
from edge.config.checks import VIEW_FILES, check_broker, check_ha_prefix, check_view_tls, refuse_url_password  # noqa: F401
from edge.config.options import (  # noqa: F401
    BY_NAME,
    CAMERAS_KEY,
    ENV_PREFIX,
    OPTIONS,
    OTHER_ENV,
    OTHER_ENV_PREFIXES,
    PASSWORD_ENV,
    ConfigError,
    apply_values,
    boolean,
)
from edge.config.secrets import broker_password, read_secret  # noqa: F401
from edge.detect.base import DetectorConfigError
from edge.detect.tiling import parse_tiles


def read_file(path):
    """Key/values of a JSON object or an INI file's [agent] section (UTF-8; errors name the file)."""
    if not os.path.isfile(path):
        raise ConfigError("{}: config file not found".format(path))
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except (OSError, IOError) as exc:
        raise ConfigError("{}: cannot read the config file ({})".format(path, exc.strerror or exc)) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "{}: not UTF-8 text (byte 0x{:02x} at line {}, offset {}); save the file as UTF-8".format(
                path, data[exc.start], data.count(b"\n", 0, exc.start) + 1, exc.start
            )
        ) from exc
    if path.endswith(".json") or text.lstrip().startswith("{"):
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise ConfigError("{}: not valid JSON ({})".format(path, exc)) from exc
        if not isinstance(values, dict):
            raise ConfigError("{}: expected a JSON object of settings".format(path))
        return values
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text, source=path)
    except configparser.Error as exc:
        raise ConfigError("{}: not a valid INI file ({})".format(path, exc)) from exc
    extra = [s for s in parser.sections() if s != "agent"]
    if extra:
        raise ConfigError("{}: unknown section(s) {} (settings go under [agent])".format(path, ", ".join(extra)))
    return dict(parser.items("agent")) if parser.has_section("agent") else {}


def load_config(path=None, env=None, overrides=None):
    """The agent settings as a dict: defaults, then ``path``, then FER_EDGE_* env, then ``overrides``.

    ``config["cameras"]``: the checked camera entries of a multi-camera file (``[]``: one camera,
    the top-level ``source`` and ``device_id``); ``edge.config.cameras.camera_configs`` merges them."""
    config = dict((o.name, o.default) for o in OPTIONS)
    explicit: Set[str] = set()
    cameras, cameras_where = None, None
    if path:
        values = dict(read_file(path))
        if CAMERAS_KEY in values:
            cameras, cameras_where = values.pop(CAMERAS_KEY), path
        apply_values(config, values, path)
        explicit.update(values)
    env = os.environ if env is None else env
    for name, value in sorted(env_settings(env).items()):
        apply_values(config, {name[len(ENV_PREFIX) :].lower(): value}, "environment variable " + name)
        explicit.add(name[len(ENV_PREFIX) :].lower())
    given = dict((k, v) for k, v in (overrides or {}).items() if v is not None)
    if CAMERAS_KEY in given:
        cameras, cameras_where = given.pop(CAMERAS_KEY), "overrides"
    apply_values(config, given, "command line")
    explicit.update(given)
    if not config["device_id"]:
        config["device_id"] = socket.gethostname().split(".")[0] or "fer-edge"
    try:
        parse_tiles(config["detector_tiles"], "key 'detector_tiles'")
    except DetectorConfigError as exc:
        raise ConfigError(str(exc)) from exc
    for key in ("ca_file", "cert_file", "key_file", "password_file", "yunet_model") + VIEW_FILES:
        if config[key] and not os.path.isfile(config[key]):
            raise ConfigError("key '{}': file {} not found".format(key, config[key]))
    check_view_tls(config)
    if config["homeassistant"]:
        check_ha_prefix(config)
    if config["detector"] == "yunet" and not config["yunet_model"]:
        raise ConfigError("key 'yunet_model': required when detector is yunet")
    if config["reconnect_min_delay"] > config["reconnect_max_delay"]:
        raise ConfigError(
            "key 'reconnect_min_delay': {} is larger than reconnect_max_delay {}".format(
                config["reconnect_min_delay"], config["reconnect_max_delay"]
            )
        )
    if config["broker"]:
        check_broker(config)
    if cameras is not None:
        cameras = check_cameras(cameras, cameras_where, config, explicit)
    config[CAMERAS_KEY] = cameras or []
    return config


def env_settings(env):
    """The FER_EDGE_* agent settings in ``env`` ({variable: value}); ConfigError naming an unknown
    FER_EDGE_* variable, with the closest known name."""
    known = ["{}{}".format(ENV_PREFIX, name.upper()) for name in BY_NAME]
    out = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in OTHER_ENV or name.startswith(OTHER_ENV_PREFIXES):
            continue
        if name not in known:
            suffixes = [k[len(ENV_PREFIX) :] for k in known + list(OTHER_ENV)]
            close = difflib.get_close_matches(name[len(ENV_PREFIX) :], suffixes, n=1, cutoff=0.6)
            raise ConfigError(
                "environment variable {}: not a fer-edge setting{} (settings: FER_EDGE_<KEY> for "
                "the keys of `fer-edge run --help`)".format(
                    name, "; did you mean {}{}?".format(ENV_PREFIX, close[0]) if close else ""
                )
            )
        out[name] = value
    return out
