"""The agent's settings: every option (name, type, default, help, choices), their ranges, and the
conversion and checks of one value (Python 3.6 compatible). Loading a whole configuration is
:mod:`edge.config.agent`; several cameras :mod:`edge.config.cameras`.
"""

import collections

from edge.detect.factory import DEFAULT_DETECTOR, DEFAULT_MIN_FACE, DETECTORS
from edge.tracking.policy import POLICIES
from edge.view.server import parse_view

Option = collections.namedtuple("Option", "name type default help choices")

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


def boolean(value):
    """A yes/no setting: a bool, or text true/false, yes/no, on/off, 1/0 (also an argparse type)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise ValueError("expected true or false, got {!r}".format(value))


def _opt(name, kind, default, help_text, choices=None):
    return Option(name, kind, default, help_text, choices)


OPTIONS = (
    _opt(
        "source", str, "0", "frame source URI: video/image file or folder, 0, v4l2:///dev/video0, csi://0, rtsp://..."
    ),
    _opt(
        "realtime",
        boolean,
        False,
        "a video-file source plays at its own frame rate, as a camera would (default: "
        "as fast as the pipeline runs); cameras and streams are live anyway",
    ),
    _opt("broker", str, "", "mqtt://[user@]host[:port] or mqtts://host[:port]; empty: no broker"),
    _opt("device_id", str, "", "device id in topics and events (default: the host name)"),
    _opt("topic_prefix", str, "fer-edge", "topic prefix: <prefix>/<device_id>/events|status|stats"),
    _opt("publish", str, "every-frame", "publish policy", POLICIES),
    _opt("interval", float, 5.0, "seconds between events per track (publish=interval)"),
    _opt("qos", int, 1, "MQTT QoS of events", (0, 1)),
    _opt(
        "model",
        str,
        "",
        "emotion model: an artifact (.onnx, .xml, .engine) or a shipped model's name (default = "
        "balanced, accurate, fast, fast-accurate, deep-emotion); empty: the default model (balanced)",
    ),
    _opt("runtime", str, "", "inference runtime (onnxruntime, openvino, tensorrt); empty: best available"),
    _opt("detector", str, DEFAULT_DETECTOR, "face detector (blazeface-*: neural, on the model runtimes)", DETECTORS),
    _opt(
        "detector_model",
        str,
        "",
        "face-detector artifact (.onnx, .xml, .engine) for a blazeface-* detector "
        "(ignored by haar and yunet); empty: the shipped one",
    ),
    _opt("detector_score", float, 0.5, "lowest face score a neural detector reports"),
    _opt("detector_nms", float, 0.3, "IoU above which a neural detector's overlapping boxes are merged"),
    _opt(
        "detector_tiles",
        str,
        "auto",
        "auto: tiles chosen from the frame size and min_face, one per video frame in rotation, plus a "
        "re-detection around each small face found (an image runs every tile); COLSxROWS: those tiles "
        "(with the whole frame) on every frame, costing about tiles+1 times the detection time; 1x1: none",
    ),
    _opt("align", boolean, True, "level each face crop by its eye line before classifying (neural detectors)"),
    _opt("threads", int, 0, "CPU threads of the ONNX Runtime/OpenVINO models; 0: the runtime's default"),
    _opt("yunet_model", str, "", "path of face_detection_yunet_*.onnx for detector=yunet"),
    _opt("min_face", int, DEFAULT_MIN_FACE, "smallest face (pixels) to detect and classify (the model sees 48x48)"),
    _opt("smoothing", float, 0.6, "per-track score smoothing, 0 (off) to <1"),
    _opt("iou", float, 0.3, "IoU needed to continue a track"),
    _opt("max_missed", int, 15, "frames a track survives unseen (coasting: it keeps its id, nothing is re-announced)"),
    _opt(
        "hysteresis_margin",
        float,
        0.1,
        "a face's emotion changes only to one whose smoothed score leads it by this much ...",
    ),
    _opt(
        "hysteresis_frames",
        int,
        3,
        "... in this many frames in a row (margin 0 and 1 frame: the top label of every frame)",
    ),
    _opt(
        "track_events",
        boolean,
        True,
        "publish each face's lifecycle (new, update, end) on <prefix>/<device_id>/tracks "
        "and the retained current state on <prefix>/<device_id>/state",
    ),
    _opt("confirm_frames", int, 3, "frames a face must be seen in before its track is announced (new)"),
    _opt(
        "homeassistant",
        boolean,
        False,
        "publish Home Assistant MQTT discovery configs (retained) for this agent's "
        "sensors: faces in view, dominant emotion, fps",
    ),
    _opt("homeassistant_prefix", str, "homeassistant", "Home Assistant's MQTT discovery prefix"),
    _opt("stats_interval", float, 10.0, "seconds between stats logs/messages"),
    _opt("annotate", str, "", "write annotated frames to this video (.mp4/.avi) or folder"),
    _opt(
        "view",
        str,
        "",
        "serve a live view (page, MJPEG stream /stream.mjpg, JSON /api/state) at HOST:PORT or "
        "PORT (on 127.0.0.1); port 0 picks a free one (logged); open on loopback, anywhere else it "
        "needs view_token_file; empty: off",
    ),
    _opt(
        "view_token_file",
        str,
        "",
        "file holding the live view's token or password (first line, 12 characters or more; mode 0600); "
        "required when view listens beyond loopback; browsers ask for it (any user name), scripts send "
        "Authorization: Bearer <token>",
    ),
    _opt("view_cert_file", str, "", "certificate (PEM, with its chain) to serve the live view over HTTPS"),
    _opt("view_key_file", str, "", "private key (PEM) of view_cert_file"),
    _opt("ca_file", str, "", "CA certificate for mqtts://"),
    _opt("cert_file", str, "", "client certificate for mqtts:// (AWS IoT Core)"),
    _opt("key_file", str, "", "client private key for mqtts://"),
    _opt("username", str, "", "MQTT user name"),
    _opt("password_file", str, "", "file holding the MQTT password (never put it in the config)"),
    _opt("log_level", str, "INFO", "logging level", ("DEBUG", "INFO", "WARNING", "ERROR")),
    _opt(
        "data_dir",
        str,
        "~/.local/share/fer-edge",
        "folder of the on-disk event queue (outbox-<device_id>.sqlite3); empty: queue in memory only",
    ),
    _opt("queue_max_events", int, 100000, "most messages the queue holds; beyond, the oldest are dropped (counted)"),
    _opt("queue_max_bytes", int, 100000000, "most payload bytes the queue holds; beyond, the oldest are dropped"),
    _opt("flush_timeout", float, 5.0, "seconds the agent waits at exit for queued messages to be acknowledged"),
    _opt(
        "reconnect_min_delay",
        float,
        1.0,
        "first reconnection delay (s); doubles up to reconnect_max_delay, with jitter",
    ),
    _opt("reconnect_max_delay", float, 30.0, "longest reconnection delay (s)"),
    _opt(
        "protocol",
        str,
        "3.1.1",
        "MQTT protocol version; 5: a publish the broker refuses (ACL) is counted as "
        "failed and logged with its reason code (needs paho-mqtt 2.x to see it)",
        ("3.1.1", "5"),
    ),
    _opt("keepalive", int, 10, "MQTT keepalive (s): a broker that stops answering is noticed after 1.5x this"),
    _opt(
        "ack_timeout",
        float,
        10.0,
        "seconds without any acknowledgement, messages in flight, before the "
        "connection is dropped and made again (a frozen broker); 0: off",
    ),
    _opt(
        "client_id",
        str,
        "",
        "MQTT client id (default fer-edge-<device_id>-<random>, different per process; AWS IoT Core: the thing name)",
    ),
    _opt(
        "alpn", str, "", "TLS ALPN protocols, comma-separated; empty: x-amzn-mqtt-ca for *.amazonaws.com:443; none: off"
    ),
    _opt("tls_insecure", boolean, False, "do not verify the broker's host name (tests only; the CA is still checked)"),
)
BY_NAME = dict((o.name, o) for o in OPTIONS)
ENV_PREFIX = "FER_EDGE_"
RANGES = {
    "min_face": (1, 10000),
    "detector_score": (0.01, 0.99),
    "detector_nms": (0.01, 0.99),
    "threads": (0, 256),
    "interval": (0.001, 1e6),
    "iou": (0.01, 1.0),
    "max_missed": (0, 100000),
    "hysteresis_margin": (0.0, 1.0),
    "hysteresis_frames": (1, 10000),
    "confirm_frames": (1, 10000),
    "stats_interval": (0.0, 1e6),
    "queue_max_events": (1, 10**9),
    "queue_max_bytes": (10000, 10**12),
    "flush_timeout": (0.0, 86400.0),
    "reconnect_min_delay": (0.01, 3600.0),
    "reconnect_max_delay": (0.01, 86400.0),
    "keepalive": (1, 65535),
    "ack_timeout": (0.0, 86400.0),
}
# The broker password: from password_file, else from this environment variable (never from a config file).
PASSWORD_ENV = "FER_EDGE_PASSWORD"
# FER_EDGE_* variables that are not agent settings (read elsewhere); any other FER_EDGE_* name is a
# mistake (FER_EDGE_BROKER_URL for FER_EDGE_BROKER) and stops the agent instead of being ignored.
OTHER_ENV = (
    "FER_EDGE_PASSWORD",
    "FER_EDGE_DATA",
    "FER_EDGE_ENGINE_DIR",
    "FER_EDGE_HAAR_CASCADE",
    "FER_EDGE_LAMBDA_AUTOSTART",
    "FER_EDGE_ROOT",
    "FER_EDGE_ARCH",
    "FER_EDGE_PYTHON",
)
OTHER_ENV_PREFIXES = ("FER_EDGE_DEEPLENS_",)  # the DeepLens Lambda's own settings (deeplens.lambda_agent)
TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", boolean: "true or false"}
CAMERAS_KEY = "cameras"


class ConfigError(ValueError):
    """A bad configuration value; the message names where it came from and the key."""


def convert_value(option, value, where):
    """``value`` (from ``where``: a file, a variable, flags) as option ``option`` wants it; ConfigError
    naming ``where`` and the key otherwise."""
    if isinstance(value, str) and option.type is not str:
        value = value.strip()
    try:
        if option.type is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            value = int(value)
        elif option.type is float:
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
        elif option.type is boolean:
            value = boolean(value)
        elif not isinstance(value, str):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            "{}: key '{}': expected {}, got {!r}".format(where, option.name, TYPE_NAMES[option.type], value)
        ) from None
    if option.choices and value not in option.choices:
        raise ConfigError(
            "{}: key '{}': {!r} is not one of {}".format(
                where, option.name, value, ", ".join(str(c) for c in option.choices)
            )
        )
    if option.name in RANGES:
        lo, hi = RANGES[option.name]
        if not lo <= value <= hi:
            raise ConfigError("{}: key '{}': {} is outside {}..{}".format(where, option.name, value, lo, hi))
    if option.name == "smoothing" and not 0.0 <= value < 1.0:
        raise ConfigError("{}: key 'smoothing': {} is outside [0, 1)".format(where, value))
    if option.name == "view":
        try:
            parse_view(value, "{}: key 'view'".format(where))
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    return value


def apply_values(config, values, where):
    """Set ``values`` ({key: value} from ``where``) into ``config``, each converted and checked."""
    unknown = sorted(k for k in values if k not in BY_NAME)
    if unknown:
        raise ConfigError("{}: unknown key(s) {} (known: {})".format(where, ", ".join(unknown), ", ".join(BY_NAME)))
    for key, value in values.items():
        config[key] = convert_value(BY_NAME[key], value, where)
