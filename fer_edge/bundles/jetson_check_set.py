"""Host side: the check sets the Jetson bundle ships (``model/model.check.npz``, ``model/detector.check.npz``).

The inputs are real faces that are not FER images: scikit-image's astronaut photograph (public
domain, NASA) in the demo's frames and in variants (mirrored, darker, brighter, shifted, smaller),
put through the detector's letterbox and the classifier's preprocessing exactly as the agent does.
The reference outputs are ONNX Runtime's on the very ONNX files the bundle ships (each of which
`fer-edge convert onnx` / `make detector-models` checked against its source model). On the device,
``jetson.engine_check`` compares the built engine with them.
"""

from typing import Any

import cv2
import numpy as np

from edge import metadata as md
from edge.onnx_meta import onnx_model_metadata

SOURCE = "ONNX Runtime {} on the host, on scikit-image's astronaut photograph (frames and face crops)"


def _frames():
    from fer_edge.samples import astronaut_bgr
    from fer_edge.scenes import astronaut_scene

    photo = astronaut_scene().image
    face = astronaut_bgr()
    frames = [photo, photo[:, ::-1].copy()]
    for k, (size, gain, x, y) in enumerate(
        ((200, 1.0, 60, 80), (140, 0.6, 300, 40), (260, 1.3, 200, 150), (110, 0.85, 20, 300))
    ):
        canvas = np.full((480, 640, 3), 30 + 40 * k, np.uint8)
        img = cv2.resize(face if k % 2 == 0 else face[:, ::-1], (size, size), interpolation=cv2.INTER_AREA)
        canvas[y : y + size, x : x + size] = np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        frames.append(canvas)
    return frames


def _onnxruntime(onnx_path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.astype(np.float32)}), ort.__version__


def _save(path, inputs, outputs, kind, onnx_path, ort_version):
    from edge.files import sha256_file

    # Any, not np.ndarray: to mypy a ** of arrays could also fill savez_compressed's allow_pickle (a bool)
    arrays: dict[str, Any] = dict(("output_{}".format(i), np.asarray(o, np.float32)) for i, o in enumerate(outputs))
    np.savez_compressed(
        path,
        inputs=inputs,
        kind=np.array(kind),
        onnx_sha256=np.array(sha256_file(onnx_path)),
        source=np.array(SOURCE.format(ort_version)),
        **arrays,
    )
    return path


def detector_check_set(detector_onnx: str, path: str) -> str:
    """Letterboxed frames and the detector's raw outputs on them."""
    from edge.detect.blazeface import letterbox

    meta = onnx_model_metadata(detector_onnx)
    size = int(meta["input"]["height"])
    frames = _frames()
    batch = np.empty((len(frames), size, size, 3), np.uint8)
    for i, frame in enumerate(frames):
        letterbox(frame, size, out=batch[i])
    if meta["input"].get("color") == "rgb":
        batch = np.ascontiguousarray(batch[..., ::-1])
    run, version = _onnxruntime(detector_onnx)
    return _save(path, batch, run(batch), md.FACE_DETECTOR, detector_onnx, version)


def classifier_check_set(model_onnx: str, detector_onnx: str, path: str) -> str:
    """Face crops cut by the detector (as the agent cuts them) in variants, preprocessed for the model."""
    from edge.detect.factory import crop, make_detector
    from edge.preprocess import prepare_faces

    detector = make_detector(model=str(detector_onnx))
    crops = []
    for frame in _frames():
        for d in detector.detect(frame):
            face = crop(frame, d)
            crops += [
                face,
                face[:, ::-1],
                cv2.convertScaleAbs(face, alpha=0.7, beta=0),
                cv2.convertScaleAbs(face, alpha=1.2, beta=10),
            ]
    detector.close()
    if len(crops) < 8:
        raise ValueError("{}: found only {} faces in the check frames".format(detector_onnx, len(crops) // 4))
    meta = onnx_model_metadata(model_onnx)
    x = prepare_faces(crops, meta)
    run, version = _onnxruntime(model_onnx)
    return _save(path, x.astype(np.float32), run(x), md.CLASSIFIER, model_onnx, version)
