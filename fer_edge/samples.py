"""Sample input the project generates itself: a short video of real faces from scikit-image.

scikit-image ships a photograph of astronaut Eileen Collins (``skimage.data.astronaut``, public
domain, NASA). The demo video shows two copies of it (one mirrored) drifting slowly across the
frame, so there are faces to detect, track and classify without a camera or a download.
"""

import os

import cv2
import numpy as np


def astronaut_bgr() -> np.ndarray:
    """The astronaut photograph, cropped to her head and shoulders (BGR)."""
    from skimage import data

    return cv2.cvtColor(data.astronaut()[0:300, 80:380], cv2.COLOR_RGB2BGR)


def make_sample_video(
    path: str, frames: int = 90, width: int = 640, height: int = 480, faces: int = 2, fps: float = 15.0
) -> str:
    """Write the sample video (mp4v) to ``path``; returns the path. Deterministic."""
    face = astronaut_bgr()
    tile = min(width // max(faces, 1), height) - 20
    tile = max(tile, 64)
    copies = [
        cv2.resize(face if i % 2 == 0 else face[:, ::-1], (tile, tile), interpolation=cv2.INTER_AREA)
        for i in range(faces)
    ]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.mp4"
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise IOError("{}: cannot write an mp4v video with this OpenCV".format(path))
    slot = width // max(faces, 1)
    for k in range(frames):
        canvas = np.full((height, width, 3), 40, np.uint8)
        for i, img in enumerate(copies):
            dx = int(round(8 * np.sin(2 * np.pi * (k / float(frames) + 0.25 * i))))
            dy = int(round(6 * np.cos(2 * np.pi * k / float(frames))))
            x = max(0, min(width - tile, i * slot + (slot - tile) // 2 + dx))
            y = max(0, min(height - tile, (height - tile) // 2 + dy))
            canvas[y : y + tile, x : x + tile] = img
        writer.write(canvas)
    writer.release()
    os.replace(tmp, path)
    return path


def faces_frame(width: int = 640, height: int = 480, faces: int = 2) -> np.ndarray:
    """One still frame like the sample video's: ``faces`` copies of the astronaut (every other one
    mirrored) side by side on a gray background (BGR). Deterministic."""
    face = astronaut_bgr()
    slot = width // max(faces, 1)
    tile = max(min(slot, height) - 20, 64)
    canvas = np.full((height, width, 3), 40, np.uint8)
    for i in range(faces):
        img = cv2.resize(face if i % 2 == 0 else face[:, ::-1], (tile, tile), interpolation=cv2.INTER_AREA)
        x, y = i * slot + (slot - tile) // 2, (height - tile) // 2
        canvas[y : y + tile, x : x + tile] = img
    return canvas
