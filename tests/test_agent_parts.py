"""Agent parts: frame sources, face detection, tracking and smoothing, publish policy, config."""

import json
import time

import cv2
import numpy as np
import pytest

from edge.agent.sources import SourceError, VideoFileSource, csi_pipeline, has_gstreamer, open_source
from edge.config.agent import ConfigError, load_config
from edge.detect.base import DetectorError
from edge.detect.haar import HaarDetector, find_haar_cascade
from edge.detect.yunet import YuNetDetector
from edge.tracking.policy import PublishPolicy
from edge.tracking.track import IouTracker, iou
from helpers import wait_until

LABELS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]


@pytest.fixture(scope="module")
def sample_video(tmp_path_factory):
    from fer_edge.samples import make_sample_video

    return make_sample_video(str(tmp_path_factory.mktemp("video") / "sample.mp4"), frames=30)


def test_video_file_source_delivers_every_frame_then_ends(sample_video):
    with open_source(sample_video) as source:
        assert not source.live
        indices = [f.index for f in source]
    assert indices == list(range(30))


def test_realtime_video_file_plays_at_its_frame_rate(sample_video):
    # a fake clock: frame i waits until i / 15 s after the first; a slow pipeline is not slowed further
    now, waits = [100.0], []
    source = VideoFileSource(
        sample_video,
        realtime=True,
        clock=lambda: now[0],
        sleep=lambda s: (waits.append(round(s, 6)), now.__setitem__(0, now[0] + s)),
    )
    assert source.fps == 15.0 and source.realtime
    assert [source.read().index for _ in range(3)] == [0, 1, 2] and waits == [round(1 / 15, 6)] * 2
    now[0] += 1.0  # the pipeline took a second over frame 2: frame 3 is late, and goes out at once
    assert source.read().index == 3 and len(waits) == 2
    source.close()
    # the real clock, side by side: 30 frames at 15 fps take about 2 s, as fast as possible far less
    timed = {}
    for realtime in (False, True):
        start = time.monotonic()
        with open_source(sample_video, realtime=realtime) as source:
            assert [f.index for f in source] == list(range(30))
        timed[realtime] = time.monotonic() - start
    assert timed[True] >= 29 / 15.0 > timed[False], timed


def test_image_folder_skips_corrupt_images_and_counts_them(tmp_path):
    img = np.zeros((20, 30, 3), np.uint8)
    for i in range(3):
        cv2.imwrite(str(tmp_path / "f{}.png".format(i)), img)
    (tmp_path / "f1b.png").write_bytes(b"\x89PNG broken")
    source = open_source(str(tmp_path))
    frames = list(source)
    assert len(frames) == 3 and source.corrupt == 1


def test_missing_and_bad_sources_are_named(tmp_path):
    with pytest.raises(SourceError, match="nope.mp4: no such file"):
        open_source(str(tmp_path / "nope.mp4"))
    with pytest.raises(SourceError, match="unknown parameter"):
        open_source("csi://0?fps=30")
    if not has_gstreamer():
        with pytest.raises(SourceError, match="without GStreamer"):
            open_source("csi://0")
    assert "sensor-id=1" in csi_pipeline(1) and "flip-method=2" in csi_pipeline(0, flip=2)


def test_live_source_drops_stale_frames_and_reconnects():
    import time

    from edge.agent.sources import LiveSource

    class FakeCapture(object):
        """Stands in for a camera: 50 frames, then a drop (read fails), then frames again."""

        opened = 0

        def __init__(self):
            FakeCapture.opened += 1
            self.n = 0

        def isOpened(self):
            return True

        def get(self, prop):
            return 0.0  # a camera that states no frame rate

        def read(self):
            self.n += 1
            time.sleep(0.002)
            if FakeCapture.opened == 1 and self.n > 50:
                return False, None
            return True, np.full((4, 4, 3), self.n % 255, np.uint8)

        def release(self):
            pass

    source = LiveSource("fake://cam", FakeCapture, max_backoff=0.05)
    first = source.read(timeout=2)
    time.sleep(0.1)
    second = source.read(timeout=2)
    assert second.index > first.index + 1  # frames produced meanwhile were dropped, not queued
    wait_until(lambda: source.reconnects, 5, step=0.05)
    assert source.reconnects >= 1 and source.read(timeout=2) is not None
    source.close()
    assert not source.thread.is_alive()


