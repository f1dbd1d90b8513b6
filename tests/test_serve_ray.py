"""`fer-edge serve` on Ray Serve, for real on this machine: a local Ray with 2 replicas of the deployment
(``fer_edge.serve.ray_deployment``, started by ``python -m fer_edge.serve.ray_local``) answers 16 concurrent
requests with the faces plain `fer-edge serve` gives for the same photo, and both replicas answered some.

Ray is ~0.5 GB and would move the dev venv's pins: it lives in .venv-ray (`make ray-venv`), and `make test-ray`
runs this file there; elsewhere it skips, saying so."""

import concurrent.futures
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import cv2
import pytest

pytest.importorskip(
    "ray.serve", reason="ray[serve] is not installed in this venv: `make ray-venv`, then `make test-ray`"
)

from fer_edge.broker import free_ports  # noqa: E402
from fer_edge.samples import astronaut_bgr  # noqa: E402
from fer_edge.serve.auth import ServeConfigError  # noqa: E402
from fer_edge.serve.ray_deployment import REPLICA_HEADER, check_flags, parse_flags  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
    finally:
        conn.close()


def start(command, port, env):
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, log, port


def wait_ready(proc, log, port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError("exited:\n" + log.read().decode("utf-8", "replace")[-4000:])
        with contextlib.suppress(OSError):
            if request(port, "GET", "/readyz")[0] == 200:
                return
        time.sleep(0.5)
    log.seek(0)
    raise AssertionError("not ready in {} s:\n{}".format(timeout, log.read().decode("utf-8", "replace")[-4000:]))


def stop(proc, log, timeout=60):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.seek(0)
    out = log.read().decode("utf-8", "replace")
    log.close()
    return out


@pytest.fixture(scope="module")
def services():
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = dict(os.environ, PYTHONPATH=REPO, RAY_TMPDIR=ray_tmp, RAY_USAGE_STATS_ENABLED="0")
    ray_port, plain_port = free_ports(2)
    ray_cmd = [sys.executable, "-m", "fer_edge.serve.ray_local", "--replicas", "2", "--port", str(ray_port)]
    plain_cmd = [sys.executable, "-m", "fer_edge", "serve", "--port", str(plain_port), "--log-level", "WARNING"]
    ray_service = start(ray_cmd, ray_port, env)
    plain = start(plain_cmd, plain_port, env)
    try:
        wait_ready(*plain, timeout=60)
        wait_ready(*ray_service, timeout=100)
        # Ray's proxy learns the running replicas asynchronously: probe until it routes to both
        seen, deadline = set(), time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.add(request(ray_port, "GET", "/healthz")[1].get(REPLICA_HEADER))
        assert len(seen) == 2, seen
        yield {"ray": ray_port, "plain": plain_port}
    finally:
        stop(plain[0], plain[1])
        out = stop(ray_service[0], ray_service[1])
        shutil.rmtree(ray_tmp, ignore_errors=True)
        print(out[-3000:])
        assert ray_service[0].returncode == 0, out[-3000:]


def test_two_ray_replicas_answer_16_concurrent_requests_as_fer_edge_serve_does(services):
    ok, buf = cv2.imencode(".jpg", astronaut_bgr())
    assert ok
    body = buf.tobytes()
    headers = {"Content-Type": "image/jpeg"}
    status, _, plain = request(services["plain"], "POST", "/v1/emotions", body, headers)
    assert status == 200
    expected = json.loads(plain)
    assert len(expected["faces"]) == 1 and expected["faces"][0]["emotion"] == "happiness"

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: request(services["ray"], "POST", "/v1/emotions", body, headers), range(16)))
    assert [a[0] for a in answers] == [200] * 16
    for _, _, data in answers:
        assert json.loads(data) == expected  # the same faces, boxes, scores and model
    replicas = {head[REPLICA_HEADER] for _, head, _ in answers}
    assert len(replicas) == 2, replicas


def test_the_contract_holds_through_ray_bad_input_and_probes(services):
    status, head, data = request(
        services["ray"], "POST", "/v1/emotions", b"not an image", {"Content-Type": "image/jpeg"}
    )
    assert status == 415 and json.loads(data)["error"]["code"] == "not_an_image"
    assert REPLICA_HEADER in head
    assert request(services["ray"], "GET", "/healthz")[0] == 200
    status, _, text = request(services["ray"], "GET", "/metrics")
    assert status == 200 and b"fer_edge_serve_requests_total" in text


def test_on_a_cluster_the_deployment_refuses_to_listen_without_a_key(monkeypatch):
    monkeypatch.delenv("FER_EDGE_API_KEY", raising=False)
    monkeypatch.delenv("FER_EDGE_API_KEY_FILE", raising=False)
    assert parse_flags("").host == "0.0.0.0"  # Ray's proxies face the network unless told otherwise
    with pytest.raises(ServeConfigError, match="API key"):
        check_flags("--model fast")
    assert check_flags("--behind-auth-proxy").behind_auth_proxy
    assert check_flags(["--host", "127.0.0.1"]).host == "127.0.0.1"
    with pytest.raises(ServeConfigError, match="not `fer-edge serve` flags"):
        parse_flags("--detector nonesuch")
    monkeypatch.setenv("FER_EDGE_API_KEY", "k3y-for-the-tests-0123456789")
    assert check_flags("--model fast").model == "fast"


def test_the_cluster_config_is_valid_for_ray_serve_and_builds(monkeypatch):
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from fer_edge.serve.ray_deployment import NAME, build

    with open(os.path.join(REPO, "deploy", "ray", "serve.yaml"), encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    schema = ServeDeploySchema.parse_obj(config)  # Ray Serve's own validation of a `serve deploy` file
    (app,) = schema.applications
    assert app.import_path == "fer_edge.serve.ray_deployment:build"
    assert [d.name for d in app.deployments] == [NAME]
    assert app.deployments[0].autoscaling_config["max_replicas"] > app.deployments[0].autoscaling_config["min_replicas"]
    monkeypatch.delenv("FER_EDGE_API_KEY", raising=False)
    monkeypatch.delenv("FER_EDGE_API_KEY_FILE", raising=False)
    with pytest.raises(ServeConfigError):  # without the secret the application does not deploy
        build(app.args)
    monkeypatch.setenv("FER_EDGE_API_KEY", "k3y-for-the-tests-0123456789")
    assert type(build(app.args)).__name__ == "Application"
