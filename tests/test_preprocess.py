"""The one preprocessing and the metadata it is driven by; augmentation geometry."""

import cv2
import numpy as np
import pytest

from edge import metadata as md
from edge.preprocess import PreprocessError, prepare_faces, resize_face


def test_layouts_and_grayscale():
    meta = md.default_metadata(48, 48, "NHWC")
    bgr = np.random.default_rng(0).integers(0, 256, (60, 50, 3)).astype(np.uint8)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    nhwc = prepare_faces([bgr, gray], meta)
    assert nhwc.shape == (2, 48, 48, 1) and nhwc.dtype == np.float32
    np.testing.assert_array_equal(nhwc[0], nhwc[1])
    nchw = prepare_faces([bgr], md.with_layout(meta, "NCHW"))
    assert nchw.shape == (1, 1, 48, 48)
    np.testing.assert_array_equal(nchw[0, 0], nhwc[0, :, :, 0])
    assert nhwc.max() > 1.0  # values stay in 0..255: normalisation is inside the model


def test_resize_rule_area_down_linear_up():
    img = np.random.default_rng(1).integers(0, 256, (96, 96)).astype(np.uint8)
    np.testing.assert_array_equal(resize_face(img, 48, 48), cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA))
    small = img[:24, :24]
    np.testing.assert_array_equal(
        resize_face(small, 48, 48), cv2.resize(small, (48, 48), interpolation=cv2.INTER_LINEAR)
    )


def test_normalisation_outside_the_model_when_metadata_says_so():
    meta = md.default_metadata(8, 8)
    meta["normalization"]["in_model"] = False
    x = prepare_faces([np.full((8, 8), 255, np.uint8)], meta)
    np.testing.assert_allclose(x, 1.0)


def test_bad_crops_are_rejected():
    meta = md.default_metadata()
    with pytest.raises(PreprocessError, match="uint8"):
        prepare_faces([np.zeros((10, 10), np.float32)], meta)
    with pytest.raises(PreprocessError, match="empty"):
        prepare_faces([np.zeros((0, 10), np.uint8)], meta)


def test_metadata_validation_names_the_field(tmp_path):
    meta = md.default_metadata()
    del meta["input"]["height"]
    with pytest.raises(md.MetadataError, match="input: missing field 'height'"):
        md.validate(meta, "m.json")
    meta = md.default_metadata()
    meta["input"]["layout"] = "CHW"
    with pytest.raises(md.MetadataError, match="layout"):
        md.validate(meta)
    with pytest.raises(md.MetadataError, match="not found"):
        md.read(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(md.MetadataError, match="bad.json: not valid JSON"):
        md.read(str(tmp_path / "bad.json"))
    path = md.write(md.default_metadata(), str(tmp_path / "ok.json"))
    assert md.read(path)["labels"][7] == "contempt"


def test_augmentation_without_distortion_is_the_plain_resize():
    from train.augment import random_affine

    class Zero:
        def uniform(self, lo, hi):
            return 0.0 if lo < 0 else 1.0

        def random(self):
            return 0.9

    img = np.random.default_rng(2).integers(0, 256, (48, 48)).astype(np.uint8)
    m = random_affine(Zero(), 48, 48, 48, 48)
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    m64 = random_affine(Zero(), 64, 64, 48, 48)
    warped = cv2.warpAffine(
        img, m64, (64, 64), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )
    plain = resize_face(img, 64, 64)
    assert np.abs(warped.astype(int) - plain.astype(int)).mean() < 3.0


def test_augmentation_varies_faces_within_the_paper_limits():
    from train.augment import augment_batch

    img = np.zeros((48, 48), np.uint8)
    img[10:38, 20:28] = 255  # a vertical bar
    out = augment_batch(np.stack([img] * 32), 48, 48, np.random.default_rng(0))
    assert out.shape == (32, 48, 48) and out.dtype == np.float32
    assert len({o.tobytes() for o in out}) == 32
    # shifts are at most 8% (about 4 px): the bar's centre of mass stays near the middle
    cols = (out * np.arange(48)[None, None, :]).sum((1, 2)) / out.sum((1, 2))
    assert np.all(np.abs(cols - 23.5) < 6)


def test_wider_augmentation_jitter_frames_faces_as_loosely_as_asked():
    """--aug-scale/--aug-shift (framing jitter matched to the detector's crops) widen the paper's limits:
    the bar's centre moves further, within the wider shift; the trainer's config refuses impossible values."""
    from train.augment import augment_batch
    from train.config import TrainConfig

    img = np.zeros((48, 48), np.uint8)
    img[:, 22:26] = 255  # a vertical bar through the middle
    faces = np.stack([img] * 256)

    def centres(**jitter):
        out = augment_batch(faces, 48, 48, np.random.default_rng(1), flip=False, **jitter)
        return (out * np.arange(48)[None, None, :]).sum((1, 2)) / out.sum((1, 2))

    paper, wide = np.abs(centres() - 23.5), np.abs(centres(max_scale=1.15, max_shift=0.2) - 23.5)
    assert paper.max() < 0.08 * 48 + 2.5 and wide.max() < 0.2 * 48 + 2.5  # rotation and skew move it a little
    assert wide.max() > paper.max() + 2 and wide.mean() > paper.mean() * 1.5
    with pytest.raises(ValueError, match="config 'aug_scale'"):
        TrainConfig(aug_scale=0.9).validate()
    with pytest.raises(ValueError, match="config 'aug_shift'"):
        TrainConfig(aug_shift=0.6).validate()
