"""FER+ label rules against hand-worked vote rows (order: 8 emotions, unknown, NF)."""

import numpy as np
import pytest

from edge.labels import EMOTIONS
from train.labels import MODES, class_counts, label_distribution, labels_for, training_target


def test_label_order_is_the_ferplus_vote_order():
    assert EMOTIONS == ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


# fer0000000.png: votes of 1 dropped -> neutral 4, anger 3, disgust 2 of 9.
ROW_SPLIT = [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]


def test_single_votes_are_outliers_and_majority_needs_more_than_half():
    # 4 of 9 remaining is not more than half -> unknown -> dropped
    assert label_distribution(ROW_SPLIT, "majority") is None
    # fer0000001.png: 6 neutral, 1 surprise, 1 sadness, 2 unknown -> 6 of 8 -> neutral
    assert label_distribution([6, 0, 1, 1, 0, 0, 0, 0, 2, 0], "majority") == [1.0] + [0.0] * 7


@pytest.mark.parametrize("mode", ["probability", "crossentropy"])
def test_probability_modes_take_top_emotions_up_to_75_percent(mode):
    dist = label_distribution(ROW_SPLIT, mode)
    # neutral (4) then anger (3) reach 7 >= 0.75 * 9; disgust (2) is left out
    np.testing.assert_allclose(dist, [4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0])


def test_probability_mode_drops_samples_with_more_than_three_tied_emotions():
    assert label_distribution([3, 3, 2, 2, 0, 0, 0, 0, 0, 0], "crossentropy") is None


def test_probability_mode_drops_unknown_tied_with_the_top_emotion():
    # neutral 3 ties unknown 3: unknown is removed again, 3 of 8 votes is not more than half
    assert label_distribution([3, 0, 0, 0, 0, 0, 0, 0, 3, 2], "probability") is None


def test_multi_target_keeps_every_emotion_with_30_percent():
    np.testing.assert_allclose(label_distribution(ROW_SPLIT, "multi_target"), [4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0])
    np.testing.assert_allclose(
        label_distribution([3, 3, 2, 2, 0, 0, 0, 0, 0, 0], "multi_target"), [0.5, 0.5, 0, 0, 0, 0, 0, 0]
    )


@pytest.mark.parametrize("mode", MODES)
def test_not_a_face_is_dropped_in_every_mode(mode):
    assert label_distribution([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], mode) is None
    assert label_distribution([2, 0, 0, 0, 0, 0, 0, 0, 0, 8], mode) is None


def test_unknown_mode_and_wrong_vote_count_are_rejected():
    with pytest.raises(ValueError, match="label mode"):
        label_distribution(ROW_SPLIT, "soft")
    with pytest.raises(ValueError, match="expected 10 votes"):
        label_distribution([1, 2, 3], "majority")


def test_probability_targets_sample_one_class_from_the_distribution():
    dists = np.tile(np.array([[0.75, 0.25, 0, 0, 0, 0, 0, 0]], np.float32), (4000, 1))
    targets = training_target(dists, "probability", np.random.default_rng(0))
    assert set(targets.sum(axis=1)) == {1.0}
    share = targets[:, 0].mean()
    assert 0.72 < share < 0.78
    assert targets[:, 2:].sum() == 0


def test_multi_target_targets_mark_every_voted_class():
    t = training_target(np.array([[0.5, 0.5, 0, 0, 0, 0, 0, 0]], np.float32), "multi_target", None)
    np.testing.assert_allclose(t[0, :2], 1.0)
    np.testing.assert_allclose(t[0, 2:], 0.001)


def test_multi_target_loss_only_needs_mass_on_one_voted_class():
    from keras import ops

    from train.losses import multi_target_loss

    target = np.array([[1, 1, 0, 0, 0, 0, 0, 0]], np.float32)
    on_first = np.array([[0.9, 0.02, 0.08, 0, 0, 0, 0, 0]], np.float32)
    on_other = np.array([[0.02, 0.02, 0.96, 0, 0, 0, 0, 0]], np.float32)
    loss_first = float(ops.convert_to_numpy(multi_target_loss(target, on_first))[0])
    assert loss_first == pytest.approx(-np.log(0.9), rel=1e-5)
    assert float(ops.convert_to_numpy(multi_target_loss(target, on_other))[0]) > 3.0


def test_labels_for_returns_kept_indices_and_counts():
    votes = [ROW_SPLIT, [6, 0, 1, 1, 0, 0, 0, 0, 2, 0], [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]]
    keep, dists = labels_for(votes, "majority")
    assert keep.tolist() == [1, 2]
    assert class_counts(dists).tolist() == [1, 1, 0, 0, 0, 0, 0, 0]


@pytest.mark.ferdata
def test_valid_under_majority_has_3191_faces(ferplus):
    _, dists, _ = ferplus.split("FER2013Valid").labelled("majority")
    assert len(dists) == 3191
    assert class_counts(dists).tolist() == [1180, 862, 411, 348, 289, 25, 60, 16]
