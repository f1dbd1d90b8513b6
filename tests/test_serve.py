"""`fer-edge serve`: the real server (uvicorn in a subprocess on a free port) under concurrent clients, every bad
input, the limits, the API key rule, and the same faces as `fer-edge image` (docs/serve.md)."""

import asyncio
import concurrent.futures
import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from fer_edge.broker import free_port  # noqa: E402
from fer_edge.samples import astronaut_bgr, faces_frame  # noqa: E402
from fer_edge.serve.batching import CropBatcher  # noqa: E402
from fer_edge.serve.decode import InputError, decode_image, image_size  # noqa: E402
from fer_edge.serve.limits import AdmissionGate, Busy, Limits  # noqa: E402
from fer_edge.serve.metrics import ServeMetrics  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "k3y-for-the-tests-0123456789"


class Server:
    """``fer-edge serve`` in a subprocess; ``request(...)`` -> (status, headers, body)."""

    def __init__(self, *args, env=None):
        self.port = free_port()
        self.log = tempfile.TemporaryFile()  # not a pipe: nobody reads it while the server runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fer_edge", "serve", "--port", str(self.port)] + list(args),
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=REPO, **(env or {})),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("fer-edge serve did not become ready")

    def request(self, method, path, body=None, headers=None, timeout=30.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
        finally:
            conn.close()

    def post_image(self, data, content_type="image/jpeg", headers=None):
        status, head, body = self.request(
            "POST", "/v1/emotions", data, dict({"Content-Type": content_type}, **(headers or {}))
        )
        return status, head, json.loads(body)

    def output(self):
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        out = self.output()
        self.log.close()
        return out


@pytest.fixture(scope="module")
def servers():
    key_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), "fer-edge-serve-key-{}".format(uuid.uuid4().hex))
    with open(key_file, "w") as handle:
        handle.write(KEY + "\n")
    os.chmod(key_file, 0o600)
    main = Server("--max-body-mb", "1", "--max-pixels", "2000000", "--detectors", "2")
    guarded = Server("--api-key-file", key_file, "--concurrency", "1", "--queue", "0", "--body-timeout", "2")
    try:
        yield {"main": main.wait_ready(), "guarded": guarded.wait_ready()}
    finally:
        logs = main.stop() + guarded.stop()
        os.unlink(key_file)
        assert KEY not in logs  # the key is never logged (nor are images: the log has no bodies)
        print(logs[-3000:])


def encode(image, ext=".jpg"):
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def metric(text, name):
    return dict(
        (labels, float(value)) for labels, value in re.findall(r"^{}(\{{[^}}]*\}})? (\S+)$".format(name), text, re.M)
    )


def test_same_faces_and_values_as_fer_edge_image(servers, tmp_path, capsys):
    from fer_edge.cli import main

    path = str(tmp_path / "astronaut.png")
    cv2.imwrite(path, astronaut_bgr())
    assert main(["image", path]) == 0
    expected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["faces"]
    assert expected
    with open(path, "rb") as handle:
        data = handle.read()
    status, _, got = servers["main"].post_image(data, "image/png")
    assert status == 200
    assert got["faces"] == expected
    assert got["model"]["labels"] and got["model"]["id"]
    # the multipart field `image` gives the same
    boundary = "fer-edge-test"
    body = (
        ('--{b}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n')
        .format(b=boundary)
        .encode()
        + data
        + "\r\n--{}--\r\n".format(boundary).encode()
    )
    status, _, got = servers["main"].post_image(body, "multipart/form-data; boundary=" + boundary)
    assert status == 200 and got["faces"] == expected


def test_32_concurrent_clients_all_answered_and_batched(servers):
    server = servers["main"]
    data = encode(faces_frame(640, 480, 2))
    before = metric(server.request("GET", "/metrics")[2].decode(), "fer_edge_serve_batch_requests_count")
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda _: server.post_image(data), range(96)))
    assert [a[0] for a in answers] == [200] * 96
    assert all(len(a[2]["faces"]) == 2 for a in answers)
    assert all(a[2]["faces"] == answers[0][2]["faces"] for a in answers)
    text = server.request("GET", "/metrics")[2].decode()
    calls = metric(text, "fer_edge_serve_batch_requests_count")[""] - before.get("", 0)
    assert 0 < calls < 96, "every request had its own classifier call: no batching"
    shared = metric(text, "fer_edge_serve_batch_requests_bucket")
    assert shared['{le="+Inf"}'] > shared['{le="1"}'], "no classifier call served two requests"
    assert metric(text, "fer_edge_serve_faces_total")[""] >= 192