def test_haar_finds_the_faces_of_the_sample_video(sample_video):
    assert find_haar_cascade().endswith("haarcascade_frontalface_default.xml")
    frame = next(iter(open_source(sample_video)))
    faces = HaarDetector(min_size=40).detect(frame.image)
    assert len(faces) == 2
    assert all(40 <= d.box[2] <= 200 for d in faces)
    assert HaarDetector(min_size=120).detect(frame.image) == []  # below the minimum size: skipped


def test_yunet_without_model_file_says_what_to_do():
    with pytest.raises(DetectorError, match="YuNet model file not found"):
        YuNetDetector("/nowhere/face_detection_yunet.onnx")


def test_tracker_keeps_ids_and_smooths_scores():
    tracker = IouTracker(smoothing=0.5)
    a = np.eye(8, dtype=np.float32)[0]
    b = np.eye(8, dtype=np.float32)[1]
    t1 = tracker.update([(10, 10, 50, 50), (200, 10, 50, 50)], [a, b], 0)
    t2 = tracker.update([(205, 12, 50, 50), (12, 11, 50, 50)], [a, b], 1)  # same faces, swapped order
    assert [t.track_id for t in t1] == [1, 2]
    assert [t.track_id for t in t2] == [2, 1]
    np.testing.assert_allclose(t2[0].scores, 0.5 * b + 0.5 * a)  # smoothed
    np.testing.assert_allclose(t2[0].raw, a)
    t3 = tracker.update([(400, 300, 50, 50)], [a], 2)
    assert t3[0].track_id == 3
    raw = IouTracker(smoothing=0.0)
    raw.update([(0, 0, 10, 10)], [a], 0)
    np.testing.assert_allclose(raw.update([(0, 0, 10, 10)], [b], 1)[0].scores, b)
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150.0)


def test_tracks_expire_after_max_missed():
    tracker = IouTracker(max_missed=2)
    p = np.eye(8, dtype=np.float32)[0]
    tracker.update([(0, 0, 10, 10)], [p], 0)
    for frame in range(1, 4):
        tracker.update([], [], frame)
    assert tracker.update([(0, 0, 10, 10)], [p], 4)[0].track_id == 2


def test_publish_policies():
    tracker = IouTracker(smoothing=0.0, hysteresis_margin=0.0, hysteresis_frames=1)  # label = top (test_lifecycle)
    happy, sad = np.eye(8, dtype=np.float32)[1], np.eye(8, dtype=np.float32)[3]
    every, change, interval = PublishPolicy("every-frame"), PublishPolicy("on-change"), PublishPolicy("interval", 2.0)
    tracks = tracker.update([(0, 0, 10, 10)], [happy], 0)
    assert every.select([], LABELS, 0.0) == []  # an event (empty) for a frame without faces
    assert [t.track_id for t in change.select(tracks, LABELS, 0.0)] == [1]
    assert change.select(tracks, LABELS, 0.1) is None
    assert interval.select(tracks, LABELS, 0.0) is not None
    assert interval.select(tracks, LABELS, 1.0) is None
    assert interval.select(tracks, LABELS, 2.5) is not None
    tracks = tracker.update([(0, 0, 10, 10)], [sad], 1)
    assert [t.track_id for t in change.select(tracks, LABELS, 0.2)] == [1]
    with pytest.raises(ValueError, match="publish policy"):
        PublishPolicy("sometimes")


