"""Ray Serve on this one machine: ``python -m fer_edge.serve.ray_local --replicas N --port P -- FLAGS``.

Starts a local Ray (``ray.init``: its logical CPUs at least N, so N one-CPU replicas fit), Serve's HTTP proxy on
``--host``:``--port``, and the application of ``ray_deployment`` with N fixed replicas; prints ``ready`` and
serves until SIGTERM or SIGINT, then shuts Serve and Ray down. ``fer-edge bench serve --ray`` and
tests/test_serve_ray.py start it; a cluster runs ``serve deploy deploy/ray/serve.yaml`` instead.
"""

import argparse
import logging
import os
import signal
import threading
from typing import Sequence

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fer_edge.serve.ray_local", description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", type=int, default=2, help="fixed replicas (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="where Ray's HTTP proxy listens (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="its port (default: %(default)s)")
    p.add_argument("flags", nargs="*", help="`fer-edge serve` flags for every replica (after --)")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from .ray_deployment import NAME, application

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ray.init(
        address="local",  # a new Ray of its own, never one already running on this machine
        num_cpus=max(os.cpu_count() or 1, args.replicas),
        include_dashboard=False,
        object_store_memory=256 * 1024 * 1024,
        configure_logging=False,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs handlers of its own
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        app = application(["--host", args.host] + list(args.flags), num_replicas=args.replicas)
        serve.run(app, name=NAME, route_prefix="/")
        log.info("Ray Serve: %d replicas of %s on http://%s:%d", args.replicas, NAME, args.host, args.port)
        print("ready", flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