@pytest.mark.parametrize(
    "name, body, content_type, status, code",
    [
        ("not an image", b"hello, this is text" * 10, "image/jpeg", 415, "not_an_image"),
        ("wrong type", b"\xff\xd8\xff\xe0 whatever", "text/plain", 415, "unsupported_media_type"),
        ("no type", b"\xff\xd8\xff\xe0 whatever", "", 415, "unsupported_media_type"),
        ("zero bytes", b"", "image/png", 400, "empty"),
        (
            "multipart without image",
            b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
            400,
            "missing_image",
        ),
        ("damaged header", b"\x89PNG\r\n\x1a\n\x00\x00", "image/png", 400, "unreadable"),
    ],
)
def test_bad_input_is_a_4xx_json_error_naming_it(servers, name, body, content_type, status, code):
    headers = {"Content-Type": content_type} if content_type else {}
    got_status, _, raw = servers["main"].request("POST", "/v1/emotions", body, headers)
    assert got_status == status, name
    error = json.loads(raw)["error"]
    assert error["code"] == code and error["message"]


def test_truncated_zero_size_too_large_and_too_many_pixels(servers):
    server = servers["main"]
    jpeg, png = encode(astronaut_bgr()), encode(astronaut_bgr(), ".png")
    for data, kind in ((jpeg[: len(jpeg) // 2], "image/jpeg"), (png[: len(png) - 30], "image/png")):
        status, _, got = server.post_image(data, kind)
        assert (status, got["error"]["code"]) == (400, "truncated")
    zero = bytearray(png)
    zero[16:20] = b"\x00\x00\x00\x00"  # IHDR width 0
    status, _, got = server.post_image(bytes(zero), "image/png")
    assert (status, got["error"]["code"]) == (400, "zero_size")
    status, _, got = server.post_image(os.urandom(1024 * 1024 + 1), "image/jpeg")  # --max-body-mb 1
    assert (status, got["error"]["code"]) == (413, "too_large")
    huge = bytearray(png)
    huge[16:24] = (40000).to_bytes(4, "big") * 2  # claims 40000x40000: refused before decoding
    status, _, got = server.post_image(bytes(huge), "image/png")
    assert (status, got["error"]["code"]) == (413, "too_many_pixels")
    status, _, got = server.post_image(encode(np.zeros((1500, 1500, 3), np.uint8)), "image/jpeg")
    assert (status, got["error"]["code"]) == (413, "too_many_pixels")  # --max-pixels 2000000
    status, _, got = server.post_image(encode(np.zeros((48, 64, 3), np.uint8), ".webp"), "image/webp")
    assert (status, got["faces"]) == (200, [])


def test_bad_requests_do_not_grow_memory(servers):
    server = servers["main"]
    bodies = [b"x" * 100, b"\xff\xd8\xff" + b"\x00" * 50, b"", b"\x89PNG\r\n\x1a\n"]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)

    def hammer(n):
        for i in range(n):
            conn.request("POST", "/v1/emotions", bodies[i % len(bodies)], {"Content-Type": "image/jpeg"})
            resp = conn.getresponse()
            resp.read()
            assert 400 <= resp.status < 500

    def rss_kb():
        with open("/proc/{}/status".format(server.proc.pid)) as handle:
            return int(re.search(r"VmRSS:\s+(\d+)", handle.read()).group(1))

    hammer(500)
    before = rss_kb()
    hammer(2000)
    conn.close()
    assert rss_kb() - before < 4096, "RSS grew by {} kB over 2000 bad requests".format(rss_kb() - before)


def test_health_metrics_and_openapi(servers):
    server = servers["main"]
    assert server.request("GET", "/healthz")[0] == 200
    assert server.request("GET", "/readyz")[0] == 200
    status, head, body = server.request("GET", "/metrics")
    assert status == 200 and head["content-type"].startswith("text/plain")
    text = body.decode()
    for name in ("requests_total", "request_seconds_bucket", "faces_total", "batch_crops_bucket", "refused_total"):
        assert "fer_edge_serve_" + name in text
    spec = json.loads(server.request("GET", "/openapi.json")[2])
    assert spec["openapi"].startswith("3.") and "/v1/emotions" in spec["paths"]
    status, _, body = server.request("GET", "/nowhere")
    assert status == 404 and json.loads(body)["error"]["code"] == "http_404"
    assert server.request("GET", "/v1/emotions")[0] == 405


def test_api_key_required_when_given(servers):
    server = servers["guarded"]
    data = encode(astronaut_bgr())
    status, head, got = server.post_image(data)
    assert status == 401 and got["error"]["code"] == "unauthorized" and "www-authenticate" in head
    assert server.post_image(data, headers={"Authorization": "Bearer " + KEY})[0] == 200
    assert server.post_image(data, headers={"X-API-Key": KEY})[0] == 200
    assert server.request("GET", "/metrics")[0] == 401
    assert server.request("GET", "/metrics", headers={"X-API-Key": KEY})[0] == 200
    assert server.request("GET", "/healthz")[0] == 200  # probes need no key


def test_beyond_loopback_without_key_refuses_to_start(capsys, monkeypatch):
    from fer_edge.cli import main

    monkeypatch.delenv("FER_EDGE_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "0.0.0.0" in err and "--api-key-file" in err and "--behind-auth-proxy" in err
    monkeypatch.setenv("FER_EDGE_API_KEY", "short")
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "at least" in capsys.readouterr().err


def test_queue_full_is_503_with_retry_after(servers):
    """--concurrency 1 --queue 0: a request still uploading holds the one slot; the next one is refused."""
    server = servers["guarded"]
    slow = socket.create_connection(("127.0.0.1", server.port))
    try:
        slow.sendall(
            "POST /v1/emotions HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nX-API-Key: {}\r\n"
            "Content-Length: 100000\r\n\r\n".format(KEY).encode()
            + b"\xff\xd8\xff"
            + b"\x00" * 1000
        )
        time.sleep(0.5)
        status, head, got = server.post_image(encode(astronaut_bgr()), headers={"X-API-Key": KEY})
        assert status == 503 and head["retry-after"] == "1" and got["error"]["code"] == "queue_full"
    finally:
        slow.close()
    time.sleep(0.2)
    text = server.request("GET", "/metrics", headers={"X-API-Key": KEY})[2].decode()
    assert metric(text, "fer_edge_serve_refused_total")['{reason="queue_full"}'] >= 1


def test_a_stalled_upload_is_408_and_frees_its_slot(servers):
    server = servers["guarded"]  # --body-timeout 2, --concurrency 1
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        slow.sendall(
            "POST /v1/emotions HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nX-API-Key: {}\r\n"
            "Content-Length: 5000\r\n\r\n\xff\xd8\xff".format(KEY).encode("latin-1")
        )
        start = time.monotonic()
        answer = slow.recv(4096).decode("latin-1")
        assert answer.startswith("HTTP/1.1 408"), answer
        elapsed = time.monotonic() - start
        while "body_timeout" not in answer:
            more = slow.recv(4096).decode("latin-1")
            assert more, answer
            answer += more
        assert 1.5 < elapsed < 8
    finally:
        slow.close()
    assert server.post_image(encode(astronaut_bgr()), headers={"X-API-Key": KEY})[0] == 200


# --- the parts, without a server ---------------------------------------------------------------


def test_gate_bounds_concurrency_and_queue():
    async def scenario():
        gate = AdmissionGate(Limits(concurrency=2, queue=1, queue_timeout=0.2))
        release = asyncio.Event()
        results = []

        async def one():
            try:
                async with gate:
                    await release.wait()
                results.append("ok")
            except Busy as busy:
                results.append(busy.reason)

        tasks = [asyncio.ensure_future(one()) for _ in range(4)]
        await asyncio.sleep(0.05)
        assert results == ["queue_full"]  # 2 active, 1 waiting, the 4th refused
        await asyncio.sleep(0.3)
        assert sorted(results) == ["queue_full", "queue_timeout"]
        release.set()
        await asyncio.gather(*tasks)
        assert sorted(results) == ["ok", "ok", "queue_full", "queue_timeout"]

    asyncio.run(scenario())


def test_batcher_shares_calls_and_gives_each_its_rows():
    calls = []

    def predict(crops):
        calls.append(len(crops))
        time.sleep(0.02)
        return np.array([[float(c[0, 0])] for c in crops])

    coming = [True]
    batcher = CropBatcher(predict, max_batch=8, max_wait=0.05, others_coming=lambda: coming[0])
    try:
        futures = [batcher.submit([np.full((2, 2), i, np.uint8)] * (1 + i % 2)) for i in range(6)]
        coming[0] = False
        rows = [f.result(timeout=5) for f in futures]
    finally:
        batcher.close()
    assert [r[:, 0].tolist() for r in rows] == [[float(i)] * (1 + i % 2) for i in range(6)]
    assert sum(calls) == 9 and len(calls) < 6


def test_decode_reads_sizes_from_headers():
    image = np.zeros((30, 50, 3), np.uint8)
    for ext, kind in ((".jpg", "jpeg"), (".png", "png"), (".webp", "webp")):
        assert image_size(encode(image, ext), kind) == (50, 30)
        assert decode_image(encode(image, ext), 10_000).shape == (30, 50, 3)
        with pytest.raises(InputError) as info:
            decode_image(encode(image, ext), 1000)
        assert info.value.code == "too_many_pixels"


def test_metrics_text_is_prometheus():
    metrics = ServeMetrics()
    metrics.request("/v1/emotions", 200, 0.02)
    metrics.batch(3, 2)
    text = metrics.text()
    assert 'fer_edge_serve_requests_total{route="/v1/emotions",status="200"} 1' in text
    assert 'fer_edge_serve_batch_crops_bucket{le="4"} 1' in text
    assert 'fer_edge_serve_batch_requests_bucket{le="1"} 0' in text
    assert io.StringIO(text).read().endswith("\n")


def test_bench_serve_measures_each_client_count():
    from fer_edge import bench_serve

    report = bench_serve.run(None, requests=8, clients=(1, 4), browser_frames=0)  # the browser's: test_web.py
    assert report["image"].endswith("2 faces")
    assert [r["clients"] for r in report["rows"]] == [1, 4]
    for row in report["rows"]:
        assert (
            row["requests"] == max(4, 8 // row["clients"]) * row["clients"]
            and row["requests_per_s"] > 0
            and row["p95_ms"] >= row["p50_ms"] > 0
        )
        assert row["requests_per_classifier_call"] >= 1
    assert report["markdown"].count("\n") == 3
