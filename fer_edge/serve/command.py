"""`fer-edge serve`: its options, and the uvicorn server around ``app.build_app``."""

import argparse
import logging
import sys
from typing import Any

from ..pipeline_options import add_pipeline_options
from .auth import HOW, ServeConfigError, check_exposure, load_api_key
from .limits import MB, Limits


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """The ``serve`` subcommand's parser."""
    d = Limits()
    p = sub.add_parser(
        "serve",
        help="an HTTP inference service: POST an image to /v1/emotions (docs/serve.md)",
        description="An HTTP inference service on the project's pipeline. Beyond 127.0.0.1 it requires an API "
        "key: " + HOW + ".",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0: any free port)")
    add_pipeline_options(p)
    p.add_argument("--api-key-file", dest="api_key_file", help="file whose first line is the API key")
    p.add_argument(
        "--behind-auth-proxy",
        dest="behind_auth_proxy",
        action="store_true",
        help="listen beyond loopback without an API key: an authenticating reverse proxy guards the service",
    )
    p.add_argument(
        "--max-body-mb", dest="max_body_mb", type=float, default=d.max_body / MB, help="largest body (default 10 MB)"
    )
    p.add_argument(
        "--max-pixels", dest="max_pixels", type=int, default=d.max_pixels, help="largest image, width x height"
    )
    p.add_argument(
        "--concurrency", type=int, default=d.concurrency, help="requests processed at once (default: %(default)s)"
    )
    p.add_argument("--queue", type=int, default=d.queue, help="requests waiting beyond those; more get 503")
    p.add_argument(
        "--body-timeout",
        dest="body_timeout",
        type=float,
        default=d.body_timeout,
        help="seconds a client may take to send its body; beyond: 408 (default: %(default)s)",
    )
    p.add_argument("--max-batch", dest="max_batch", type=int, default=32, help="face crops per classifier call")
    p.add_argument(
        "--batch-wait-ms",
        dest="batch_wait_ms",
        type=float,
        default=5.0,
        help="how long a classifier call waits for other requests' crops (default: %(default)s ms)",
    )
    p.add_argument(
        "--detectors",
        type=int,
        default=1,
        help="face detectors working in parallel, one image each (default: %(default)s)",
    )
    p.add_argument("--log-level", dest="log_level", default="INFO")
    return p


def serve_parser(host_default: str = "127.0.0.1") -> argparse.ArgumentParser:
    """A parser of `fer-edge serve`'s flags alone (the Ray Serve deployment takes the same flags)."""
    parser = argparse.ArgumentParser(prog="fer-edge")
    p = add_parser(parser.add_subparsers())
    p.set_defaults(host=host_default)
    return p


def build_service(args: argparse.Namespace) -> tuple[Any, Any, str | None]:
    """(the ASGI app, its engine, the API key) of `fer-edge serve`'s flags: the one service that uvicorn runs
    here and that each Ray Serve replica runs (``ray_deployment``). Raises ServeConfigError when the flags
    would expose the service without a key (``auth.check_exposure``)."""
    from edge.version import __version__

    from ..run import pipeline_from_args
    from .app import build_app
    from .auth import ApiKeyCheck
    from .engine import EmotionEngine
    from .metrics import ServeMetrics

    key = load_api_key(args.api_key_file)
    check_exposure(args.host, key, args.behind_auth_proxy)
    limits = Limits(
        max_body=int(args.max_body_mb * MB),
        max_pixels=args.max_pixels,
        concurrency=args.concurrency,
        queue=args.queue,
        body_timeout=args.body_timeout,
    )
    pipeline = pipeline_from_args(args)  # the same flags and pipeline as `fer-edge image`
    metrics = ServeMetrics()
    engine = EmotionEngine(
        pipeline, metrics, limits.max_pixels, args.max_batch, args.batch_wait_ms / 1000.0, args.detectors
    )
    return build_app(engine, limits, metrics, ApiKeyCheck(key), __version__), engine, key


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print("fer-edge serve: error: needs the serve extra: pip install 'fer-edge[serve]'", file=sys.stderr)
        return 2

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app, engine, key = build_service(args)
    except ServeConfigError as exc:
        print("fer-edge serve: error: {}".format(exc), file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app, host=args.host, port=args.port, access_log=False, log_config=None, lifespan="off", server_header=False
    )
    server = uvicorn.Server(config)
    logging.getLogger(__name__).info(
        "fer-edge serve: model %s (%s), detector %s; API key %s",
        engine.model["id"],
        engine.model["runtime"],
        engine.model["detector"],
        "required" if key else ("not required (behind an authenticating proxy)" if args.behind_auth_proxy else "off"),
    )
    try:
        server.run()
    finally:
        engine.close()
    return 0
