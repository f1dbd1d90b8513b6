"""The Dockerfile, tested as far as a machine without a Docker engine allows (docs/serve.md#the-container).

Read: the COPY sources exist in the build context .dockerignore leaves, which keeps data/, runs/, build/ and
the venvs out and only the ONNX models of models/ in; the CMD is a `fer-edge serve` command the CLI's parser
accepts, on the EXPOSEd port and the HEALTHCHECK's; a non-root USER; base images pinned by version.

Run (``test_the_recipe_builds_installs_and_serves``, ~1 min, pip's cache warm): the build context staged as
Docker would send it; the wheel stage's `pip wheel` line run in it; the service stage's `pip install` line,
exactly, into a fresh venv, first resolved with ``--dry-run --report`` (the slim dependency set: no TensorFlow,
no training or conversion tools), then installed; the CMD run from that venv (not this checkout): without a
key it refuses to start; with ``$FER_EDGE_API_KEY_FILE`` the HEALTHCHECK command passes and a POST gives the
faces the pipeline gives here. What it cannot check: the base images themselves (not pulled here).
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
import zipfile

import cv2
import pytest

import container_recipe as recipe
from edge.classifier import NAMED_MODELS
from edge.detect.factory import NEURAL
from fer_edge.broker import free_port
from fer_edge.cli import build_parser
from fer_edge.samples import astronaut_bgr

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILE = os.path.join(REPO, "Dockerfile")
KEY = "k3y-for-the-container-test-0123"
# What the image may install: the core (numpy, OpenCV, paho-mqtt, ONNX Runtime) and the serve extra, with
# their dependencies (ONNX Runtime's across its versions). Anything else is a leak from another extra.
SLIM = {
    "fer-edge", "numpy", "opencv-python-headless", "paho-mqtt", "onnxruntime", "flatbuffers", "packaging",
    "protobuf", "sympy", "mpmath", "coloredlogs", "humanfriendly", "starlette", "anyio", "idna", "sniffio",
    "exceptiongroup", "typing-extensions", "uvicorn", "click", "h11", "python-multipart",
}  # fmt: skip
REQUIRED = {"fer-edge", "numpy", "opencv-python-headless", "onnxruntime", "starlette", "uvicorn", "python-multipart"}


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def steps():
    return recipe.instructions(DOCKERFILE)


def stage(steps, name, keyword):
    return [text for s, k, text in steps if s == name and k == keyword]


def final_stage(steps):
    return steps[-1][0]


def test_copy_sources_exist_in_the_context_dockerignore_leaves(tmp_path, steps):
    rules = recipe.patterns(os.path.join(REPO, ".dockerignore"))
    kept = recipe.stage_context(REPO, str(tmp_path), rules)
    stages = {s for s, k, _ in steps if k == "FROM"}
    copies = [text for _, k, text in steps if k == "COPY"]
    assert copies
    for text in copies:
        source_stage, sources, _ = recipe.copy_sources(text)
        if source_stage is not None:
            assert source_stage in stages, text
            continue
        for source in sources:
            assert any(k == source or k.startswith(source + "/") for k in kept), "{}: not in the context".format(source)
    # the context: sources and the shipped ONNX models; no data, runs, builds, venvs, SavedModels or OpenVINO files
    for left_out in ("data/ferplus.npz", "runs/x/config.json", "build/site/index.html", ".venv/bin/python"):
        assert recipe.ignored(left_out, rules), left_out
    assert not any(k.split("/")[0] in ("data", "runs", "build", "tests", "docs", ".git") for k in kept)
    assert not any(k.startswith(".venv") for k in kept)
    models = [k for k in kept if k.startswith("models/")]
    # every shipped model by name (the classifiers and the neural detectors), none beside them
    shipped = set(NAMED_MODELS.values()) | set(NEURAL.values())
    assert {k for k in models if k.endswith(".onnx")} == {"models/{}/onnx/model.onnx".format(m) for m in shipped}
    assert not any("/saved_model/" in k or "/openvino/" in k or "/eval" in k for k in models)


def test_cmd_is_fer_edge_serve_on_the_exposed_port_with_a_healthcheck_and_no_root(steps):
    final = final_stage(steps)
    assert final == "serve"  # `docker build .` builds the service
    (cmd,) = stage(steps, final, "CMD")
    argv = recipe.exec_form(cmd)
    assert argv[0] == "fer-edge"  # [project.scripts]
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert not args.behind_auth_proxy and args.api_key_file is None  # the key rule applies: safe by default
    (expose,) = stage(steps, final, "EXPOSE")
    assert int(expose.split("/")[0]) == args.port
    (health,) = stage(steps, final, "HEALTHCHECK")
    assert "http://127.0.0.1:{}/healthz".format(args.port) in " ".join(recipe.exec_form(health))
    (user,) = stage(steps, final, "USER")
    assert user.split(":")[0] not in ("root", "0")
    for _, keyword, text in steps:
        if keyword == "FROM":
            image = text.split()[0]
            assert re.search(r":\d+\.\d+\.\d+", image), "{} is not pinned to a version".format(image)
    (install,) = [t for t in stage(steps, final, "RUN") if "pip install" in t]
    assert re.search(r"\[serve\]", install)  # the serve extra only


def shell(line, cwd, venv, timeout=300, env=None):
    """A Dockerfile RUN line, in bash, with the fresh venv's pip and python first on PATH."""
    env = dict(env or os.environ, PATH=os.path.join(venv, "bin") + os.pathsep + os.environ["PATH"])
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, "{}\n{}".format(line, (done.stdout + done.stderr)[-3000:])
    return done


