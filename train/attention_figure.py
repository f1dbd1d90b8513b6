"""The figure of what a Deep-Emotion network's spatial transformer does: faces, the region its
transform samples (outlined on the face), and the 48x48 crop the feature branch then sees.

The faces are the public-domain astronaut photograph of scikit-image (``fer_edge.samples``) framed
as a face detector might frame it: the face square, shifted, zoomed out, tilted, mirrored. FER+
images are not redistributed, so they are not used here.

    python -m train.attention_figure RUN/best.keras models/deep-emotion-48/attention.png
"""

import argparse
from typing import Any

import cv2
import numpy as np

FACE_BOX = (177, 66, 95, 95)  # x, y, w, h of the astronaut's face (OpenCV's frontal Haar cascade)
FRAMINGS = (
    ("face square", 1.0, 0.0, 0.0, 0.0, False),
    ("shifted right", 1.0, 0.2, 0.0, 0.0, False),
    ("shifted down", 1.0, 0.0, 0.2, 0.0, False),
    ("zoomed out 1.5x", 1.5, 0.0, 0.0, 0.0, False),
    ("tilted 15 deg", 1.1, 0.0, 0.0, 15.0, False),
    ("mirrored, loose", 1.3, -0.1, 0.1, 0.0, True),
)


def framed_faces(size: int = 48) -> tuple[np.ndarray, list[str]]:
    """uint8 [K, size, size] crops of the astronaut photograph under FRAMINGS, and their names."""
    from skimage import data

    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    x, y, w, h = FACE_BOX
    cx, cy = x + w / 2.0, y + h / 2.0
    crops, names = [], []
    for name, scale, dx, dy, angle, mirror in FRAMINGS:
        side = w * scale
        matrix = cv2.getRotationMatrix2D((cx + dx * w, cy + dy * h), angle, size / side)
        matrix[:, 2] += np.array([size / 2.0 - (cx + dx * w), size / 2.0 - (cy + dy * h)])
        crop = cv2.warpAffine(gray, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        crops.append(crop[:, ::-1] if mirror else crop)
        names.append(name)
    return np.stack(crops), names


def transform_and_crops(model: Any, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(theta [K, 6], the sampled crops [K, H, W] in 0..255, probabilities [K, 8]) of a Deep-Emotion model."""
    import keras

    probe = keras.Model(
        model.input, [model.get_layer("theta").output, model.get_layer("attention").output, model.output]
    )
    theta, sampled, probs = probe.predict(faces[..., None].astype("float32"), verbose=0)
    return theta, np.clip((sampled[..., 0] + 1.0) * 127.5, 0, 255), probs


def region(theta: np.ndarray, size: int) -> np.ndarray:
    """The 4 corners (pixels of the input) of the region the transform samples, for outlining."""
    corners = np.array([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype="float64").T
    points = theta.reshape(2, 3) @ corners  # normalised coordinates
    return ((points + 1.0) * size - 1.0).T / 2.0


def draw(model_path: str, out_png: str) -> list[str]:
    """Write the figure to ``out_png``; returns one line per face (framing, transform, top emotion)."""
    import keras
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.labels import EMOTIONS

    from . import attention  # noqa: F401  (registers the custom layers load_model needs)

    model = keras.saving.load_model(model_path, compile=False)
    size = int(model.input_shape[1])
    faces, names = framed_faces(size)
    theta, sampled, probs = transform_and_crops(model, faces)
    fig, axes = plt.subplots(2, len(faces), figsize=(2.0 * len(faces), 4.3))
    lines = []
    for k, name in enumerate(names):
        top = EMOTIONS[int(np.argmax(probs[k]))]
        axes[0, k].imshow(faces[k], cmap="gray", vmin=0, vmax=255)
        quad = np.vstack([region(theta[k], size), region(theta[k], size)[:1]])
        axes[0, k].plot(quad[:, 0], quad[:, 1], "-", color="tab:orange", linewidth=1.5)
        axes[0, k].set_title(name, fontsize=9)
        axes[1, k].imshow(sampled[k], cmap="gray", vmin=0, vmax=255)
        axes[1, k].set_title("sampled: {} {:.0%}".format(top, probs[k].max()), fontsize=8)
        lines.append(
            "{}: theta [{}], {} {:.2f}".format(
                name, ", ".join("{:+.2f}".format(v) for v in theta[k]), top, probs[k].max()
            )
        )
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Deep-Emotion: the face (region sampled in orange) and the crop the network sees", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.attention_figure", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a Deep-Emotion .keras file (a run's best.keras)")
    parser.add_argument("out", help="PNG to write")
    args = parser.parse_args(argv)
    for line in draw(args.model, args.out):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
