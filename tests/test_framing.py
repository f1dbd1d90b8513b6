"""Keypoint framing (edge.detect.framing): the template fit, the crop region from keypoints, the
fallback to the box mapping, and a malformed template in the detector's metadata."""

import copy
import json
import math
import os
import shutil

import cv2
import numpy as np
import pytest

from edge import metadata as md
from edge.backends import artifact_metadata
from edge.detect.crops import Detection, face_crop
from edge.detect.factory import DEFAULT_DETECTOR, DetectorError, load_neural_detector, shipped_detector_path
from edge.detect.framing import BLAZEFACE_KEYPOINTS, KeypointFraming, similarity

# eyes, nose tip, mouth: a plausible template in units of the crop's side
TEMPLATE = ((0.32, 0.40), (0.68, 0.39), (0.50, 0.60), (0.51, 0.77))
FRAMING = KeypointFraming((0, 1, 2, 3), TEMPLATE)


def place(template, cx, cy, side, angle_deg):
    """Template points placed in a frame: the unit square centred at (cx, cy), ``side`` px, rolled by
    ``angle_deg`` (y down: positive turns the face's x axis towards +y)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    out = []
    for u, v in template:
        du, dv = (u - 0.5) * side, (v - 0.5) * side
        out.append((cx + c * du - s * dv, cy + s * du + c * dv))
    return out


def six(points):
    """Four template keypoints as BlazeFace's six (ears far off: they are not in the template)."""
    return list(points) + [(-999.0, 5.0), (999.0, 5.0)]


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 1, (5, 2))
    theta = math.radians(-17.0)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    dst = 83.0 * src.dot(rot.T) + np.array([12.0, -4.0])
    scale, angle, t = similarity(src, dst)
    assert scale == pytest.approx(83.0) and angle == pytest.approx(theta)
    assert np.allclose(t, [12.0, -4.0])
    assert similarity(np.zeros((3, 2)), dst[:3]) is None  # degenerate source


def test_template_fit_maps_a_face_with_template_keypoints_onto_the_true_square():
    # a face whose keypoints sit exactly where the template says, in a 120 px square at (200, 90)
    x, y, side = 200.0, 90.0, 120.0
    keypoints = six([(x + u * side, y + v * side) for u, v in TEMPLATE])
    cx, cy, s, angle = FRAMING.region(keypoints)
    assert (cx, cy, s) == pytest.approx((x + side / 2, y + side / 2, side), abs=1e-6)
    assert angle == pytest.approx(0.0, abs=1e-6)
    assert FRAMING.region(keypoints, rotate=False) == pytest.approx((260.0, 150.0, 120.0, 0.0), abs=1e-6)


def test_region_from_rotated_scaled_keypoints_cuts_the_template_frame():
    cx, cy, side, angle = 310.0, 225.0, 150.0, 25.0
    keypoints = place(TEMPLATE, cx, cy, side, angle)
    region = FRAMING.region(six(keypoints))
    assert region == pytest.approx((cx, cy, side, angle), abs=1e-6)
    # end to end: dots drawn at the keypoints land at the template's places in the 48x48 crop
    image = np.zeros((480, 640, 3), np.uint8)
    for px, py in keypoints:
        cv2.circle(image, (int(round(px)), int(round(py))), 3, (255, 255, 255), -1)
    crop = face_crop(image, Detection((0, 0, 1, 1), 1.0, region), size=48)
    gray = crop[..., 0].astype(np.float64)
    for u, v in TEMPLATE:
        yy, xx = np.mgrid[0:48, 0:48]
        near = (xx - u * 48) ** 2 + (yy - v * 48) ** 2 < 4**2
        assert gray[near].max() > 200, (u, v)
    # upright: no roll, the square still centred on the face
    ux, uy, us, ua = FRAMING.region(six(keypoints), rotate=False)
    assert ua == 0.0 and math.hypot(ux - cx, uy - cy) < 0.1 * side and 0.8 * side < us < 1.05 * side


def test_missing_or_degenerate_keypoints_give_no_region():
    assert FRAMING.region(None) is None
    assert FRAMING.region([(1.0, 2.0), (3.0, 4.0)]) is None  # fewer than the template needs
    assert FRAMING.region(six([(5.0, 5.0)] * 4)) is None  # all at one place: no scale
    assert FRAMING.region(six([(float("nan"), 1.0)] * 4)) is None


def shipped():
    path = shipped_detector_path(DEFAULT_DETECTOR)
    if not os.path.isfile(path):
        pytest.skip("the shipped detector is not here")
    return path


def test_detector_falls_back_to_the_box_mapping_without_keypoints():
    det = load_neural_detector(shipped())
    try:
        assert det.keypoint_framing is not None  # the shipped metadata carries the template
        det.framing = det.keypoint_framing  # keypoint framing on (crop.framing: keypoints)
        box = (100.0, 80.0, 90.0, 110.0)
        assert det.region(box, None) == det.mapping.region(box, 0.0)
        assert det.region(box, [(1.0, 2.0)]) == det.mapping.region(box, 0.0)
        full = six(place(det.keypoint_framing.template, 145.0, 135.0, 120.0, 20.0))
        assert det.region(box, full) == pytest.approx((145.0, 135.0, 120.0, 20.0), abs=1e-6)
        det.framing = None  # the box mapping, levelled by the eye line
        cx, cy, side, angle = det.region(box, full)
        assert (cx, cy, side) == pytest.approx(det.mapping.region(box)[:3]) and 15 < angle < 25
    finally:
        det.close()


