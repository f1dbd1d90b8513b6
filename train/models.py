"""Keras 3 model builders (backend-agnostic: TensorFlow, JAX or torch).

Every model takes gray faces as float32 [N, H, W, 1] in [0, 255], normalises them inside the
graph (``Rescaling``: x * scale + offset, recorded in the metadata) and outputs softmax
probabilities over the 8 FER+ emotions in ``edge.labels.EMOTIONS`` order.
"""

from typing import Any, Sequence

import keras
import numpy as np
from keras import layers, ops

from edge.labels import NUM_CLASSES

from .attention import IDENTITY, AffineSampler

NORM_SCALE = 1.0 / 127.5
NORM_OFFSET = -1.0


def _inputs(size):
    inp = keras.Input(shape=(size, size, 1), name="face")
    x = layers.Rescaling(NORM_SCALE, offset=NORM_OFFSET, name="normalize")(inp)
    return inp, x


def _head(x, dropout, name):
    x = layers.Dropout(dropout)(x) if dropout else x
    return layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)


def vgg13(
    size: int = 64, width: float = 1.0, fc: int = 1024, dropout: float = 0.5, batchnorm: bool = False
) -> keras.Model:
    """The FER+ paper's VGG13 (Barsoum et al. 2016): 10 conv, 3 fc, dropout; ``width`` scales it.

    ``batchnorm`` adds BatchNormalization after every convolution (not in the paper; it trains
    faster and more robustly from scratch, and folds into the convolutions at conversion).
    """
    inp, x = _inputs(size)
    for n, ch in [(2, 64), (2, 128), (3, 256), (3, 256)]:
        for _ in range(n):
            if batchnorm:
                x = _conv_bn(x, int(ch * width))
            else:
                x = layers.Conv2D(int(ch * width), 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    for _ in range(2):
        x = layers.Dense(int(fc * width), activation="relu")(x)
        x = layers.Dropout(dropout)(x)
    out = layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    name = "vgg13" + ("_bn" if batchnorm else "") + ("" if width == 1.0 else "_w{:g}".format(width))
    return keras.Model(inp, out, name=name)


def _conv_bn(x, ch, stride=1, act=True):
    x = layers.Conv2D(ch, 3, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x) if act else x


def _basic_block(x, ch, stride):
    shortcut = x
    y = _conv_bn(x, ch, stride)
    y = _conv_bn(y, ch, 1, act=False)
    if stride != 1 or shortcut.shape[-1] != ch:
        shortcut = layers.Conv2D(ch, 1, strides=stride, use_bias=False)(shortcut)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def resnet(
    size: int = 48,
    widths: Sequence[int] = (32, 64, 128, 256),
    blocks: Sequence[int] = (2, 2, 2, 2),
    dropout: float = 0.3,
    name: str = "resnet",
) -> keras.Model:
    """A compact ResNet (basic blocks, BN), sized for the edge budget."""
    inp, x = _inputs(size)
    x = _conv_bn(x, widths[0])
    for stage, (ch, n) in enumerate(zip(widths, blocks)):
        for b in range(n):
            x = _basic_block(x, ch, 2 if (b == 0 and stage > 0) else 1)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, _head(x, dropout, "head"), name=name)


def _ds_block(x, ch, stride):
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    x = layers.Conv2D(ch, 1, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU(6.0)(x)


def mobilenet(size: int = 64, width: float = 1.0, dropout: float = 0.3) -> keras.Model:
    """MobileNet-v1-style depthwise-separable net for 64x64 faces."""
    inp, x = _inputs(size)
    x = _conv_bn(x, int(32 * width))
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 3 + [(1024, 2)]
    for ch, stride in plan:
        x = _ds_block(x, int(ch * width), stride)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, _head(x, dropout, "head"), name="mobilenet_w{:g}".format(width))


def _localization(x):
    """Deep-Emotion's localization branch: the 6 numbers of the affine transform, started at the identity."""
    y = layers.Conv2D(8, 7, name="loc_conv1")(x)
    y = layers.ReLU()(layers.MaxPooling2D(2)(y))
    y = layers.Conv2D(10, 5, name="loc_conv2")(y)
    y = layers.ReLU()(layers.MaxPooling2D(2)(y))
    y = layers.Dense(32, activation="relu", name="loc_fc1")(layers.Flatten()(y))
    identity = keras.initializers.Constant(np.array(IDENTITY, dtype="float32"))
    return layers.Dense(6, kernel_initializer="zeros", bias_initializer=identity, name="theta")(y)


