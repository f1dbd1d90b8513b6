"""Several cameras in one agent: the ``cameras`` entries of a config, checked, and one config per camera.

Each entry has its own ``source`` and ``device_id`` and may set the per-camera keys of
:data:`CAMERA_KEYS`; every other key is shared (one detector, one classifier). Two cameras with one
device id, one client id, one live-view address or one annotated output are refused naming both.
:func:`camera_configs` gives one full config per camera. Python 3.6 compatible.
"""

import json
import os
from typing import Any, Dict

from edge.config.checks import check_broker, check_ha_prefix
from edge.config.options import BY_NAME, CAMERAS_KEY, ConfigError, apply_values
from edge.delivery.url import check_device_id
from edge.detect.base import DetectorConfigError
from edge.detect.tiling import parse_tiles
from edge.view.server import parse_view

# Keys a camera entry may set for itself (everything else is shared: one detector, one classifier).
CAMERA_KEYS = (
    "source",
    "realtime",
    "device_id",
    "client_id",
    "username",
    "password_file",
    "cert_file",
    "key_file",
    "publish",
    "interval",
    "detector_tiles",
    "view",
    "annotate",
    "track_events",
    "confirm_frames",
    "homeassistant",
)
CAMERA_REQUIRED = ("source", "device_id")


def check_cameras(cameras, where, config, explicit=()):
    """The camera entries of a multi-camera config, converted and checked; ConfigError naming the
    file, the entry (``cameras[i]``) and the key. ``config``: the shared settings; ``explicit``: the
    keys given in the file, the environment or flags (a top-level ``source``/``device_id`` beside
    ``cameras`` is refused: each camera names its own)."""
    if isinstance(cameras, str):  # an INI file's value: the JSON list
        try:
            cameras = json.loads(cameras)
        except ValueError as exc:
            raise ConfigError("{}: key 'cameras': not valid JSON ({})".format(where, exc)) from exc
    if not isinstance(cameras, list) or not cameras:
        raise ConfigError(
            "{}: key 'cameras': expected a non-empty list of camera objects (each with source and "
            "device_id), got {!r}".format(where, cameras)
        )
    for key in CAMERA_REQUIRED:
        if key in explicit:
            raise ConfigError(
                "{}: key '{}': with 'cameras' every camera names its own {} (cameras[i].{}); "
                "remove the top-level '{}'".format(where, key, key, key, key)
            )
    out = []
    for i, camera in enumerate(cameras):
        here = "{}: cameras[{}]".format(where, i)
        if not isinstance(camera, dict):
            raise ConfigError("{}: expected an object with source and device_id, got {!r}".format(here, camera))
        unknown = sorted(k for k in camera if k not in CAMERA_KEYS)
        if unknown:
            hint = (
                " (a setting shared by every camera goes at the top level)"
                if all(k in BY_NAME for k in unknown)
                else ""
            )
            raise ConfigError(
                "{}: unknown key(s) {}{} (per-camera keys: {})".format(
                    here, ", ".join(unknown), hint, ", ".join(CAMERA_KEYS)
                )
            )
        missing = [k for k in CAMERA_REQUIRED if not camera.get(k)]
        if missing:
            raise ConfigError("{}: key '{}' is required".format(here, missing[0]))
        entry: Dict[str, Any] = {}
        apply_values(entry, camera, here)
        try:
            check_device_id(entry["device_id"])
        except ValueError as exc:
            raise ConfigError("{}: key 'device_id': {}".format(here, exc)) from exc
        if "detector_tiles" in entry:
            try:
                parse_tiles(entry["detector_tiles"], "{}: key 'detector_tiles'".format(here))
            except DetectorConfigError as exc:
                raise ConfigError(str(exc)) from exc
        if entry.get("homeassistant"):
            check_ha_prefix(config)
        for key in ("password_file", "cert_file", "key_file"):
            if entry.get(key) and not os.path.isfile(entry[key]):
                raise ConfigError("{}: key '{}': file {} not found".format(here, key, entry[key]))
        merged = dict(config, **entry)
        if config["broker"] and any(k in entry for k in ("cert_file", "key_file")):
            try:
                check_broker(merged)
            except ConfigError as exc:
                raise ConfigError("{}: {}".format(here, exc)) from exc
        out.append(entry)
    _refuse_shared(out, where, config)
    return out


def _refuse_shared(cameras, where, config):
    """ConfigError naming both cameras when two would share a device id, a client id, a live-view
    address or an annotated output (a top-level value applies to every camera that does not set its own)."""
    why = {
        "device_id": "topics, status and the event queue are per device id",
        "client_id": "the broker disconnects one of two clients with the same id",
        "view": "two live views cannot listen on one address",
        "annotate": "two cameras would write one file",
    }
    for key in ("device_id", "client_id", "view", "annotate"):
        seen: Dict[Any, int] = {}
        for i, camera in enumerate(cameras):
            value = camera.get(key, config.get(key))
            origin = "" if key in camera else " (the top-level '{}')".format(key)
            if key == "view":
                address = parse_view(value)
                if address is None or address[1] == 0:  # off, or a free port picked per camera
                    continue
                value = "{}:{}".format(*address)
            if not value:
                continue
            if value in seen:
                raise ConfigError(
                    "{}: cameras[{}] and cameras[{}] both have {} {!r}{}: {}; give each camera its own".format(
                        where, seen[value], i, key, value, origin, why[key]
                    )
                )
            seen[value] = i


def camera_configs(config):
    """One full config per camera: the shared settings with each entry of ``cameras`` over them, or
    ``[config]`` for a one-camera config."""
    if not config.get(CAMERAS_KEY):
        return [config]
    out = []
    for camera in config[CAMERAS_KEY]:
        merged = dict(config)
        merged.update(camera)
        merged[CAMERAS_KEY] = []
        out.append(merged)
    return out