def test_the_recipe_builds_installs_and_serves(tmp_path, steps, capsys):
    rules = recipe.patterns(os.path.join(REPO, ".dockerignore"))
    context, src, venv, wheels = (str(tmp_path / n) for n in ("context", "src", "venv", "wheels"))
    recipe.stage_context(REPO, context, rules)
    base = sys.base_prefix
    subprocess.run([os.path.join(base, "bin", "python3"), "-m", "venv", venv], check=True, timeout=120)

    # the wheel stage: its COPY lines into /src, then its RUN line there
    os.makedirs(src)
    for text in stage(steps, "wheel", "COPY"):
        _, sources, dest = recipe.copy_sources(text)
        for source in sources:
            target = os.path.join(src, dest, source) if dest.endswith("/") else os.path.join(src, dest)
            path = os.path.join(context, source)
            subprocess.run(["cp", "-r", path, target], check=True)
    (wheel_line,) = stage(steps, "wheel", "RUN")
    shell(wheel_line.replace("/wheels", wheels), src, venv)
    (wheel,) = os.listdir(wheels)
    with zipfile.ZipFile(os.path.join(wheels, wheel)) as whl:
        names = whl.namelist()
    assert "edge/models/ferplus-vgg13bn-balanced-48/onnx/model.onnx" in names  # the default model
    assert "edge/models/blazeface-back-256/onnx/model.onnx" in names
    assert not [n for n in names if "/openvino/" in n or "saved_model" in n]

    # the service stage's pip line: the slim dependency set, then installed for real
    (install,) = [t for t in stage(steps, "serve", "RUN") if "pip install" in t]
    install = install.replace("/wheels", wheels)
    (pip_part,) = [p.strip() for p in install.split("&&") if p.strip().startswith("pip install")]
    report = str(tmp_path / "report.json")
    shell(pip_part + " --dry-run --quiet --report " + shlex.quote(report), str(tmp_path), venv)
    with open(report, encoding="utf-8") as handle:
        resolved = {norm(item["metadata"]["name"]) for item in json.load(handle)["install"]}
    assert REQUIRED <= resolved, REQUIRED - resolved
    assert resolved <= SLIM, "beyond the core and serve extra: {}".format(sorted(resolved - SLIM))
    shell(install, str(tmp_path), venv)
    where = shell("python -c 'import fer_edge; print(fer_edge.__file__)'", str(tmp_path), venv).stdout
    assert where.startswith(venv), where  # the installed wheel, not this checkout

    # the CMD, from that venv
    port = free_port()
    (cmd,) = stage(steps, "serve", "CMD")
    argv = recipe.exec_form(cmd)
    argv[argv.index("--port") + 1] = str(port)
    env = dict(os.environ, PATH=os.path.join(venv, "bin") + os.pathsep + os.environ["PATH"])
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "FER_EDGE_API_KEY", "FER_EDGE_API_KEY_FILE"):
        env.pop(name, None)
    refused = subprocess.run(argv, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "API key" in refused.stderr, refused.stderr[-2000:]

    key_file = tmp_path / "api-key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    env["FER_EDGE_API_KEY_FILE"] = str(key_file)
    log = open(str(tmp_path / "serve.log"), "w+")
    proc = subprocess.Popen(argv, cwd=str(tmp_path), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        (health,) = stage(steps, "serve", "HEALTHCHECK")
        probe = [a.replace(":8000/", ":{}/".format(port)) for a in recipe.exec_form(health)]
        deadline = time.monotonic() + 90
        while subprocess.run(probe, cwd=str(tmp_path), env=env, capture_output=True, timeout=30).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, open(log.name).read()[-3000:]
            time.sleep(0.5)
        ok, buf = cv2.imencode(".jpg", astronaut_bgr())
        assert ok
        post = urllib.request.Request(
            "http://127.0.0.1:{}/v1/emotions".format(port),
            data=buf.tobytes(),
            headers={"Content-Type": "image/jpeg", "Authorization": "Bearer " + KEY},
        )
        with urllib.request.urlopen(post, timeout=60) as resp:
            assert resp.status == 200
            got = json.loads(resp.read())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    from fer_edge.cli import main

    photo = str(tmp_path / "astronaut.jpg")
    with open(photo, "wb") as handle:
        handle.write(buf.tobytes())
    assert main(["image", photo]) == 0  # `fer-edge image` here, on the same JPEG
    expected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["faces"]
    assert expected
    assert [f["box"] for f in got["faces"]] == [f["box"] for f in expected]
    assert [f["emotion"] for f in got["faces"]] == [f["emotion"] for f in expected]
    for g, e in zip(got["faces"], expected):
        assert g["scores"] == pytest.approx(e["scores"], abs=1e-3)  # other OpenCV / ONNX Runtime builds may differ


def test_the_kubernetes_manifests_match_the_image_and_the_ray_config(steps):
    import yaml

    final = final_stage(steps)
    (user,) = stage(steps, final, "USER")
    (expose,) = stage(steps, final, "EXPOSE")
    with open(os.path.join(REPO, "deploy", "kubernetes", "fer-edge.yaml"), encoding="utf-8") as handle:
        docs = {d["kind"]: d for d in yaml.safe_load_all(handle)}
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(user) and pod["securityContext"]["runAsNonRoot"]
    (container,) = pod["containers"]
    assert container["ports"][0]["containerPort"] == int(expose)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert os.path.dirname(env["FER_EDGE_API_KEY_FILE"]) == mounts["api-key"]  # the key: a mounted secret
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    # KubeRay's RayService carries deploy/ray/serve.yaml as its Serve config, unchanged
    with open(os.path.join(REPO, "deploy", "kubernetes", "rayservice.yaml"), encoding="utf-8") as handle:
        ray_service = yaml.safe_load(handle)
    with open(os.path.join(REPO, "deploy", "ray", "serve.yaml"), encoding="utf-8") as handle:
        assert yaml.safe_load(ray_service["spec"]["serveConfigV2"]) == yaml.safe_load(handle)
    (ray_from,) = stage(steps, "ray", "FROM")  # the cluster's Ray is the image's
    assert ":{}-".format(ray_service["spec"]["rayClusterConfig"]["rayVersion"]) in ray_from.split()[0]
