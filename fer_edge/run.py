"""`fer-edge run` and `fer-edge image`: the host agent and the one-shot image command.

Exit status of `fer-edge run`: 0 when every event was delivered (or, without a broker, kept), or
is waiting in the on-disk queue for the next start; 3 when events were dropped or failed (the
summary says how many); 4 when the sources ended without a single frame processed (every image
unreadable, a video that decodes to nothing); 2 on a bad config, model, detector or source.
"""

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any, TextIO

from edge.config.agent import BY_NAME, boolean, load_config
from edge.delivery.base import Publisher, PublisherWrapper

EXIT_DROPPED = 3
EXIT_NOTHING = 4


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGINT/SIGTERM set ``stop``: the loop finishes its frame, flushes events, goes offline."""

    def handler(signum, _frame):
        logging.getLogger(__name__).info("signal %d: stopping after this frame", signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def add_agent_options(parser: argparse.ArgumentParser, agent_only: bool = True) -> None:
    parser.add_argument("--config", help="agent config file (JSON, or INI with an [agent] section)")
    for option in BY_NAME.values():
        flag = "--" + option.name.replace("_", "-")
        # a boolean may also come without a value (--homeassistant alone: true)
        extra: dict[str, Any] = {"nargs": "?", "const": True} if option.type is boolean else {}
        if option.type is not str:  # str: argparse's own default
            extra["type"] = option.type
        parser.add_argument(
            flag,
            dest=option.name,
            default=None,
            help="{} (default: {!r})".format(option.help, option.default),
            **extra,
        )
    if not agent_only:
        return
    parser.add_argument(
        "--no-embedded-broker",
        action="store_true",
        help="without --broker, publish nowhere instead of starting an in-process broker",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print the events the agent publishes")
    parser.add_argument(
        "--events-out",
        dest="events_out",
        metavar="FILE",
        help="also write the events to FILE: .jsonl (one event per line, as published) or .csv "
        "(one row per face and frame)",
    )


class EventPrinter(PublisherWrapper):
    """The agent's own publisher, printing every event and stats message the agent hands it.

    No second MQTT connection: what is printed is what the agent publishes, whether the broker is
    up, refuses a plain connection (TLS, passwords) or is the embedded one. Delivery itself shows
    in the stats lines and the end-of-run summary.
    """

    def __init__(self, inner: Publisher, out: TextIO | None = None):
        PublisherWrapper.__init__(self, inner)
        self.out = out or sys.stdout

    def _print(self, topic, kind, data):
        from edge.delivery.subscribe import Message

        from .subscribe_lines import format_message_lines

        message = Message(topic, self.device_id, kind, b"", data, False, 1, False)  # not a re-delivery (dup)
        for line in format_message_lines(message):
            print(line, file=self.out, flush=True)

    def publish_event(self, event: dict[str, Any]) -> bool:
        accepted = self.inner.publish_event(event)
        self._print(self.topics.events, "events", event)
        return accepted

    def publish_stats(self, stats: dict[str, Any]) -> bool:
        stats = dict(stats)
        delivery = self.inner.delivery()
        if delivery is not None:
            stats.setdefault("delivery", delivery)
        accepted = self.inner.publish_stats(stats)
        self._print(self.topics.stats, "stats", stats)
        return accepted

    def publish_track(self, message: dict[str, Any]) -> bool:
        from edge.tracking.lifecycle import format_track_line

        accepted = self.inner.publish_track(message)
        print(format_track_line(message), file=self.out, flush=True)
        return accepted


def delivery_summary(publisher: Publisher, broker: str | None) -> tuple[dict[str, Any], bool]:
    """The delivery part of the run summary, and whether anything was lost."""
    counts = publisher.counters
    outbox = publisher.outbox
    storage = outbox.storage if outbox is not None else None
    summary: dict[str, Any] = {
        "broker": bool(broker),
        "acknowledged": int(counts.get("acknowledged", 0)),
        "queued": int(counts.get("queued", 0)),
        "dropped": int(counts.get("dropped", 0)),
        "failed": int(counts.get("failed", 0)),
        "reconnects": int(counts.get("reconnects", 0)),
    }
    if summary["queued"] and storage:
        summary["queued_in"] = storage
    if counts.get("taken_over"):  # connections lost to another client with this client id
        summary["taken_over"] = int(counts["taken_over"])
    lost = bool(broker) and bool(summary["dropped"] or summary["failed"])
    return summary, lost


def outcome_lines(summary: dict[str, Any], source: str, where: str = "") -> list[str]:
    """Lines for stderr about one camera's run summary: a source that ended early, a run that
    processed nothing, annotated frames that could not be written. ``where``: "camera ID: " or ""."""
    lines = []
    if summary.get("ended_early"):
        lines.append("fer-edge run: {}source {} ended early: {}".format(where, source, summary["ended_early"]))
    if not summary.get("frames"):
        corrupt = int(summary.get("corrupt_frames", 0))
        lines.append(
            "fer-edge run: {}processed nothing: source {} gave no frame{}".format(
                where, source, " ({} unreadable, skipped)".format(corrupt) if corrupt else ""
            )
        )
    failed = summary.get("annotated_frames", {}).get("failed", 0)
    if failed:
        lines.append(
            "fer-edge run: {}{} annotated frame(s) could not be written to {}".format(
                where, failed, summary["annotated"]
            )
        )
    return lines


def camera_events_path(path: str, device_id: str) -> str:
    """The --events-out file of one camera of a multi-camera config: ``results.jsonl`` ->
    ``results.<device_id>.jsonl``."""
    import os

    stem, suffix = os.path.splitext(str(path))
    return "{}.{}{}".format(stem, device_id, suffix)


def cmd_run(args: argparse.Namespace) -> int:
    from edge.agent.assembly import Factories
    from edge.agent.service import make_publisher, serve
    from fer_edge.broker import EmbeddedBroker

    overrides = dict((name, getattr(args, name)) for name in BY_NAME)
    config = load_config(args.config, overrides=overrides)
    logging.basicConfig(level=config["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions"):  # the embedded broker's own chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.events_out:
        from .events_out import check_path

        check_path(args.events_out)
    broker = None
    if not config["broker"] and not args.no_embedded_broker and not EmbeddedBroker.available():
        print(
            "no --broker given and no embedded broker (amqtt is not installed: pip install 'fer-edge[demo]'): "
            "events are printed here, not published",
            flush=True,
        )
    elif not config["broker"] and not args.no_embedded_broker:
        broker = EmbeddedBroker().start()
        config["broker"] = broker.url
        print("no --broker given: started an embedded MQTT broker at {}".format(broker.url), flush=True)
    stop = threading.Event()
    install_stop_handlers(stop)
    publishers = {}  # device id -> the MQTT (or memory) publisher, for the delivery summary

    def publisher_for(camera_config):
        publisher = publishers[camera_config["device_id"]] = make_publisher(camera_config)
        shown = publisher if args.quiet else EventPrinter(publisher)
        if args.events_out:
            from .events_out import EventFileWriter

            path = (
                camera_events_path(args.events_out, camera_config["device_id"])
                if config["cameras"]
                else args.events_out
            )
            shown = EventFileWriter(shown, path)
        return shown

    try:
        summary = serve(config, stop=stop, factories=Factories(publisher=publisher_for))
    finally:
        if broker is not None:
            broker.stop()
    lost = False
    for device_id, publisher in sorted(publishers.items()):
        delivery, camera_lost = delivery_summary(publisher, config["broker"])
        lost = lost or camera_lost
        if config["cameras"]:
            summary["cameras"][device_id]["delivery"] = delivery
        else:
            summary["delivery"] = delivery
        if delivery.get("queued_in") == "disk":
            print(
                "fer-edge run: {}{} message(s) wait in the on-disk queue (data_dir {}); the next run with this "
                "device id delivers them".format(
                    "camera {}: ".format(device_id) if config["cameras"] else "", delivery["queued"], config["data_dir"]
                ),
                file=sys.stderr,
            )
        if camera_lost:
            print(
                "fer-edge run: {}{} message(s) dropped and {} failed: not delivered to {}".format(
                    "camera {}: ".format(device_id) if config["cameras"] else "",
                    delivery["dropped"],
                    delivery["failed"],
                    config["broker"],
                ),
                file=sys.stderr,
            )
    if config["cameras"]:
        for device_id, entry in sorted(summary["cameras"].items()):
            if entry["state"] == "failed":
                print("fer-edge run: camera {} failed: {}".format(device_id, entry.get("error")), file=sys.stderr)
            else:
                for line in outcome_lines(entry, entry["source"], "camera {}: ".format(device_id)):
                    print(line, file=sys.stderr)
    else:
        for line in outcome_lines(summary, config["source"]):
            print(line, file=sys.stderr)
    print(json.dumps({"summary": summary}), flush=True)
    if not summary["frames"] and not stop.is_set():  # the sources ended by themselves, without a frame
        return EXIT_NOTHING
    return EXIT_DROPPED if lost else 0


def pipeline_from_args(args: argparse.Namespace) -> Any:
    """The image pipeline (``edge.pipeline.FaceEmotionPipeline``) of the model and detector flags that
    `fer-edge image` and `fer-edge serve` share."""
    from edge.detect.factory import NEURAL
    from edge.pipeline import FaceEmotionPipeline

    options = {"tiles": args.detector_tiles}
    if args.detector in NEURAL:
        options.update(detector_model=args.detector_model, score_threshold=args.detector_score)
    return FaceEmotionPipeline(args.model, args.detector, args.min_face, args.yunet_model, args.runtime, **options)


def cmd_image(args: argparse.Namespace) -> int:
    import cv2

    pipeline = pipeline_from_args(args)
    status = 0
    for path in args.paths:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            print("fer-edge image: error: {}: not a readable image".format(path), file=sys.stderr)
            status = 2
            continue
        print(json.dumps({"image": path, "faces": pipeline.detect_emotions(image)}), flush=True)
    return status