def test_faces_rolled_less_than_min_roll_are_cut_upright():
    det = load_neural_detector(shipped())
    try:
        det.framing, det.min_roll = None, 10.0
        box = (100.0, 80.0, 90.0, 110.0)
        slight = six(place(TEMPLATE, 145.0, 135.0, 120.0, 6.0))
        rolled = six(place(TEMPLATE, 145.0, 135.0, 120.0, -18.0))
        assert det.region(box, slight) == det.mapping.region(box, 0.0)
        assert det.region(box, rolled)[3] == pytest.approx(-18.0, abs=2.0)  # the eye line (template eyes not level)
        det.framing = FRAMING
        assert det.region(box, slight) == pytest.approx(FRAMING.region(slight, rotate=False))
        assert det.region(box, rolled) == pytest.approx((145.0, 135.0, 120.0, -18.0), abs=1e-6)
        det.min_roll = 0.0
        assert det.region(box, slight)[3] == pytest.approx(6.0)
    finally:
        det.close()


def test_shipped_metadata_template_names_blazeface_keypoints():
    meta = artifact_metadata(shipped())
    crop = meta["detector"]["crop"]
    framing = KeypointFraming.from_meta(crop, meta["detector"]["keypoints"])
    assert [BLAZEFACE_KEYPOINTS[i] for i in framing.indices] == crop["keypoints"]
    assert framing.as_dict() == {"keypoints": crop["keypoints"], "template": crop["template"]}
    assert crop["framing"] in ("box", "keypoints") and 0 <= crop["min_roll"] <= 45


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda c: c.update(template=[[0.3, 0.4]]), "template"),
        (lambda c: c.update(template="eyes"), "template"),
        (lambda c: c.update(keypoints=["right_eye", "chin"]), "keypoints"),
        (lambda c: c.pop("template"), "template"),
        (lambda c: c.update(template=[[0.5, 0.5]] * len(c["keypoints"])), "template"),
        (lambda c: c.update(framing="eyes"), "framing"),
        (lambda c: c.update(min_roll=90), "min_roll"),
    ],
)
def test_malformed_template_is_refused_naming_the_file_and_key(change, key):
    meta = copy.deepcopy(artifact_metadata(shipped()))
    change(meta["detector"]["crop"])
    with pytest.raises(md.MetadataError) as info:
        md.validate(meta, "some/model.onnx")
    assert "some/model.onnx" in str(info.value) and "crop" in str(info.value) and repr(key)[1:-1] in str(info.value)


def test_malformed_template_in_an_artifact_is_a_clear_load_error(tmp_path):
    pytest.importorskip("openvino")
    folder = os.path.dirname(shipped_detector_path(DEFAULT_DETECTOR, ".xml"))
    for name in os.listdir(folder):
        shutil.copy(os.path.join(folder, name), str(tmp_path / name))
    sidecar = tmp_path / "model.xml.fer_edge.json"
    meta = json.loads(sidecar.read_text())
    meta["detector"]["crop"]["template"] = [[0.3, 0.4]]
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(DetectorError) as info:
        load_neural_detector(str(tmp_path / "model.xml"), runtime="openvino")
    assert str(tmp_path) in str(info.value) and "'template'" in str(info.value)


# ---------------------------------------------------------------- the benchmark's framing loss


def test_true_square_of_a_rolled_pasted_face_gives_the_face_back():
    from fer_edge.bench_framing import true_region
    from fer_edge.scenes import Face, _paste

    rng = np.random.default_rng(0)
    face = cv2.resize(rng.integers(0, 256, (12, 12)).astype(np.uint8), (48, 48), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((400, 400, 3), 128, np.uint8)
    _paste(canvas, face, 120, 110, 144, 24.0)
    truth = Face((120, 110, 144, 144), 0, 24.0)
    crop = face_crop(canvas, Detection(truth.box, 1.0, true_region(truth), None), size=48)[..., 0]
    wrong = face_crop(canvas, Detection(truth.box, 1.0, true_region(truth)[:3] + (24.0,), None), size=48)[..., 0]
    inner = (slice(10, 38), slice(10, 38))  # away from the paste's soft edge

    def corr(a):
        return float(np.corrcoef(a[inner].ravel().astype(float), face[inner].ravel().astype(float))[0, 1])

    assert corr(crop) > 0.9 and corr(wrong) < 0.5


def test_framing_summary_in_points_and_only_on_enough_faces():
    from fer_edge.bench_framing import MIN_FACES, summary

    offs = [(0.9, 0.02), (1.0, 0.04), (1.1, 0.06), (1.2, 0.08)] * 10
    row = summary(30, 27, 40, offs)
    assert row["framing_loss"] == pytest.approx(7.5) and row["accuracy_true_squares"] == pytest.approx(0.75)
    assert row["side_iqr"] == [pytest.approx(0.975), pytest.approx(1.125)]
    assert row["shift_p50_p75"][0] == pytest.approx(0.05)
    assert summary(5, 4, MIN_FACES - 1, offs[: MIN_FACES - 1]) == {}


def test_the_converter_carries_the_calibrated_template_into_the_metadata():
    from convert.detector_export import detector_metadata, load_crop_file
    from fer_testdata import REPO

    crops = load_crop_file(os.path.join(str(REPO), "models"))
    meta = detector_metadata("blazeface-back-256", crop=crops["blazeface-back-256"])
    crop = meta["detector"]["crop"]
    assert crop["framing"] == "box" and crop["min_roll"] == 10.0 and len(crop["template"]) == len(crop["keypoints"])
    assert KeypointFraming.from_meta(crop, meta["detector"]["keypoints"]).indices == (0, 1, 2, 3)