def deep_emotion(size: int = 48, dropout: float = 0.5) -> keras.Model:
    """Deep-Emotion (Minaee et al. 2019; layout of omarsayed7/Deep-Emotion): a spatial transformer
    (:mod:`train.attention`) in front of four 3x3 conv layers of 10 filters, two poolings, dropout,
    dense 50 and dense 8 (the re-implementation's 7 FER2013 classes become our 8 FER+ ones)."""
    inp, x = _inputs(size)
    x = AffineSampler(name="attention")([x, _localization(x)])
    x = layers.Conv2D(10, 3, activation="relu")(x)
    x = layers.Conv2D(10, 3)(x)
    x = layers.ReLU()(layers.MaxPooling2D(2)(x))
    x = layers.Conv2D(10, 3, activation="relu")(x)
    x = layers.BatchNormalization()(layers.Conv2D(10, 3)(x))
    x = layers.ReLU()(layers.MaxPooling2D(2)(x))
    x = layers.Dense(50, activation="relu")(layers.Flatten()(layers.Dropout(dropout)(x)))
    out = layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="deep_emotion")


ARCHITECTURES = {
    # name: (builder, default input size)
    "vgg13": (lambda size: vgg13(size), 64),
    "vgg13-half": (lambda size: vgg13(size, width=0.5), 64),
    "vgg13-bn-half": (lambda size: vgg13(size, width=0.5, batchnorm=True), 48),
    # the fast model for CPU hosts with many faces: a third of the width, about 55 M MACs per face
    "vgg13-bn-third": (lambda size: vgg13(size, width=1.0 / 3.0, batchnorm=True), 48),
    "resnet-s": (lambda size: resnet(size, widths=(24, 48, 96, 192), name="resnet_s"), 48),
    "resnet": (lambda size: resnet(size), 48),
    "mobilenet": (lambda size: mobilenet(size), 64),
    # Deep-Emotion: a spatial transformer in front of a tiny CNN (about 4 M MACs per face)
    "deep-emotion": (lambda size: deep_emotion(size), 48),
}


from .config import ARCHITECTURES as _NAMES  # noqa: E402  (the CLI's list must name these)

assert tuple(ARCHITECTURES) == _NAMES, "train.config.ARCHITECTURES must list train.models.ARCHITECTURES"


def build(arch: str, size: int | None = None) -> keras.Model:
    """Build a registered architecture; ``size`` overrides its default input size."""
    if arch not in ARCHITECTURES:
        raise ValueError("unknown architecture {!r}; choose from {}".format(arch, ", ".join(ARCHITECTURES)))
    builder, default = ARCHITECTURES[arch]
    return builder(int(size or default))


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass for one face (conv, depthwise and dense layers)."""
    total = 0
    calls: dict[str, int] = {}  # how often each layer is called in this graph (a nested model may be called twice)
    for nodes in getattr(model, "_nodes_by_depth", {}).values():
        for node in nodes:
            calls[node.operation.name] = calls.get(node.operation.name, 0) + 1
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer) * calls.get(layer.name, 1)
        elif isinstance(layer, AffineSampler):  # the grid (2 x 3 per pixel) and the 4 bilinear taps
            shape = layer.output.shape
            total += 10 * shape[1] * shape[2]
        elif isinstance(layer, HorizontalFlip):
            shape = layer.input.shape
            total += shape[1] * shape[2] * shape[2]
        elif isinstance(layer, layers.DepthwiseConv2D):
            out = layer.output.shape
            k = layer.kernel_size[0] * layer.kernel_size[1]
            total += out[1] * out[2] * out[3] * k
        elif isinstance(layer, layers.Conv2D):
            out = layer.output.shape
            cin = layer.input.shape[-1]
            k = layer.kernel_size[0] * layer.kernel_size[1]
            total += out[1] * out[2] * out[3] * cin * k
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


@keras.saving.register_keras_serializable(package="fer_edge")
class HorizontalFlip(layers.Layer):
    """Mirror [N, H, W, 1] images left-right as a MatMul with an anti-diagonal matrix.

    A MatMul converts to every runtime we target (ONNX MatMul is on TensorRT 8.2's list), where a
    reverse op may not.
    """

    def call(self, x: Any) -> Any:
        width = x.shape[2]
        flip = ops.convert_to_tensor(np.eye(width, dtype="float32")[::-1].copy())
        return ops.expand_dims(ops.matmul(ops.squeeze(x, axis=-1), flip), axis=-1)


def with_flip_averaging(model: keras.Model) -> keras.Model:
    """A model averaging ``model``'s probabilities on each face and its mirror image (2x the MACs)."""
    inp = keras.Input(shape=model.input_shape[1:], name="face")
    mirrored = HorizontalFlip(name="mirror")(inp)
    out = layers.Average(name="probabilities")([model(inp), model(mirrored)])
    return keras.Model(inp, out, name=model.name + "_flipavg")
