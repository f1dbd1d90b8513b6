#!/usr/bin/env python3
"""Aggregate fer-edge emotion events per device and minute: an example consumer.

    python3 examples/aggregate_per_minute.py --broker mqtt://localhost:1883 [--csv minutes.csv]
        [--device-id ID] [--prefix fer-edge] [--client-id ID --persistent] [--duration SECONDS]
        [--ca-file ca.crt] [--cert-file me.crt --key-file me.key] [--username U --password-file F]

Subscribes to ``<prefix>/<device>/events`` with QoS 1 and counts, per device and UTC minute of
the events' timestamps: frames (events), faces, and faces per top emotion. A minute is printed
(and appended to the CSV file) when an event of a later minute arrives from that device (a
device's events arrive in order), or once it has ended and no event came for it for ``--grace``
seconds (replayed backlogs arrive in bursts), and at exit. Events delivered twice (delivery is at-least-once) are counted once, by ``event_id``.
An event that arrives after its minute was printed starts a new row for that minute: rows of
the same device and minute add up.

Nothing received is trusted: a message that is not an emotion event as this consumer reads it
(:func:`event_problem`) is skipped, counted per topic and reported once per topic on stderr, and
the count is printed at exit; device ids are printed with control characters escaped (a payload
cannot send escape sequences to the terminal).

``--persistent`` with ``--client-id`` keeps a session at the broker, so the events published
while this consumer is stopped are delivered when it starts again. Needs only paho-mqtt (1.x or
2.x); it does not import fer-edge.
"""

import argparse
import calendar
import collections
import csv
import json
import os
import queue
import re
import signal
import ssl
import sys
import time
import unicodedata
from urllib.parse import unquote, urlsplit

EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
COLUMNS = ("minute", "device_id", "frames", "faces") + EMOTIONS
# as in edge/events/schema/emotion-event.schema.json
DEVICE_ID = re.compile(r"^[^/+#\s\x00-\x1f\x7f]{1,128}$")
TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")


def _escape(char):
    if unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp"):
        return char
    return "\\x{:02x}".format(ord(char)) if ord(char) < 0x100 else "\\u{:04x}".format(ord(char))


def printable(text):
    """``text`` with control and format characters (terminal escape sequences) shown escaped."""
    return "".join(_escape(c) for c in str(text))


def event_problem(event):
    """What keeps ``event`` (decoded JSON) from being counted, or None: the fields read here must
    have the types of the emotion-event schema."""
    if not isinstance(event, dict):
        return "not a JSON object"
    if event.get("schema") != "fer-edge/emotion-event":
        return "schema is not fer-edge/emotion-event"
    device = event.get("device_id")
    if not isinstance(device, str) or not DEVICE_ID.match(device):
        return "device_id is not a device id"
    stamp = event.get("timestamp")
    if not isinstance(stamp, str) or not TIMESTAMP.match(stamp):
        return "timestamp is not a UTC time"
    try:
        minute_of(stamp)
    except ValueError:
        return "timestamp is not a UTC time"
    faces = event.get("faces")
    if not isinstance(faces, list) or not all(isinstance(f, dict) and isinstance(f.get("emotion"), str) for f in faces):
        return "faces is not a list of faces with an emotion"
    if not isinstance(event.get("event_id", ""), str):
        return "event_id is not text"
    return None


class Skipped(object):
    """Invalid messages per topic; the first of each topic is reported on ``err``."""

    def __init__(self, err=None):
        self.counts = collections.Counter()
        self.err = err

    def add(self, topic, problem):
        self.counts[topic] += 1
        if self.counts[topic] == 1:
            print(
                "skipped a message on {} that is not a fer-edge event ({}); further ones on this topic are "
                "counted, not shown".format(printable(topic), problem),
                file=self.err or sys.stderr,
            )

    def summary(self):
        total = sum(self.counts.values())
        return "{} invalid message{} skipped: {}".format(
            total,
            "" if total == 1 else "s",
            ", ".join("{} ({})".format(printable(t), n) for t, n in self.counts.most_common()),
        )


def read_event(payload):
    """``(event, None)`` for a payload that is an emotion event, else ``(None, problem)``."""
    try:
        event = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, "not JSON"
    problem = event_problem(event)
    return (None, problem) if problem else (event, None)


def minute_of(timestamp):
    """Seconds since the epoch of the start of the UTC minute of an event timestamp
    (``2026-11-24T10:15:03.123Z``)."""
    seconds = calendar.timegm(time.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S"))
    return seconds - seconds % 60


def minute_text(start):
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(start))


