"""Losses of the four FER+ training modes (FERPlus reference train.py ``cost_func``)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fer_edge")
def multi_target_loss(y_true, y_pred):
    """-log(max_k(t_k * p_k)): the prediction only has to put mass on one of the voted emotions."""
    best = ops.max(y_true * y_pred, axis=-1)
    return -ops.log(ops.clip(best, 1e-7, 1.0))


def loss_for(mode):
    """Cross-entropy against the mode's target for majority/probability/crossentropy."""
    if mode == "multi_target":
        return multi_target_loss
    return keras.losses.CategoricalCrossentropy(name="crossentropy")
