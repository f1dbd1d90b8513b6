"""`fer-edge bench serve`: `fer-edge serve` under 1, 8 and 32 concurrent clients, and the in-browser pipeline's
ms per frame in headless Chromium (``bench_browser``), in one run, on this machine.

Starts the service (a subprocess on a free loopback port, the given model), sends the same 640x480 image with
two faces (``fer_edge.samples.faces_frame``, JPEG) from each client in turn over its own keep-alive connection,
and reports requests/s, p50 and p95 latency, and how many requests shared a classifier call (from /metrics).
The clients run on the same machine as the service: they take some of its CPU.
"""

import concurrent.futures
import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator, Sequence

import numpy as np

from .broker import free_port

CLIENTS = (1, 8, 32)


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _batch_totals(port: int) -> tuple[float, float]:
    """(classifier calls, requests they served) so far."""
    text = _get(port, "/metrics")[1].decode()
    found = dict(re.findall(r"^fer_edge_serve_batch_requests_(sum|count) (\S+)$", text, re.M))
    return float(found.get("count", 0)), float(found.get("sum", 0))


def _client(port: int, body: bytes, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    out = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            conn.request("POST", "/v1/emotions", body, {"Content-Type": "image/jpeg"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError("bench serve: HTTP {}: {!r}".format(resp.status, data[:200]))
            out.append(time.perf_counter() - start)
    finally:
        conn.close()
    return out


def load_row(port: int, body: bytes, clients: int, per_client: int) -> dict[str, Any]:
    """``clients`` concurrent clients each sending ``body`` ``per_client`` times: requests/s, p50 and p95 ms
    (callers warm the service first)."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        latencies = [t for ts in pool.map(lambda _: _client(port, body, per_client), range(clients)) for t in ts]
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
    }


def _level(port: int, body: bytes, clients: int, per_client: int) -> dict[str, Any]:
    _client(port, body, 2)  # warm
    calls0, served0 = _batch_totals(port)
    row = load_row(port, body, clients, per_client)
    calls1, served1 = _batch_totals(port)
    row["requests_per_classifier_call"] = round((served1 - served0) / max(calls1 - calls0, 1), 2)
    return row


def run(
    model: str | None,
    requests: int = 240,
    clients: Sequence[int] = CLIENTS,
    serve_args: Sequence[str] = (),
    browser_frames: int = 20,
) -> dict[str, Any]:
    """The report: one row per client count; ``requests`` per row (at least 4 per client); ``serve_args``: more
    options of `fer-edge serve` (e.g. ``["--detectors", "2"]``); ``browser_frames``: frames the in-browser
    pipeline runs on the same image after the server's rows (0: none)."""
    body = sample_body()
    port = free_port()
    command = [sys.executable, "-m", "fer_edge", "serve", "--port", str(port), "--log-level", "WARNING"]
    if model:
        command += ["--model", model]
    command += list(serve_args)
    with started(command, port):
        faces = json.loads(_client_answer(port, body))["faces"]
        rows = [_level(port, body, n, max(4, requests // n)) for n in clients]
    report: dict[str, Any] = {"image": "640x480 JPEG, {} faces".format(len(faces)), "rows": rows}
    text = markdown(rows)
    if browser_frames:
        from . import bench_browser

        why_not = bench_browser.available()
        if why_not is None:
            report["browser"] = bench_browser.run(model, body, frames=browser_frames)
            text += "\n\n" + bench_browser.markdown(report["browser"])
        else:
            report["browser"] = {"skipped": why_not}
            text += "\n\nIn the browser: not measured ({})".format(why_not)
    report["markdown"] = text
    return report


def sample_body() -> bytes:
    """The benchmark's image: 640x480, two faces (``fer_edge.samples.faces_frame``), as JPEG."""
    import cv2

    from .samples import faces_frame

    ok, encoded = cv2.imencode(".jpg", faces_frame(640, 480, 2))
    if not ok:
        raise RuntimeError("bench serve: cannot encode the sample image as JPEG")
    return bytes(encoded.tobytes())


@contextlib.contextmanager
def started(command: Sequence[str], port: int, timeout: float = 120.0) -> Iterator[None]:
    """Runs ``command`` (a service on ``port``) until its /readyz answers 200; stops it on leaving."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError("bench serve: the service exited: " + log.read().decode()[-2000:])
                with contextlib.suppress(OSError):
                    if _get(port, "/readyz")[0] == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("bench serve: the service did not become ready in {:g} s".format(timeout))
                time.sleep(0.2)
            yield
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def _client_answer(port: int, body: bytes) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/v1/emotions", body, {"Content-Type": "image/jpeg"})
        return conn.getresponse().read()
    finally:
        conn.close()


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| clients | requests | requests/s | p50 ms | p95 ms | requests per classifier call |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            "| {clients} | {requests} | {requests_per_s} | {p50_ms} | {p95_ms} | "
            "{requests_per_classifier_call} |".format(**r)
        )
    return "\n".join(lines)
