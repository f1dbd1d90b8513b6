"""The default detection of a video (``edge.detect.schedule`` / ``edge.detect.scheduled``) and the
automatic tiles (``edge.detect.tiling``): the shipped BlazeFace (back, 256) on ONNX Runtime, on
frames holding the astronaut's real face (scikit-image, public domain) scaled down to far-face
sizes. Bad combinations of frame size, ``min_face`` and tiles: a clear error naming the key, exit 2.
"""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge.detect.base import DetectorConfigError
from edge.detect.factory import make_detector
from edge.detect.scheduled import ScheduledDetector
from edge.detect.tiling import MAX_TILES, auto_tiles, check_tiles, parse_tiles
from edge.tracking.track import iou
from fer_edge.scenes import astronaut_scene

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAR = (60, 68)  # a far face: 60x68 px in a 1280x720 frame (the whole frame shows it at 12 input px)


@pytest.fixture(scope="module")
def detector():
    det = make_detector("blazeface-back")
    yield det
    det.close()


@pytest.fixture(scope="module")
def face():
    return cv2.resize(astronaut_scene().image[40:220, 150:310], FAR)


def far_frame(face, spots, size=(1280, 720)):
    frame = np.full((size[1], size[0], 3), 60, np.uint8)
    for x, y in spots:
        frame[y : y + FAR[1], x : x + FAR[0]] = face
    return frame


def found(detections, x, y):
    return any(iou(d.box, (x, y + 8, FAR[0], FAR[0])) > 0.3 for d in detections)


def test_auto_tiles_follow_the_frame_size_and_min_face():
    assert auto_tiles(1280, 720, 24, 256) == (5, 3)  # capped at MAX_TILES
    assert auto_tiles(640, 480, 24, 256)[0] * auto_tiles(640, 480, 24, 256)[1] <= MAX_TILES
    assert auto_tiles(256, 256, 24, 256) == (1, 1)  # no tile smaller than the input
    assert auto_tiles(1280, 720, 120, 256) == (2, 1)  # only big faces wanted: fewer tiles
    assert parse_tiles("auto") == "auto" and parse_tiles(" AUTO ") == "auto" and parse_tiles("4x2") == (4, 2)


def test_the_schedule_finds_far_faces_within_one_rotation_and_keeps_them(detector, face):
    spots = [(100, 100), (700, 150), (300, 500), (1100, 600)]
    frame = far_frame(face, spots)
    whole = make_detector(tiles="1x1").detect(frame)  # the old default: the whole frame only
    assert sum(found(whole, x, y) for x, y in spots) < 3
    camera = ScheduledDetector(detector)
    first = {}
    for k in range(MAX_TILES + 5):
        dets = camera.detect(frame)
        for spot in spots:
            if found(dets, *spot):
                first.setdefault(spot, k)
        if k >= MAX_TILES:  # after one rotation every face is followed: found on every frame
            assert all(found(dets, *s) for s in spots), (k, dets)
            assert len(dets) == len(spots)
    assert sorted(first) == sorted(spots) and max(first.values()) < MAX_TILES, first
    # followed faces share one input (2x2 mosaic): the whole frame, one tile, one mosaic
    assert [len(item) for item in camera.schedule.plan(1280, 720)] == [1, 1, 4]


def test_a_followed_face_is_re_found_where_it_moves(detector, face):
    camera = ScheduledDetector(detector)
    x, y = 200, 300
    for _ in range(MAX_TILES):  # discovery
        if found(camera.detect(far_frame(face, [(x, y)])), x, y):
            break
    else:
        pytest.fail("the far face was not found within one rotation")
    for step in range(30):  # 8 px a frame to the right and 3 down: 240 px, further than its region
        x, y = x + 8, y + 3
        dets = camera.detect(far_frame(face, [(x, y)]))
        assert found(dets, x, y), (step, dets)
        followed = [box for box, missed in camera.schedule.followed if missed == 0]
        assert len(followed) == 1 and abs(followed[0][0] - x) < 20  # its region moves with it


def test_a_frame_size_change_mid_stream_starts_the_schedule_over(detector, face):
    camera = ScheduledDetector(detector)
    for _ in range(MAX_TILES + 1):
        camera.detect(far_frame(face, [(500, 300)]))
    assert camera.schedule.size == (1280, 720) and camera.schedule.followed
    small = far_frame(face, [(100, 100)], size=(640, 480))  # the camera switched mode
    dets = camera.detect(small)
    assert camera.schedule.size == (640, 480)
    assert all(0 <= d.box[0] and d.box[0] + d.box[2] <= 640 and d.box[1] + d.box[3] <= 480 for d in dets)
    hits = sum(found(camera.detect(small), 100, 100) for _ in range(MAX_TILES))
    assert hits >= 5  # found again in the new geometry
    camera.detect(far_frame(face, [(500, 300)]))  # and back
    assert camera.schedule.size == (1280, 720)


def test_bad_combinations_name_the_key(detector):
    with pytest.raises(DetectorConfigError, match="^min_face: 500 px is larger than the 320x240 frame"):
        auto_tiles(320, 240, 500, 256)
    with pytest.raises(DetectorConfigError, match="^detector_tiles: 8x8 tiles of a 320x240 frame"):
        check_tiles(320, 240, (8, 8), 24)
    with pytest.raises(DetectorConfigError, match="^detector_tiles: 8x8"):
        detector.with_tiles("8x8").detect(np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(DetectorConfigError, match="^region: "):  # a region of interest outside the frame
        detector.detect_batch(np.zeros((240, 320, 3), np.uint8), [[(300, 200, 400, 300)]])
    with pytest.raises(DetectorConfigError, match="^min_face"):
        ScheduledDetector(make_detector(min_size=300)).detect(np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(DetectorConfigError, match="expected auto or COLSxROWS"):
        parse_tiles("big")


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, "-m", "fer_edge"] + list(args), capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )


def test_the_commands_exit_2_on_options_that_do_not_fit_the_frames(tmp_path):
    image = str(tmp_path / "small.png")
    cv2.imwrite(image, cv2.resize(astronaut_scene().image, (160, 120)))
    out = _cli("image", image, "--min-face", "200")
    assert out.returncode == 2 and "min_face: 200 px is larger than the 160x120 frame" in out.stderr, out.stderr
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / "{}.png".format(i)), cv2.resize(astronaut_scene().image, (160, 120)))
    run = ("run", "--source", str(folder), "--no-embedded-broker", "--quiet", "--data-dir", "", "--log-level", "ERROR")
    out = _cli(*(run + ("--detector-tiles", "6x6")))
    assert out.returncode == 2 and "detector_tiles: 6x6 tiles of a 160x120 frame" in out.stderr, out.stderr
    ok = _cli(*run)  # the default fits any frame that holds min_face
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["summary"]["frames"] == 3
