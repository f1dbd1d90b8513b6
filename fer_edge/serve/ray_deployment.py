"""`fer-edge serve` as a Ray Serve application: the same service (``command.build_service``: the pipeline, the
batching engine, the Starlette app with its /v1/emotions contract, limits, metrics and API key rule) in each
replica, behind Ray Serve's HTTP proxies, its replicas placed and autoscaled by Ray over a cluster.

The application takes `fer-edge serve`'s own flags (``--model``, ``--detector``, ``--max-batch``,
``--api-key-file``, ...; ``--port`` is Ray's: ``http_options``). ``--host`` says where Ray's proxies listen and
defaults here to 0.0.0.0 (a cluster's proxies face the network), so without an API key or
``--behind-auth-proxy`` the application refuses to deploy, as `fer-edge serve --host 0.0.0.0` refuses to start.

    serve run fer_edge.serve.ray_deployment:build flags='--model fast --api-key-file /etc/fer-edge/api-key'
    serve deploy deploy/ray/serve.yaml            # replicas, autoscaling, resources: the config file

Each answer carries the replica that made it in ``x-fer-edge-replica``. ``/metrics`` is the answering
replica's own; Ray exports cluster-wide request metrics of its own (docs/serve.md).
"""

import argparse
import shlex
from typing import Any, Callable, Sequence

from starlette.applications import Starlette
from starlette.routing import Mount

from .auth import ServeConfigError, check_exposure, load_api_key

NAME = "fer-edge"
REPLICA_HEADER = "x-fer-edge-replica"
# What one replica asks of Ray: one CPU (its ONNX Runtime sessions use the node's cores; see docs/serve.md).
DEFAULT_ACTOR_OPTIONS = {"num_cpus": 1.0}
DEFAULT_AUTOSCALING = {"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 16}


def parse_flags(flags: str | Sequence[str]) -> argparse.Namespace:
    """`fer-edge serve`'s flags (a string split as a shell does, or a list), with ``--host`` 0.0.0.0 by default."""
    from .command import serve_parser

    words = shlex.split(flags) if isinstance(flags, str) else [str(f) for f in flags]
    try:
        return serve_parser(host_default="0.0.0.0").parse_args(words)
    except SystemExit:  # argparse printed what was wrong; a deployment raises instead of ending its process
        raise ServeConfigError("not `fer-edge serve` flags: {}".format(" ".join(words))) from None


def check_flags(flags: str | Sequence[str]) -> argparse.Namespace:
    """The parsed flags; raises ``auth.ServeConfigError`` (naming the fix) when they expose the service without a
    key. Checked where the application is built, so a bad config fails at deploy time, not in every replica."""
    args = parse_flags(flags)
    check_exposure(args.host, load_api_key(args.api_key_file), args.behind_auth_proxy)
    return args


class ReplicaHeader:
    """ASGI middleware: ``x-fer-edge-replica: ID`` on every HTTP answer."""

    def __init__(self, app: Any, replica: str):
        self.app = app
        self.header = (REPLICA_HEADER.encode("latin-1"), replica.encode("latin-1"))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers") or []) + [self.header])
            await send(message)

        await self.app(scope, receive, tagged)


def app_builder(flags: Sequence[str]) -> Callable[[], Any]:
    """The function each replica calls (``serve.ingress``) to build its own service from ``flags``."""
    words = list(flags)

    def build_replica_app() -> Any:
        from ray import serve

        from .command import build_service

        app, _engine, _key = build_service(parse_flags(words))
        # the engine's batching thread is a daemon: it ends with the replica's process
        tagged = ReplicaHeader(app, str(serve.get_replica_context().replica_id.unique_id))
        # Ray adds its own exception handlers to the ingress app: it must be a Starlette application
        return Starlette(routes=[Mount("/", app=tagged)])

    return build_replica_app


def application(
    flags: str | Sequence[str] = (),
    num_replicas: int | str | None = None,
    autoscaling_config: dict[str, Any] | None = None,
    ray_actor_options: dict[str, Any] | None = None,
) -> Any:
    """The Ray Serve application (``serve.run(application(...))``): ``num_replicas`` fixed replicas, or
    ``autoscaling_config`` (default ``DEFAULT_AUTOSCALING`` when neither is given)."""
    from ray import serve

    args = check_flags(flags)
    words = shlex.split(flags) if isinstance(flags, str) else [str(f) for f in flags]
    options: dict[str, Any] = {"ray_actor_options": dict(ray_actor_options or DEFAULT_ACTOR_OPTIONS)}
    if num_replicas is not None:
        options["num_replicas"] = num_replicas
    else:
        options["autoscaling_config"] = dict(autoscaling_config or DEFAULT_AUTOSCALING)
    # Ray hands a replica at most this many requests at once (its default, 5, would starve the batching): the
    # replica's own --concurrency and --queue decide, as in `fer-edge serve`; Ray queues the rest in its router
    options["max_ongoing_requests"] = max(1, args.concurrency + args.queue)

    class FerEdgeServe:
        """One replica: `fer-edge serve`'s service, built by ``app_builder`` in the replica's process."""

    deployment = serve.deployment(name=NAME)(serve.ingress(app_builder(words))(FerEdgeServe))
    return deployment.options(**options).bind()


def build(args: dict[str, Any]) -> Any:
    """Ray Serve's application builder (``import_path: fer_edge.serve.ray_deployment:build``): ``args`` holds
    ``flags`` (`fer-edge serve`'s flags as one string) and optionally ``num_replicas``; a config file's
    ``deployments`` section sets the replicas, autoscaling and resources instead."""
    replicas = args.get("num_replicas")
    return application(str(args.get("flags", "")), int(replicas) if replicas is not None else None)
