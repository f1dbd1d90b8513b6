"""`fer-edge outbox status|flush`: the on-disk event queue of a device id, without a camera.

``status`` shows what waits in ``<data_dir>/outbox-<device_id>.sqlite3`` (messages, bytes, the
stream and the last event number, the oldest message's age). ``flush`` connects to the configured
broker with the agent's own publisher, sends the backlog (oldest first, each deleted only once the
broker acknowledged it) and exits 0 when the queue is empty, 3 when messages are still queued
at ``--timeout``. Both read the agent's config (file, FER_EDGE_* variables, flags) for the device
id, data folder and broker settings. A queue in use by a running agent is reported, not touched.
"""

import argparse
import json
import os
import sqlite3
import sys
import time
from typing import Any, TextIO

EXIT_LEFT = 3


def queue_status(path: str) -> dict[str, Any]:
    """Facts about a queue file, read without taking it over (read-only SQLite)."""
    from edge.delivery.outbox import salvage

    if not os.path.isfile(path):
        return {"path": path, "exists": False, "messages": 0, "bytes": 0}
    out = {"path": path, "exists": True}
    try:
        db = sqlite3.connect("file:{}?mode=ro".format(path), uri=True, timeout=2.0)
        try:
            count, size, oldest = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), MIN(created) FROM messages"
            ).fetchone()
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        finally:
            db.close()
        out.update(
            messages=int(count),
            bytes=int(size),
            stream=meta.get("stream"),
            last_event_seq=int(meta.get("event_seq", 0) or 0),
            oldest_age_s=round(time.time() - oldest, 1) if oldest else None,
        )
    except sqlite3.Error as exc:
        rows, meta, lost = salvage(path)
        out.update(
            messages=len(rows),
            bytes=sum(len(r.payload) for r in rows),
            stream=meta.get("stream"),
            damaged="{} (the agent salvages {} readable message(s) at its next start)".format(exc, len(rows)),
        )
    return out


def cmd_outbox(args: argparse.Namespace) -> int:
    from edge.config.agent import BY_NAME, load_config
    from edge.delivery.outbox import queue_path

    overrides = dict((name, getattr(args, name, None)) for name in BY_NAME)
    config = load_config(args.config, overrides=overrides)
    if not config["data_dir"]:
        raise ValueError("key 'data_dir' is empty: this agent queues in memory only, there is no queue file")
    path = queue_path(config["data_dir"], config["device_id"])
    if args.action == "status":
        print(json.dumps(queue_status(path), indent=2, sort_keys=True))
        return 0
    return flush(config, path, args.timeout)


def flush(config: dict[str, Any], path: str, timeout: float, out: TextIO = sys.stdout) -> int:
    from edge.agent.service import make_publisher

    before = queue_status(path)
    if not before["messages"]:
        print("{}: nothing queued".format(path), file=out)
        return 0
    if not config["broker"]:
        raise ValueError(
            "no broker configured (key 'broker'): nowhere to deliver the {} queued message(s)".format(
                before["messages"]
            )
        )
    publisher = make_publisher(config)
    outbox = None
    try:
        publisher.start()
        outbox = publisher.outbox
        if outbox is None or outbox.storage != "disk":
            raise RuntimeError(
                "{}: the queue could not be opened ({}); is an agent with device id {} running?".format(
                    path,
                    "; ".join((outbox.problems if outbox is not None else []) or ["queued in memory"]),
                    config["device_id"],
                )
            )
        deadline = time.monotonic() + float(timeout)
        while outbox.depth and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        publisher.close(timeout=min(5.0, float(timeout)))
    counts = publisher.counters
    left = queue_status(path)["messages"]
    print(
        json.dumps(
            {
                "flushed": {
                    "queue": path,
                    "before": before["messages"],
                    "acknowledged": counts["acknowledged"],
                    "left": left,
                    "broker": config["broker"],
                }
            }
        ),
        file=out,
        flush=True,
    )
    return EXIT_LEFT if left else 0


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    from .run import add_agent_options

    p = sub.add_parser(
        "outbox",
        help="show or deliver an agent's queued events (no camera needed)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("action", choices=["status", "flush"])
    p.add_argument("--timeout", type=float, default=60.0, help="flush: give up after this many seconds (default 60)")
    add_agent_options(p, agent_only=False)
    p.set_defaults(func=cmd_outbox)
    return p
