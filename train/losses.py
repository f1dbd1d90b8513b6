"""Losses of the four FER+ training modes (FERPlus reference train.py ``cost_func``)."""

from typing import Any, Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fer_edge")
def multi_target_loss(y_true: Any, y_pred: Any) -> Any:
    """-log(max_k(t_k * p_k)): the prediction only has to put mass on one of the voted emotions."""
    best = ops.max(y_true * y_pred, axis=-1)
    return -ops.log(ops.clip(best, 1e-7, 1.0))


def loss_for(mode: str) -> Any:
    """Cross-entropy against the mode's target for majority/probability/crossentropy."""
    if mode == "multi_target":
        return multi_target_loss
    return keras.losses.CategoricalCrossentropy(name="crossentropy")


@keras.saving.register_keras_serializable(package="fer_edge")
class LogitAdjustedLoss(keras.losses.Loss):
    """Logit-adjusted cross-entropy (Menon et al. 2021) on a softmax model.

    Training sees q proportional to p * prior**tau (the logits shifted by tau * log prior); the
    model's own output p is then the balanced classifier, so rare classes are no longer drowned
    by the frequent ones. ``base``: 'crossentropy' (any target distribution) or 'multi_target'.
    """

    def __init__(
        self,
        prior: Sequence[float],
        tau: float = 1.0,
        base: str = "crossentropy",
        name: str = "logit_adjusted",
        **kwargs: Any,
    ):
        super().__init__(name=name, **kwargs)
        self.prior = [float(p) for p in prior]
        self.tau = float(tau)
        self.base = base

    def call(self, y_true: Any, y_pred: Any) -> Any:
        weights = ops.convert_to_tensor([p**self.tau for p in self.prior], dtype=y_pred.dtype)
        q = y_pred * weights
        q = q / ops.sum(q, axis=-1, keepdims=True)
        if self.base == "multi_target":
            return multi_target_loss(y_true, q)
        return -ops.sum(y_true * ops.log(ops.clip(q, 1e-7, 1.0)), axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"prior": self.prior, "tau": self.tau, "base": self.base})
        return config


def training_loss(mode: str, prior: Sequence[float] | None = None, tau: float = 0.0) -> Any:
    """The loss of a run: the mode's own, or its logit-adjusted form when ``tau`` > 0."""
    if tau and prior is not None:
        return LogitAdjustedLoss(prior, tau, "multi_target" if mode == "multi_target" else "crossentropy")
    return loss_for(mode)