def test_config_file_env_and_flags(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"source": "video.mp4", "min_face": 60, "publish": "on-change"}))
    config = load_config(
        str(path),
        env={"FER_EDGE_MIN_FACE": "80", "FER_EDGE_DEVICE_ID": "cam1"},
        overrides={"publish": "interval", "source": None},
    )
    assert config["source"] == "video.mp4" and config["min_face"] == 80
    assert config["device_id"] == "cam1" and config["publish"] == "interval"
    ini = tmp_path / "agent.ini"
    ini.write_text("[agent]\nsource = csi://0\nsmoothing = 0\n")
    assert load_config(str(ini), env={})["smoothing"] == 0.0


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"min_fce": 3}', "unknown key(s) min_fce"),
        ('{"min_face": "big"}', "key 'min_face': expected an integer, got 'big'"),
        ('{"smoothing": 1.5}', "key 'smoothing'"),
        ('{"publish": "always"}', "key 'publish': 'always' is not one of"),
        ('{"qos": 2}', "key 'qos'"),
        ('{"ca_file": "/nowhere/ca.pem"}', "key 'ca_file': file /nowhere/ca.pem not found"),
        ('{"source": "a"', "not valid JSON"),
    ],
)
def test_bad_config_is_named(tmp_path, content, message):
    path = tmp_path / "agent.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_config(str(path), env={})
    assert message in str(err.value)
    if "unknown" in message or "expected" in message:
        assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["agent.json", "agent.ini"])
def test_a_config_file_that_is_not_utf8_is_named(tmp_path, name):
    """A config file saved in Latin-1 (a device id with an accent): the error names the file and
    where the bad byte is, as every other config error does, instead of a bare codec error."""
    import subprocess
    import sys

    from fer_testdata import REPO

    path = tmp_path / name
    text = '{"device_id": "caf\xe9"}' if name.endswith(".json") else "[agent]\ndevice_id = caf\xe9\n"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_config(str(path), env={})
    assert str(path) in str(err.value) and "UTF-8" in str(err.value) and "0xe9" in str(err.value)
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge", "run", "--config", str(path)],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and str(path) in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_bad_environment_value_is_named():
    with pytest.raises(ConfigError, match="environment variable FER_EDGE_IOU: key 'iou': expected a number"):
        load_config(None, env={"FER_EDGE_IOU": "high"})


def test_unknown_environment_variable_stops_the_agent_with_a_suggestion():
    with pytest.raises(ConfigError, match="FER_EDGE_BROKER_URL: not a fer-edge setting; did you mean FER_EDGE_BROKER"):
        load_config(None, env={"FER_EDGE_BROKER_URL": "mqtt://broker:1883"})
    with pytest.raises(ConfigError, match="FER_EDGE_XYZZY_QQQQ: not a fer-edge setting \\(settings"):
        load_config(None, env={"FER_EDGE_XYZZY_QQQQ": "red"})
    # variables read elsewhere (data, secrets, DeepLens settings) are not settings and pass
    config = load_config(
        None,
        env={
            "FER_EDGE_DATA": "/d",
            "FER_EDGE_PASSWORD": "x",
            "FER_EDGE_DEEPLENS_GPU": "1",
            "FER_EDGE_BROKER": "mqtt://broker:1883",
            "OTHER": "1",
        },
    )
    assert config["broker"] == "mqtt://broker:1883"


def test_password_in_the_broker_url_is_refused_wherever_it_comes_from(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"broker": "mqtt://cam:s3cret@broker:1883"}))
    for kwargs in (
        {"path": str(path)},
        {"env": {"FER_EDGE_BROKER": "mqtt://cam:s3cret@broker:1883"}},
        {"overrides": {"broker": "mqtt://cam:s3cret@broker:1883"}},
    ):
        kwargs.setdefault("env", {})
        with pytest.raises(ConfigError, match="holds a password.*password_file") as err:
            load_config(**kwargs)
        assert "s3cret" not in str(err.value)
    assert load_config(None, env={}, overrides={"broker": "mqtt://cam@broker:1883"})["broker"]  # a user alone is fine


def test_world_readable_password_file_is_warned_about(tmp_path, caplog):
    import os

    from edge.config.agent import read_secret

    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    os.chmod(str(secret), 0o600)
    assert read_secret(str(secret)) == "s3cret" and "readable by every user" not in caplog.text
    os.chmod(str(secret), 0o644)
    assert read_secret(str(secret)) == "s3cret"
    assert "readable by every user" in caplog.text and "chmod 600" in caplog.text and "s3cret" not in caplog.text
