"""The attention of Deep-Emotion (Minaee, Minaei, Abdolrashidi 2019, arXiv 1902.01019): a spatial transformer in
front of a small CNN, on 48x48 gray faces.

The layout follows the paper and its public PyTorch re-implementation (omarsayed7/Deep-Emotion):

* localization branch: conv 8 7x7, maxpool 2, relu; conv 10 5x5, maxpool 2, relu; dense 32 relu;
  dense 6 started at the identity affine transform (zero kernel, bias [1, 0, 0, 0, 1, 0]);
* the sampler (:class:`AffineSampler`): the face resampled through that transform;
* feature branch: conv 10 3x3 relu, conv 10 3x3, maxpool 2, relu; conv 10 3x3 relu, conv 10 3x3,
  batch norm, maxpool 2, relu; dropout; dense 50 relu; dense 8 (softmax: our 8 FER+ classes,
  the re-implementation has FER2013's 7).

The sampler is PyTorch's ``affine_grid`` + ``grid_sample`` (bilinear, zero padding,
``align_corners=False``) written without a grid-sample operator: the grid is two 2-D MatMuls of
the transform with a constant matrix of the output pixels' normalised coordinates, and the bilinear
sampling is four Gathers from the flattened batch with Floor/Clip arithmetic for the weights and
the zero padding. So the ONNX export (opset 13) has no ``GridSample`` (opset 16), which TensorRT 8.2
cannot parse.
"""

from typing import Any

import keras
import numpy as np
from keras import layers, ops

# the identity affine transform, row-major [[1, 0, 0], [0, 1, 0]]
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def base_grid(height: int, width: int) -> np.ndarray:
    """[3, H*W]: the normalised (x, y, 1) of each output pixel centre (align_corners=False)."""
    xs = (2.0 * np.arange(width) + 1.0) / width - 1.0
    ys = (2.0 * np.arange(height) + 1.0) / height - 1.0
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel(), np.ones(height * width)]).astype("float32")


@keras.saving.register_keras_serializable(package="fer_edge")
class AffineSampler(layers.Layer):
    """``[image [N, H, W, 1], theta [N, 6]]`` -> the image resampled through the affine transform.

    Output pixel (i, j) reads the input at ``theta.reshape(2, 3) @ (x_j, y_i, 1)`` in normalised
    coordinates ([-1, 1] spans the image), bilinearly, with zeros outside: the same numbers as
    ``torch.nn.functional.grid_sample(x, affine_grid(theta, x.shape))`` (align_corners=False).
    """

    def call(self, inputs: Any) -> Any:
        image, theta = inputs
        height, width = int(image.shape[1]), int(image.shape[2])
        grid = ops.convert_to_tensor(base_grid(height, width))
        # pixel coordinates of the sampling points, [N, H*W] each
        px = (ops.matmul(theta[:, 0:3], grid) + 1.0) * (0.5 * width) - 0.5
        py = (ops.matmul(theta[:, 3:6], grid) + 1.0) * (0.5 * height) - 0.5
        x0, y0 = ops.floor(px), ops.floor(py)
        fx, fy = px - x0, py - y0
        flat = ops.reshape(image, (-1,))
        batch = ops.shape(image)[0]
        offsets = ops.expand_dims(ops.cast(ops.arange(batch) * (height * width), "float32"), 1)
        out = 0.0
        for dx, dy, weight in (
            (0, 0, (1 - fx) * (1 - fy)),
            (1, 0, fx * (1 - fy)),
            (0, 1, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            xi, yi = x0 + dx, y0 + dy
            # 1 inside the image, 0 outside (xi, yi are whole numbers): the zero padding
            inside = (
                ops.clip(xi + 1.0, 0.0, 1.0)
                * ops.clip(width - xi, 0.0, 1.0)
                * ops.clip(yi + 1.0, 0.0, 1.0)
                * ops.clip(height - yi, 0.0, 1.0)
            )
            index = ops.clip(yi, 0.0, height - 1.0) * width + ops.clip(xi, 0.0, width - 1.0) + offsets
            out = out + ops.take(flat, ops.cast(index, "int32"), axis=0) * (weight * inside)
        return ops.reshape(out, (-1, height, width, 1))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]
