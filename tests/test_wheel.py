"""The package as users install it: a wheel built from this checkout, installed (not editable) into a
fresh venv, runs `fer-edge image` and `fer-edge run` from another folder with the shipped models, and
puts no generic `train` or `convert` into site-packages (setup.py says how the wheel is laid out)."""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def _setup_module():
    spec = importlib.util.spec_from_file_location("fer_edge_setup", str(REPO / "setup.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # setup() runs only under __main__
    return module


def test_namespaced_rewrites_host_imports_and_converter_names_only():
    namespaced = _setup_module().namespaced
    source = (
        "import os\nfrom train.dataset import read_source\nimport convert.parity as parity\n"
        "    from convert import parity\nimport train, json\n"
        'CONVERTER = "convert.onnx_export:export_onnx"\nCOMMANDS = ("train", "convert")\n'
        "from fer_edge.train import x\nfrom retrain.x import y\nfrom edge.detect import ssd\n"
    )
    out = namespaced(source)
    assert "from fer_edge.train.dataset import read_source" in out
    assert "import fer_edge.convert.parity as parity" in out
    assert "    from fer_edge.convert import parity" in out
    assert "import fer_edge.train, json" in out
    assert '"fer_edge.convert.onnx_export:export_onnx"' in out
    assert 'COMMANDS = ("train", "convert")' in out  # words, not modules
    assert "from fer_edge.train import x" in out and "fer_edge.fer_edge" not in out
    assert "from retrain.x import y" in out and "from edge.detect import ssd" in out


def _clean_copy(dest):
    """The files a fresh clone has (tracked, plus new files git does not ignore), copied to ``dest``:
    the wheel is built from those only, never from build outputs or caches of this checkout."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=str(REPO),
            capture_output=True,
            check=True,
        )
        .stdout.decode("utf-8")
        .split("\0")
    )
    for rel in filter(None, listed):
        source = REPO / rel
        if source.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(str(source), str(target))
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    source = _clean_copy(tmp_path_factory.mktemp("checkout"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("fer_edge-*.whl")
    return path


def test_wheel_layout_has_one_namespace_for_host_code_and_the_shipped_models(wheel):
    names = zipfile.ZipFile(str(wheel)).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"fer_edge", "edge", "jetson", "deeplens"}, top
    assert "fer_edge/train/dataset.py" in names and "fer_edge/convert/onnx_export.py" in names
    for model in (
        "ferplus-vgg13bn-48",
        "ferplus-vgg13bn-third-48",
        "ferplus-vgg13bn-third-balanced-48",
        "ferplus-vgg13bn-balanced-48",
        "blazeface-back-256",
        "blazeface-short-128",
    ):
        assert "edge/models/{}/onnx/model.onnx".format(model) in names
    assert "edge/models/blazeface-back-256/openvino/model.xml" in names
    assert not [n for n in names if "saved_model" in n], "SavedModels stay in the repository"
    assert "edge/events/schema/emotion-event.schema.json" in names
    assert "fer_edge/bundles/jetson_templates/install.sh" in names
    # the page and its modules; onnxruntime-web joins them when `make web-vendor` ran before the build
    for rel in ("index.html", "page.css", "js/app.js", "js/imaging.js", "js/detect.js"):
        assert "fer_edge/web/static/" + rel in names, rel


def test_wheel_in_a_fresh_venv_runs_image_and_run_from_any_folder(wheel, tmp_path):
    import cv2

    from fer_edge.samples import astronaut_bgr, make_sample_video

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    photo, video = tmp_path / "photo.jpg", tmp_path / "video.mp4"
    cv2.imwrite(str(photo), astronaut_bgr())
    make_sample_video(str(video), frames=30)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict((k, v) for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV"))
    exe = str(venv / "bin" / "fer-edge")
    image = subprocess.run(
        [exe, "image", str(photo)], cwd=str(elsewhere), env=env, capture_output=True, text=True, timeout=300
    )
    assert image.returncode == 0, image.stderr
    faces = json.loads(image.stdout.strip().splitlines()[-1])["faces"]
    assert faces and all(f["emotion"] for f in faces)
    run = subprocess.run(
        [exe, "run", "--source", str(video), "--log-level", "WARNING"],
        cwd=str(elsewhere),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])["summary"]
    assert summary["frames"] == 30 and summary["faces"] >= 30
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import edge.shipped, importlib.util as u; print(edge.shipped.MODELS_DIR); "
            "print(u.find_spec('train'), u.find_spec('convert'))",
        ],
        cwd=str(elsewhere),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    models_dir, specs = where.stdout.strip().splitlines()
    assert str(venv) in models_dir and specs == "None None"
