"""TEST DOUBLE of the AWS DeepLens ``awscam`` module (the real one exists only on the device).

* ``getLastFrame()`` -> ``(ret, frame)``: the frames of a video file set with :func:`configure`
  (BGR uint8, like the device's video server), one per call; ``(False, None)`` for the first
  ``fail_first`` calls and after the video ends (then ``exhausted`` is set).
* ``Model(model_topology_file, loading_config, runtime=0)``: loads the IR ``.xml`` with the real
  OpenVINO runtime on the CPU (f32), whatever ``loading_config`` says (it must be ``{'GPU': 0|1}``).
  ``doInference(image)`` takes one H x W x C image, transposes it to C x H x W like the device
  does for its NCHW IRs, runs it as a batch of one and returns ``{output name: flat float32 array}``;
  an image whose shape does not match the IR's input raises, as the device's engine would.
  ``parseResult('classification', result)`` returns ``{'classification': [{'label', 'prob'}, ...]}``.

Everything the Lambda does with it is recorded in ``calls`` / ``Model.instances`` for the test.
"""

import threading

import cv2
import numpy as np

calls = {"getLastFrame": 0, "frames": 0, "failed": 0}
exhausted = threading.Event()
_state = {"capture": None, "fail_first": 0, "lock": threading.Lock()}


def configure(video=None, fail_first=0):
    """Serve the frames of ``video``; fail the first ``fail_first`` calls. Resets the counters."""
    with _state["lock"]:
        if _state["capture"] is not None:
            _state["capture"].release()
        _state["capture"] = cv2.VideoCapture(video) if video else None
        _state["fail_first"] = int(fail_first)
        for key in calls:
            calls[key] = 0
        exhausted.clear()
        del Model.instances[:]


def getLastFrame():
    with _state["lock"]:
        calls["getLastFrame"] += 1
        if calls["getLastFrame"] <= _state["fail_first"] or _state["capture"] is None:
            calls["failed"] += 1
            return False, None
        ok, frame = _state["capture"].read()
        if not ok:
            calls["failed"] += 1
            exhausted.set()
            return False, None
        calls["frames"] += 1
        return True, frame


class Model(object):
    instances = []

    def __init__(self, model_topology_file, loading_config, runtime=0):
        if loading_config not in ({"GPU": 1}, {"GPU": 0}):
            raise ValueError("loading_config must be {'GPU': 1} or {'GPU': 0}")
        if runtime != 0:
            raise ValueError("this double runs IRs (runtime=0) only")
        import openvino as ov
        core = ov.Core()
        self.path = model_topology_file
        self.loading_config = loading_config
        self.compiled = core.compile_model(core.read_model(model_topology_file), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "f32"})
        self.input_shape = tuple(self.compiled.input(0).get_partial_shape().get_min_shape())
        self.output = self.compiled.output(0)
        self.output_name = self.output.get_any_name()
        self.inputs = []  # (shape, dtype) of every doInference image
        Model.instances.append(self)

    def doInference(self, video_frame):
        image = np.asarray(video_frame)
        self.inputs.append((image.shape, str(image.dtype)))
        if image.ndim == 2:
            image = image[:, :, None]
        x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
        want = (1,) + tuple(self.input_shape[1:])
        if x.shape != want:
            raise RuntimeError("doInference: image {} gives input {}, the model takes {}".format(
                image.shape, x.shape, want))
        result = self.compiled(x)[self.output]
        return {self.output_name: np.asarray(result, dtype=np.float32).reshape(-1)}

    def parseResult(self, model_type, infer_output):
        if model_type != "classification":
            raise ValueError("this double parses classification results only")
        values = next(iter(infer_output.values()))
        order = np.argsort(-values)
        return {model_type: [{"label": int(i), "prob": float(values[i])} for i in order]}