class Aggregator(object):
    """Per (device, minute) counts; ``add`` (of an event :func:`event_problem` accepts) and
    ``close_idle`` return the finished rows."""

    def __init__(self, dedupe_window=100000):
        self.buckets = collections.OrderedDict()  # (device, minute start) -> counts
        self.arrived = {}  # (device, minute start) -> last arrival time
        self.seen = collections.OrderedDict()  # (device, event_id) -> None, bounded
        self.dedupe_window = dedupe_window
        self.duplicates = 0

    def add(self, event, now=None):
        """Count one event (``now``: its arrival time, default the clock)."""
        device = event.get("device_id", "?")
        event_id = event.get("event_id")
        if event_id:
            key = (device, event_id)
            if key in self.seen:
                self.duplicates += 1
                return []
            self.seen[key] = None
            if len(self.seen) > self.dedupe_window:
                self.seen.popitem(last=False)
        start = minute_of(event["timestamp"])
        counts = self.buckets.get((device, start))
        if counts is None:
            counts = self.buckets[(device, start)] = collections.Counter()
        self.arrived[(device, start)] = time.time() if now is None else now
        counts["frames"] += 1
        for face in event.get("faces") or []:
            counts["faces"] += 1
            counts[face.get("emotion", "?")] += 1
        # this device's earlier minutes are complete: its events arrive in order
        return self._close(lambda dev, begin: dev == device and begin < start)

    def close_idle(self, now, grace):
        """Close the minutes that ended ``grace`` seconds before ``now`` and got no event for
        ``grace`` seconds (``now``: seconds since the epoch)."""
        return self._close(lambda dev, begin: begin + 60 + grace <= now and self.arrived[(dev, begin)] + grace <= now)

    def close_all(self):
        return self._close(lambda dev, begin: True)

    def _close(self, done):
        rows = []
        for key in [k for k in self.buckets if done(*k)]:
            counts = self.buckets.pop(key)
            self.arrived.pop(key, None)
            row = {
                "minute": minute_text(key[1]),
                "device_id": key[0],
                "frames": counts["frames"],
                "faces": counts["faces"],
            }
            for emotion in EMOTIONS:
                row[emotion] = counts[emotion]
            rows.append(row)
        return sorted(rows, key=lambda r: (r["minute"], r["device_id"]))


def write_csv(rows, handle, header=False):
    writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow(row)
    handle.flush()


def format_table(rows):
    """A text table: minute, device, frames, faces, then the emotions seen (most first)."""
    lines = []
    for row in rows:
        seen = sorted(((row[e], e) for e in EMOTIONS if row[e]), reverse=True)
        lines.append(
            "{minute}  {device:<20} frames {frames:>5}  faces {faces:>5}  ".format(
                device=printable(row["device_id"]), **row
            )
            + ", ".join("{} {}".format(e, n) for n, e in seen)
        )
    return "\n".join(lines)


def make_client(args):
    import paho.mqtt.client as mqtt

    url = urlsplit(args.broker)
    if url.scheme not in ("mqtt", "mqtts"):
        raise SystemExit("--broker must be mqtt://host[:port] or mqtts://host[:port]")
    options = {"client_id": args.client_id or "", "clean_session": not args.persistent}
    if args.persistent and not args.client_id:
        raise SystemExit("--persistent needs --client-id (the broker keeps the session under that id)")
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **options)
    else:
        client = mqtt.Client(**options)
    user = args.username or (unquote(url.username) if url.username else None)
    password = None
    if args.password_file:
        with open(args.password_file) as handle:
            password = handle.readline().strip()
    elif url.password:
        password = unquote(url.password)
    else:
        password = os.environ.get("FER_EDGE_PASSWORD")
    if user:
        client.username_pw_set(user, password)
    if url.scheme == "mqtts":
        context = ssl.create_default_context(cafile=args.ca_file)
        if args.cert_file:
            context.load_cert_chain(args.cert_file, args.key_file)
        client.tls_set_context(context)
    port = url.port or (8883 if url.scheme == "mqtts" else 1883)
    return client, url.hostname, port


def main(argv=None):
    parser = argparse.ArgumentParser(description="fer-edge emotions per device per minute")
    parser.add_argument("--broker", required=True, help="mqtt://host[:port] or mqtts://host[:port]")
    parser.add_argument("--prefix", default="fer-edge")
    parser.add_argument("--device-id", default="+", help="one device, or + for all (default)")
    parser.add_argument("--csv", help="append finished minutes to this CSV file")
    parser.add_argument(
        "--grace", type=float, default=5.0, help="seconds without events for a minute that ended before it is printed"
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--client-id")
    parser.add_argument("--persistent", action="store_true", help="keep a session at the broker (needs --client-id)")
    parser.add_argument("--username")
    parser.add_argument("--password-file")
    parser.add_argument("--ca-file")
    parser.add_argument("--cert-file")
    parser.add_argument("--key-file")
    args = parser.parse_args(argv)

    messages = queue.Queue()
    topic = "{}/{}/events".format(args.prefix, args.device_id)
    client, host, port = make_client(args)

    def on_connect(client, userdata, flags, rc, properties=None):
        if getattr(rc, "value", rc) == 0:
            client.subscribe(topic, qos=1)
        else:
            print("connection refused: {}".format(rc), file=sys.stderr)

    def on_message(client, userdata, msg):
        messages.put((msg.topic, msg.payload))

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect_async(host, port, 30)
    client.loop_start()

    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    aggregator = Aggregator()
    skipped = Skipped()
    csv_handle = None
    if args.csv:
        new_file = not os.path.exists(args.csv) or os.path.getsize(args.csv) == 0
        csv_handle = open(args.csv, "a", newline="")
        if new_file:
            write_csv([], csv_handle, header=True)

    def emit(rows):
        if rows:
            print(format_table(rows), flush=True)
            if csv_handle is not None:
                write_csv(rows, csv_handle)

    def take(received):
        topic, payload = received
        event, problem = read_event(payload)
        if problem:
            skipped.add(topic, problem)
        else:
            emit(aggregator.add(event))

    end = None if args.duration is None else time.monotonic() + args.duration
    try:
        while not stop and (end is None or time.monotonic() < end):
            try:
                payload = messages.get(timeout=0.5)
            except queue.Empty:
                payload = None
            if payload is not None:
                take(payload)
            emit(aggregator.close_idle(time.time(), args.grace))
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
        while not messages.empty():  # what arrived before the disconnect
            take(messages.get_nowait())
        emit(aggregator.close_all())
        if csv_handle is not None:
            csv_handle.close()
    if aggregator.duplicates:
        print("{} duplicate deliveries ignored".format(aggregator.duplicates), file=sys.stderr)
    if skipped.counts:
        print(skipped.summary(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
