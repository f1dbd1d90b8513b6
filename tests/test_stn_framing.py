"""The framing experiment's model (train.stn_framing): the identity start is the backbone, and only
the transformer trains. A tiny stand-in backbone keeps it fast; the shipped weights are read by
``load_backbone`` when the SavedModel is here."""

import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from train import stn_framing  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "models", "ferplus-vgg13bn-48", "saved_model")


def _tiny_backbone(size=48):
    from keras import layers

    inp = keras.Input(shape=(size, size, 1))
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inp)
    x = layers.Conv2D(4, 3, strides=2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dropout(0.5)(layers.GlobalAveragePooling2D()(layers.ReLU()(x)))
    return keras.Model(inp, layers.Dense(8, activation="softmax")(x), name="tiny")


def _faces(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48)).astype(np.uint8)


def test_identity_start_equals_backbone_and_one_step_trains_only_the_transformer():
    backbone = _tiny_backbone()
    # non-trivial batch-norm statistics, so inference mode differs from training mode
    bn = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)][0]
    bn.moving_mean.assign(np.full(4, 0.3, np.float32))
    bn.moving_variance.assign(np.full(4, 2.0, np.float32))
    model = stn_framing.with_transformer(backbone)
    x = _faces(16)[..., None].astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), backbone.predict(x, verbose=0), atol=1e-5)
    theta = stn_framing.theta_model(model).predict(x, verbose=0)
    np.testing.assert_allclose(theta, np.tile([1, 0, 0, 0, 1, 0], (16, 1)), atol=1e-6)

    frozen = [w.numpy().copy() for w in backbone.weights]
    loc_before = [w.numpy().copy() for w in model.trainable_weights]
    assert loc_before and all("loc_" in w.path or "theta" in w.path for w in model.trainable_weights)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    y = np.eye(8, dtype=np.float32)[np.arange(16) % 8]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(frozen, backbone.weights))
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(loc_before, model.trainable_weights))


def test_jitter_has_the_detector_noise_and_is_seeded():
    faces = _faces(2000, seed=1)
    a, noise = stn_framing.jitter_faces(faces, np.random.default_rng(5))
    b, _ = stn_framing.jitter_faces(faces, np.random.default_rng(5))
    assert a.shape == (2000, 48, 48, 1) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    q1, q3 = np.percentile(noise[:, 0], [25, 75])
    assert 0.88 < q1 < 0.96 and 1.10 < q3 < 1.18  # the measured crop side IQR 0.92-1.14
    shift = np.max(np.abs(noise[:, 1:]), axis=1)
    assert 0.05 < np.median(shift) < 0.08  # the measured median centre offset 0.065


@pytest.mark.skipif(not os.path.isfile(os.path.join(SHIPPED, "saved_model.pb")), reason="shipped SavedModel absent")
def test_load_backbone_copies_the_shipped_weights():
    from train.predictors import load_predictor

    backbone = stn_framing.load_backbone(SHIPPED)
    x = _faces(4, seed=2)[..., None].astype(np.float32)
    _, predict = load_predictor(SHIPPED)
    from train.models import with_flip_averaging

    np.testing.assert_allclose(with_flip_averaging(backbone).predict(x, verbose=0), predict(x), atol=1e-5)
