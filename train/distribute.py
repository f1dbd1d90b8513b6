"""Multi-device training: tf.distribute / keras.distribution when several GPUs exist."""

import contextlib
from typing import Callable, Iterator

import keras


@contextlib.contextmanager
def scope(log: Callable[[str], None] = print) -> Iterator[None]:
    """Build and compile models inside this: data-parallel over all GPUs when there are several."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) > 1:
            strategy = tf.distribute.MirroredStrategy()
            log("tf.distribute.MirroredStrategy over {} GPUs".format(len(gpus)))
            with strategy.scope():
                yield
            return
    elif backend == "jax":
        try:
            devices = keras.distribution.list_devices("gpu")
        except RuntimeError:  # a JAX without CUDA: "Unknown backend: 'gpu' requested"
            devices = []
        if len(devices) > 1:
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
            log("keras.distribution.DataParallel over {} GPUs".format(len(devices)))
    yield
