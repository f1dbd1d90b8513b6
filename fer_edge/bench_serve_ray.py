"""`fer-edge bench serve --ray`: plain `fer-edge serve` and Ray Serve with 1 and 2 replicas, side by side in one run.

Each service in turn (a subprocess on a free loopback port, the same model) gets ``clients`` concurrent clients
(default 8) sending the benchmark image (``bench_serve.sample_body``: 640x480 JPEG, two faces) over keep-alive
connections. Ray runs locally (``python -m fer_edge.serve.ray_local``) in the interpreter ``ray_python`` (an
interpreter with ray[serve], by default this one if it has it, else .venv-ray's: `make ray-venv`). The clients,
the services and Ray's own processes share this machine's CPU: on a small machine replicas compete with each
other for the same cores, so the table measures Ray's overhead more than its scaling.
"""

import importlib.util
import json
import os
import sys
from typing import Any, Sequence

from .bench_serve import _client, _client_answer, load_row, sample_body, started
from .broker import free_port

RAY_VENV_PYTHON = os.path.join(".venv-ray", "bin", "python")


def ray_interpreter(ray_python: str | None = None) -> str:
    """The interpreter that runs Ray Serve: ``ray_python``, else this one if it has ray[serve], else .venv-ray's."""
    if ray_python:
        return ray_python
    if importlib.util.find_spec("ray") is not None:
        return sys.executable
    if os.path.exists(RAY_VENV_PYTHON):
        return os.path.abspath(RAY_VENV_PYTHON)
    raise RuntimeError("bench serve --ray: ray[serve] is not installed here: `make ray-venv` (or --ray-python)")


def _measure(port: int, body: bytes, clients: int, per_client: int) -> dict[str, Any]:
    _client(port, body, 2)  # warm every replica's first call a little
    load = os.getloadavg()[0]  # the machine's 1-minute load average as the row starts: others' work included
    row = load_row(port, body, clients, per_client)
    row["load_average"] = round(load, 1)
    return row


def run(
    model: str | None,
    requests: int = 160,
    clients: int = 8,
    replicas: Sequence[int] = (1, 2),
    ray_python: str | None = None,
) -> dict[str, Any]:
    """The report: one row for `fer-edge serve`, one per Ray replica count; ``requests`` per row."""
    body = sample_body()
    per_client = max(4, requests // clients)
    model_flags = ["--model", model] if model else []
    rows, faces = [], None
    port = free_port()
    plain = [sys.executable, "-m", "fer_edge", "serve", "--port", str(port), "--log-level", "WARNING"] + model_flags
    with started(plain, port):
        faces = json.loads(_client_answer(port, body))["faces"]
        rows.append(dict(service="fer-edge serve", **_measure(port, body, clients, per_client)))
    python = ray_interpreter(ray_python)
    for n in replicas:
        port = free_port()
        command = [python, "-m", "fer_edge.serve.ray_local", "--replicas", str(n), "--port", str(port), "--"]
        with started(command + model_flags + ["--log-level", "WARNING"], port, timeout=240):
            answer = json.loads(_client_answer(port, body))["faces"]
            if answer != faces:
                raise RuntimeError("bench serve --ray: Ray's answer differs from fer-edge serve's")
            rows.append(
                dict(
                    service="Ray Serve, {} replica{}".format(n, "s" if n > 1 else ""),
                    **_measure(port, body, clients, per_client),
                )
            )
    return {
        "image": "640x480 JPEG, {} faces".format(len(faces or [])),
        "cpus": os.cpu_count(),
        "rows": rows,
        "markdown": markdown(rows),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| service | clients | requests | requests/s | p50 ms | p95 ms | load average |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            "| {service} | {clients} | {requests} | {requests_per_s} | {p50_ms} | {p95_ms} | {load_average} |".format(
                **r
            )
        )
    return "\n".join(lines)
