"""Neural face detection: SSD decoding and NMS, the shipped BlazeFace artifacts on ONNX Runtime
and OpenVINO, tiling, FER-framed crops, the one format table, and bad detector input."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from edge import metadata as md
from edge.backends import BackendError, artifact_metadata
from edge.config.agent import ConfigError, load_config
from edge.detect import ssd
from edge.detect.crops import CropMapping, Detection, eye_angle, face_crop
from edge.detect.factory import DEFAULT_DETECTOR, NEURAL, DetectorError, make_detector, shipped_detector_path
from fer_testdata import REPO


def astronaut():
    from fer_edge.scenes import astronaut_scene

    return astronaut_scene()


def box_iou(a, b):
    from fer_edge.bench_detect import box_iou as iou

    return iou(a, b)


# ---------------------------------------------------------------- decoding (pure numpy)


def test_ssd_anchors_match_the_models_and_mediapipe_layout():
    for name in NEURAL:
        if not os.path.isfile(shipped_detector_path(name)):
            continue
        meta = artifact_metadata(shipped_detector_path(name))
        anchors = ssd.ssd_anchors(meta["detector"]["anchors"])
        assert len(anchors) == meta["detector"]["num_anchors"] == 896
        assert anchors.min() > 0 and anchors.max() < 1
    opts = {
        "num_layers": 4,
        "strides": [8, 16, 16, 16],
        "input_size_height": 128,
        "input_size_width": 128,
        "anchor_offset_x": 0.5,
        "anchor_offset_y": 0.5,
        "interpolated_scale_aspect_ratio": 1.0,
    }
    a = ssd.ssd_anchors(opts)
    # stride 8: 16x16 cells x 2 anchors, x fastest; then stride 16: 8x8 cells x 6 anchors
    assert a[0].tolist() == a[1].tolist() == [1 / 32.0, 1 / 32.0]
    assert a[2].tolist() == [3 / 32.0, 1 / 32.0]
    assert a[512].tolist() == [1 / 16.0, 1 / 16.0] and len(a) == 512 + 384


def test_decode_puts_boxes_and_keypoints_around_their_anchor():
    anchors = np.array([[0.5, 0.5], [0.25, 0.75]], np.float32)
    raw = np.zeros((2, 16), np.float32)
    raw[0, :4] = [12.8, 0.0, 25.6, 51.2]  # centre moved right by 0.1, w 0.2, h 0.4 (box_scale 128)
    raw[1, 4:6] = [-12.8, 12.8]  # first keypoint 0.1 left and down of the anchor
    boxes, points = ssd.decode(raw, anchors, 128.0)
    np.testing.assert_allclose(boxes[0], [0.5, 0.3, 0.7, 0.7], atol=1e-6)
    np.testing.assert_allclose(points[1, 0], [0.15, 0.85], atol=1e-6)
    assert points.shape == (2, 6, 2)


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.6, 0.8], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    out, out_scores, _ = ssd.weighted_nms(boxes, scores, points, 0.3)
    assert len(out) == 2 and out_scores.tolist() == pytest.approx([0.9, 0.8])
    np.testing.assert_allclose(out[0], (0.9 * boxes[0] + 0.6 * boxes[1]) / 1.5, atol=1e-5)
    # a face cut by a tile edge (mostly inside a larger box) is dropped by the cross-tile merge
    boxes = np.array([[0, 0, 100, 100], [55, 10, 100, 90]], np.float32)
    kept, _, _ = ssd.merge_tiles(boxes, np.array([0.7, 0.9], np.float32), np.zeros((2, 6, 2), np.float32), 0.3)
    assert kept.tolist() == [[0, 0, 100, 100]]


# ---------------------------------------------------------------- the shipped artifacts


@pytest.mark.parametrize("name", ["blazeface-back", "blazeface-short"])
def test_shipped_detector_finds_the_astronaut_on_both_runtimes(name):
    if not os.path.isfile(shipped_detector_path(name)):
        pytest.skip("{} is not shipped (python -m convert.detector_export --model ...)".format(name))
    scene = astronaut()
    truth = scene.faces[0].box
    found = {}
    for runtime, suffix in (("onnxruntime", ".onnx"), ("openvino", ".xml")):
        det = make_detector(name, runtime=runtime, model=shipped_detector_path(name, suffix))
        faces = det.detect(scene.image)
        assert len(faces) == 1, (runtime, faces)
        assert box_iou(faces[0].box, truth) > 0.5
        assert faces[0].score > 0.7 and len(faces[0].keypoints) == 6
        found[runtime] = faces[0]
    a, b = found["onnxruntime"], found["openvino"]
    assert max(abs(u - v) for u, v in zip(a.box, b.box)) <= 1  # the IR agrees with the ONNX
    assert abs(a.score - b.score) < 0.01


def test_default_detector_is_neural_and_finds_faces_in_gray_and_small_images():
    det = make_detector()
    assert det.name == NEURAL[DEFAULT_DETECTOR] and det.runtime == "onnxruntime"
    image = astronaut().image
    assert len(det.detect(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))) == 1
    assert det.detect(np.zeros((480, 640, 3), np.uint8)) == []
    small = cv2.resize(image, (64, 64))  # the face is under min_face: skipped
    assert make_detector(min_size=60).detect(small) == []


def test_every_detector_is_a_face_detector_and_only_neural_ones_tile():
    from edge.agent.assembly import camera_detector
    from edge.detect.base import DetectorConfigError, FaceDetector

    neural, haar = make_detector(), make_detector("haar")
    assert isinstance(neural, FaceDetector) and isinstance(haar, FaceDetector)
    assert haar.runtime == "opencv" and haar.tiles is None and neural.tiles == "auto"
    assert camera_detector(haar, {"detector_tiles": "2x1"}) is haar  # Haar does not tile: the option is ignored
    with pytest.raises(DetectorConfigError, match="does not cut frames into tiles"):
        haar.with_tiles((2, 1))
    assert neural.with_tiles("auto") is neural and neural.with_tiles((2, 1)).backend is neural.backend


def test_tiles_find_small_faces_that_the_whole_frame_misses():
    face = cv2.resize(astronaut().image[40:220, 150:310], (60, 68))
    frame = np.full((720, 1280, 3), 60, np.uint8)
    spots = [(100, 100), (700, 150), (300, 500), (1100, 600)]
    for x, y in spots:
        frame[y : y + 68, x : x + 60] = face
    whole = make_detector(tiles="1x1").detect(frame)
    for tiles in ("4x2", "auto"):  # the default picks its tiles from the frame size and min_face
        tiled = make_detector(tiles=tiles).detect(frame)
        assert len(tiled) >= 3 > len(whole), tiles
        for i, a in enumerate(tiled):  # one box per face after the cross-tile merge
            assert all(box_iou(a.box, b.box) < 0.3 for b in tiled[i + 1 :])


def test_crop_is_framed_like_fer_and_levelled_by_the_eyes():
    mapping = CropMapping(1.2, 0.0, -0.1)
    cx, cy, side, angle = mapping.region((100, 100, 50, 50))
    assert (cx, cy, side, angle) == (125.0, 120.0, 60.0, 0.0)
    image = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    crop = face_crop(image, Detection((100, 100, 50, 50), 1.0, (cx, cy, side, 0.0)))
    assert np.array_equal(crop, image[90:150, 95:155])  # inside the frame: a plain slice
    edge = face_crop(image, Detection((0, 0, 50, 50), 1.0, (10.0, 10.0, 40.0, 0.0)))
    assert edge.shape[:2] == (40, 40)  # leaves the frame: padded with the edge pixels, still square
    # a head rolled by 20 degrees: the crop levels its eyes again
    det = make_detector()
    scene = astronaut().image
    rotation = cv2.getRotationMatrix2D((256, 200), 20, 1.0)
    rolled = cv2.warpAffine(scene, rotation, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    face = det.detect(rolled)[0]
    assert abs(abs(eye_angle(face.keypoints)) - 20) < 6
    levelled = face_crop(rolled, face)
    again = det.detect(cv2.copyMakeBorder(levelled, 60, 60, 60, 60, cv2.BORDER_REPLICATE))
    assert len(again) == 1 and abs(eye_angle(again[0].keypoints)) < 6
    assert make_detector(align=False).detect(rolled)[0].crop[3] == 0.0


def test_shipped_crop_mapping_is_the_measured_one():
    with open(os.path.join(REPO, "models", "crop_mapping.json")) as f:
        measured = json.load(f)["models"]
    for name, folder in NEURAL.items():
        path = shipped_detector_path(name)
        if os.path.isfile(path):
            crop = artifact_metadata(path)["detector"]["crop"]
            assert crop == measured[folder]["crop"]
            assert 1.1 < crop["scale"] < 1.35 and crop["shift_y"] < 0  # FER crops: larger, centred above


# ---------------------------------------------------------------- one table, one reader


def test_one_format_table_drives_converters_and_backends():
    from convert.formats import converter
    from edge import formats

    for fmt in formats.FORMATS:
        assert callable(converter(fmt.name))
        for name in fmt.runtimes:
            assert formats.runtime(name).name == name
    assert formats.suffixes_of("openvino") == (".onnx", ".xml")
    assert formats.suffixes_of("awscam") == (".xml", ".tar.gz")
    for row in formats.RUNTIMES:
        module, _, cls = row.backend.partition(":")
        source = open(os.path.join(REPO, *module.split("."))[:] + ".py").read()
        assert "class {}(".format(cls) in source and "suffixes" not in source


def test_a_backend_implements_run_and_infer_is_its_first_output():
    from edge.backends.base import Backend

    class Incomplete(Backend):
        name = "incomplete"

    with pytest.raises(TypeError):
        Incomplete("model.x", {})  # neither run nor infer: refused, not an endless recursion

    class TwoOutputs(Backend):
        name = "two"

        def run(self, batch):
            return [batch + 1, batch + 2]

    assert TwoOutputs("model.x", {}).infer(np.zeros(2)).tolist() == [1.0, 1.0]


# ---------------------------------------------------------------- bad input


def test_wrong_kind_of_model_is_refused_naming_the_file():
    from edge.classifier import SHIPPED_MODEL, load_classifier

    detector = shipped_detector_path(DEFAULT_DETECTOR)
    with pytest.raises(BackendError, match="this is a face detector, not an emotion classifier") as err:
        load_classifier(detector)
    assert detector in str(err.value) and "detector_model" in str(err.value)
    with pytest.raises(DetectorError, match="this is an emotion classifier, not a face detector") as err:
        make_detector(model=SHIPPED_MODEL)
    assert SHIPPED_MODEL in str(err.value)


def test_missing_corrupt_or_truncated_detector_files_name_the_file(tmp_path):
    with pytest.raises(DetectorError, match="detector model not found"):
        make_detector(model=str(tmp_path / "nope.onnx"))
    good = open(shipped_detector_path(DEFAULT_DETECTOR), "rb").read()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(DetectorError, match="truncated") as err:
        make_detector(model=str(truncated))
    assert str(truncated) in str(err.value)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model\n" * 10)
    with pytest.raises(DetectorError) as err:
        make_detector(model=str(garbage))
    assert str(garbage) in str(err.value)
    xml = tmp_path / "model.xml"  # an IR without its metadata sidecar
    shutil.copy(shipped_detector_path(DEFAULT_DETECTOR, ".xml"), str(xml))
    with pytest.raises(DetectorError, match="metadata file not found"):
        make_detector(model=str(xml), runtime="openvino")


def test_detector_options_out_of_range_name_the_key(tmp_path):
    for overrides, key in (
        ({"detector_tiles": "9x1"}, "detector_tiles"),
        ({"detector_tiles": "big"}, "detector_tiles"),
        ({"detector_score": 1.5}, "detector_score"),
        ({"detector_nms": 0.0}, "detector_nms"),
        ({"detector": "mtcnn"}, "detector"),
        ({"threads": -1}, "threads"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_config(None, env={}, overrides=overrides)
    config = load_config(None, env={}, overrides={"detector_tiles": "4x2", "detector_score": 0.6})
    assert config["detector"] == DEFAULT_DETECTOR and config["min_face"] == 24
    from edge.agent.service import detector_from_config

    det = detector_from_config(config)
    assert det.tiles == (4, 2) and det.score_threshold == 0.6
    with pytest.raises(DetectorError, match="tile_overlap"):
        make_detector(tile_overlap=0.95)


def test_image_command_reports_a_bad_detector_and_exits_2(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), astronaut().image)
    ok = subprocess.run(
        [sys.executable, "-m", "fer_edge", "image", str(path)],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0 and len(json.loads(ok.stdout)["faces"]) == 1
    from edge.classifier import SHIPPED_MODEL

    bad = subprocess.run(
        [sys.executable, "-m", "fer_edge", "image", str(path), "--detector-model", SHIPPED_MODEL],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "not a face detector" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------- the converter, from the registry package


def test_detector_converter_round_trip_against_tflite(tmp_path):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("tensorflow")
    from convert.detector_export import export_detector_onnx, package_data_dir
    from convert.errors import ConversionError

    try:
        package_data_dir()
    except ConversionError as exc:
        pytest.skip(str(exc))
    lines = []
    path = export_detector_onnx("blazeface-short-128", str(tmp_path / "onnx"), log=lines.append)
    meta = artifact_metadata(path)
    assert meta["kind"] == md.FACE_DETECTOR and meta["normalization"]["in_model"] is True
    assert "against the TFLite original" in lines[0]
    det = make_detector("blazeface-short", model=path)
    shipped = make_detector("blazeface-short")
    image = astronaut().image
    assert [d.box for d in det.detect(image)] == [d.box for d in shipped.detect(image)]
    with pytest.raises(ConversionError, match="already exists"):
        export_detector_onnx("blazeface-short-128", str(tmp_path / "onnx"))


def test_detector_parity_check_fails_on_a_wrong_artifact():
    from convert.detector_export import TOL_ONNX, compare
    from convert.errors import ConversionError

    rng = np.random.default_rng(0)
    boxes, scores = rng.normal(0, 5, (2, 896, 16)).astype(np.float32), rng.normal(0, 3, (2, 896, 1)).astype(np.float32)
    compare("same", (boxes, scores), (boxes.copy(), scores.copy()), TOL_ONNX)
    with pytest.raises(ConversionError, match="scores"):
        compare("off", (boxes, scores), (boxes, scores + 0.5), TOL_ONNX)


# ---------------------------------------------------------------- the benchmark


@pytest.mark.ferdata
def test_bench_detect_measures_recall_and_accuracy(ferplus_tar, tmp_path):
    from fer_edge.bench_detect import run

    report = run(
        str(ferplus_tar),
        counts={"near": 6, "far": 0, "tilted": 0},
        repeats=1,
        names=["blazeface-back (256)", "haar (OpenCV)"],
        out_json=str(tmp_path / "d.json"),
        log=lambda m: None,
        wall_frames=60,
        wall_repeats=1,
    )
    rows = dict((r["detector"], r) for r in report["detectors"])
    neural = rows["blazeface-back (256)"]["near"]
    assert neural["faces"] == 12 and neural["recall"] >= 0.75 and neural["ms_per_frame"] > 0
    assert 0.0 <= neural["end_to_end_accuracy"] <= neural["recall"]
    assert rows["blazeface-back (256)"]["photo"]["found"] == 1
    assert "| blazeface-back (256) |" in report["markdown"]
    assert json.load(open(str(tmp_path / "d.json")))["scenes"]["near"]["faces"] == 12
    walls = report["walls"]
    assert set(walls) == {"640x480 two faces", "1280x720 four faces", "1280x720 four faces, tiles 1x1"}
    assert all(len(w["runs"]) == 1 and w["wall_s"] > 0 for w in walls.values())
    assert "| 1280x720 four faces, tiles 1x1 | --detector-tiles 1x1 |" in report["markdown"]


def test_agent_refuses_bad_detector_input_with_exit_2(tmp_path):
    import subprocess
    import sys

    from edge.classifier import SHIPPED_MODEL
    from fer_edge.samples import make_sample_video

    video = make_sample_video(str(tmp_path / "v.mp4"), frames=3)
    base = [
        sys.executable,
        "-m",
        "fer_edge",
        "run",
        "--source",
        video,
        "--no-embedded-broker",
        "--quiet",
        "--data-dir",
        "",
    ]
    cases = (
        (["--model", shipped_detector_path(DEFAULT_DETECTOR)], "this is a face detector"),
        (["--detector-model", SHIPPED_MODEL], "this is an emotion classifier"),
        (["--detector-model", str(tmp_path / "missing.onnx")], "detector model not found"),
        (["--detector-tiles", "3x9"], "detector_tiles"),
    )
    for extra, message in cases:
        proc = subprocess.run(base + extra, cwd=str(REPO), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (extra, proc.stderr[-1500:])
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    ok = subprocess.run(base, cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and '"faces": 6' in ok.stdout, ok.stderr[-1500:]


def test_corrupt_or_truncated_model_files_name_the_file_and_stop_the_services(tmp_path):
    """`fer-edge run` exits 2 and the Jetson service 78 (systemd does not restart it) on a model or
    detector file that is truncated, corrupt or of the wrong kind; no traceback."""
    import subprocess
    import sys

    from edge.classifier import SHIPPED_MODEL
    from fer_edge.samples import make_sample_video

    video = make_sample_video(str(tmp_path / "v.mp4"), frames=2)
    data = open(SHIPPED_MODEL, "rb").read()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 3])
    flipped = bytearray(data)
    flipped[len(flipped) // 2 : len(flipped) // 2 + 4096] = b"\xff" * 4096  # inside the weights: parses, fails to load
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(bytes(flipped))
    for bad in (truncated, corrupt):
        run = subprocess.run(
            [sys.executable, "-m", "fer_edge", "run", "--source", video, "--no-embedded-broker", "--model", str(bad)],
            cwd=str(REPO),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 2 and str(bad) in run.stderr and "Traceback" not in run.stderr, run.stderr[-2000:]
        jetson = subprocess.run(
            [sys.executable, "-m", "jetson", "--source", video, "--broker", "", "--model", str(bad)],
            cwd=str(REPO),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert jetson.returncode == 78 and str(bad) in jetson.stderr, jetson.stderr[-2000:]
    wrong = subprocess.run(
        [sys.executable, "-m", "jetson", "--source", video, "--broker", "", "--detector-model", SHIPPED_MODEL],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 78 and "not a face detector" in wrong.stderr, wrong.stderr[-2000:]
