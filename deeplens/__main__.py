"""``python3 -m deeplens``: the fer-edge agent on DeepLens hardware without the DeepLens service.

No Greengrass, no ``awscam``: the edge agent (``edge.agent.service.serve``, what ``fer-edge run`` runs)
with the OpenVINO IR from ``fer-edge convert openvino`` on OpenVINO's Python runtime, frames from
OpenCV, events over MQTT with paho-mqtt (AWS IoT Core with the thing's certificate, or any broker):

    python3 -m deeplens --model model.xml --broker mqtts://<endpoint>-ats.iot.<region>.amazonaws.com:8883 \\
        --ca-file AmazonRootCA1.pem --cert-file thing.cert.pem --key-file thing.private.key --device-id my-deeplens

Options are the agent's (``edge.config.agent``; also from ``--config FILE`` or ``FER_EDGE_*`` variables).
The source defaults to the DeepLens video server's MJPEG output ``/opt/awscam/out/ch2_out.mjpeg``
when it exists, else camera 0 (``/dev/video0``); a FIFO given as ``--source`` (that one included)
is read as a live source that reconnects; the
runtime defaults to ``openvino``. A config file with ``cameras`` runs several cameras in one agent
(one detector and classifier, one MQTT connection per camera: ``edge.agent.cameras``), as on the
Jetson and the host. Without ``--broker`` the events are kept in memory and counted only.
Python 3.6+ (device code); needs numpy, OpenCV, openvino and, with a broker, paho-mqtt.
"""

import argparse
import logging
import os
import signal
import stat
import sys
import threading

from edge.config.agent import BY_NAME, ConfigError, load_config

DEEPLENS_MJPEG = "/opt/awscam/out/ch2_out.mjpeg"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m deeplens", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="agent config file (JSON, or INI with an [agent] section)")
    for option in BY_NAME.values():
        parser.add_argument(
            "--" + option.name.replace("_", "-"),
            dest=option.name,
            type=option.type,
            default=None,
            help="{} (default: {!r})".format(option.help, option.default),
        )
    return parser.parse_args(argv)


def open_default_source(uri, realtime=False):
    """The DeepLens MJPEG output (the default source when it exists) or any FIFO as a live source
    that reconnects; every other URI through edge.agent.sources."""
    import cv2

    from edge.agent.sources import LiveSource, open_source

    if uri == "0" and os.path.exists(DEEPLENS_MJPEG):
        uri = DEEPLENS_MJPEG
    if uri.startswith("/") and os.path.exists(uri) and stat.S_ISFIFO(os.stat(uri).st_mode):
        return LiveSource(uri, lambda: cv2.VideoCapture(uri))
    return open_source(uri, realtime=realtime)


def main(argv=None, stop=None):
    args = parse_args(argv)
    overrides = dict((name, getattr(args, name)) for name in BY_NAME)
    if not overrides.get("runtime") and not os.environ.get("FER_EDGE_RUNTIME"):
        overrides["runtime"] = "openvino"
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 2
    logging.basicConfig(level=config["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from edge.agent.assembly import Factories
    from edge.agent.service import serve

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: stop.set())
    # a factory, not an opened source: a config with ``cameras`` opens one per camera (edge.agent.cameras)
    factories = Factories(source=lambda cfg: open_default_source(cfg["source"], realtime=cfg.get("realtime", False)))
    from edge.detect.base import DetectorConfigError

    try:
        summary = serve(config, stop=stop, factories=factories)
    except DetectorConfigError as exc:  # detector options that do not fit the camera's frames
        print("error: {}".format(exc), file=sys.stderr)
        return 2
    print("frames {frames}, faces {faces}, events {events}, errors {errors}".format(**summary))
    if summary.get("cameras"):
        print(
            "cameras: {}".format(
                ", ".join(
                    "{} {} frames".format(name, camera.get("frames", 0))
                    for name, camera in sorted(summary["cameras"].items())
                )
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
