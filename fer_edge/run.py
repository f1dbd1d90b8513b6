"""`fer-edge run` and `fer-edge image`: the host agent and the one-shot image command."""

import json
import logging
import signal
import sys
import threading

from edge.config import BY_NAME, load_config


def install_stop_handlers(stop):
    """SIGINT/SIGTERM set ``stop``: the loop finishes its frame, flushes events, goes offline."""
    def handler(signum, _frame):
        logging.getLogger("fer_edge").info("signal %d: stopping after this frame", signum)
        stop.set()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def add_agent_options(parser):
    parser.add_argument("--config", help="agent config file (JSON, or INI with an [agent] section)")
    for option in BY_NAME.values():
        flag = "--" + option.name.replace("_", "-")
        kind = option.type if option.type is not str else None
        parser.add_argument(flag, dest=option.name, type=kind, default=None,
                            help="{} (default: {!r})".format(option.help, option.default))
    parser.add_argument("--no-embedded-broker", action="store_true",
                        help="without --broker, publish nowhere instead of starting an in-process broker")
    parser.add_argument("--quiet", action="store_true", help="do not print the events received")


def print_events(url, device_id, prefix, out=sys.stdout):
    """Subscribe to the agent's topics and print what arrives (the demo's subscriber)."""
    from edge.subscribe import format_message_lines, subscribe

    def on_message(message):
        for line in format_message_lines(message):
            print(line, file=out, flush=True)
    ready = threading.Event()
    sub = subscribe(url, device_id=device_id, prefix=prefix, on_message=on_message, ready=ready)
    if not ready.wait(10):
        sub.stop()
        raise RuntimeError("could not subscribe to {} (is the broker up?)".format(url))
    return sub


def cmd_run(args):
    from edge.service import serve
    from fer_edge.broker import EmbeddedBroker
    overrides = dict((name, getattr(args, name)) for name in BY_NAME)
    config = load_config(args.config, overrides=overrides)
    logging.basicConfig(level=config["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions"):  # the embedded broker's own chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    broker = subscriber = None
    if not config["broker"] and not args.no_embedded_broker:
        broker = EmbeddedBroker().start()
        config["broker"] = broker.url
        print("no --broker given: started an embedded MQTT broker at {}".format(broker.url), flush=True)
    stop = threading.Event()
    install_stop_handlers(stop)
    try:
        if config["broker"] and not args.quiet:
            subscriber = print_events(config["broker"], config["device_id"], config["topic_prefix"])
        summary = serve(config, stop=stop)
    finally:
        if subscriber is not None:
            subscriber.stop()
        if broker is not None:
            broker.stop()
    print(json.dumps({"summary": summary}), flush=True)
    return 0


def cmd_image(args):
    import cv2
    from edge.pipeline import FaceEmotionPipeline
    options = {"tiles": args.detector_tiles}
    if args.detector in ("blazeface-back", "blazeface-short", "blazeface-full"):
        options.update(detector_model=args.detector_model, score_threshold=args.detector_score)
    pipeline = FaceEmotionPipeline(args.model, args.detector, args.min_face, args.yunet_model, args.runtime,
                                   **options)
    status = 0
    for path in args.paths:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            print("fer-edge image: error: {}: not a readable image".format(path), file=sys.stderr)
            status = 2
            continue
        print(json.dumps({"image": path, "faces": pipeline.detect_emotions(image)}), flush=True)
    return status
