"""A neural face detector (BlazeFace) on the model runtimes: ONNX Runtime, OpenVINO, TensorRT.

The detector is an artifact like the classifier: the same formats (``edge.formats``), backends
and metadata reader; its metadata (``kind: face_detector``) holds the input geometry, the SSD
anchors, the box scale, the box -> FER crop mapping and the keypoint template
(``edge.detect.framing``). Here: letterbox the frame (or each tile of it) to the model's square
input, run the batch through the backend, decode the anchors, weighted NMS, map boxes back to
frame pixels and merge across tiles. Numpy and OpenCV only, Python 3.6 compatible (device code).

Tiling: ``tiles=(cols, rows)`` cuts the frame into overlapping tiles run as one batch (with the
whole frame as well, for faces larger than a tile); small faces in wide frames need it
(``fer-edge bench detect`` measures the trade-off).
"""

import copy

import cv2
import numpy as np

from edge import metadata as md
from edge.detect import ssd
from edge.detect.base import DetectorConfigError, FaceDetector
from edge.detect.crops import CropMapping, Detection, as_points, clip_box, eye_angle
from edge.detect.framing import BLAZEFACE_KEYPOINTS, KeypointFraming

DEFAULTS = {"score_threshold": 0.5, "nms_iou": 0.3, "tiles": (1, 1), "tile_overlap": 0.25, "align": True}


def parse_tiles(value, where="detector_tiles"):
    """'1x1', '4x2' (columns x rows) or a (cols, rows) pair -> (cols, rows)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        cols, rows = value
    else:
        text = str(value).strip().lower()
        parts = text.split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise DetectorConfigError("{}: expected COLSxROWS such as 1x1 or 4x2, got {!r}".format(where, value))
        cols, rows = int(parts[0]), int(parts[1])
    if not (1 <= int(cols) <= 8 and 1 <= int(rows) <= 8):
        raise DetectorConfigError("{}: columns and rows must be within 1..8, got {}x{}".format(where, cols, rows))
    return int(cols), int(rows)


def tile_regions(width, height, tiles, overlap):
    """(x0, y0, x1, y1) integer regions of ``tiles`` (cols, rows) overlapping by ``overlap``."""
    cols, rows = tiles
    out = []
    tw = width / (cols - (cols - 1) * overlap)
    th = height / (rows - (rows - 1) * overlap)
    for r in range(rows):
        for c in range(cols):
            x0 = c * tw * (1 - overlap)
            y0 = r * th * (1 - overlap)
            out.append(
                (int(round(x0)), int(round(y0)), int(round(min(width, x0 + tw))), int(round(min(height, y0 + th))))
            )
    return out


def letterbox(image, size, out=None):
    """Resize ``image`` (H x W x 3 uint8) into a size x size canvas keeping its aspect ratio.

    Returns (canvas uint8, scale, pad_x, pad_y): input pixel = canvas pixel / scale - pad / scale.
    """
    h, w = image.shape[:2]
    scale = min(size / float(w), size / float(h))
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    canvas = np.zeros((size, size, 3), np.uint8) if out is None else out
    canvas[...] = 0
    px, py = (size - nw) // 2, (size - nh) // 2
    # bilinear, as MediaPipe feeds BlazeFace; INTER_AREA costs 1.4 ms per 640x480 frame here
    canvas[py : py + nh, px : px + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, scale, px, py


class NeuralFaceDetector(FaceDetector):
    """``detect(image BGR/gray uint8) -> [Detection]``: a face-detector artifact on a backend
    (``edge.backends``: ONNX Runtime, OpenVINO, or the Jetson's TensorRT engine); ``runtime`` is
    the backend's."""

    def __init__(
        self,
        backend,
        min_size=32,
        score_threshold=None,
        nms_iou=None,
        tiles=None,
        tile_overlap=None,
        align=None,
        max_faces=50,
    ):
        self.backend = backend
        meta = backend.meta
        md.check_kind(meta, md.FACE_DETECTOR, str(backend.path))
        det = meta["detector"]
        self.name = meta.get("model", {}).get("name") or "neural"
        inp = meta["input"]
        if inp["height"] != inp["width"] or inp["channels"] != 3:
            raise DetectorConfigError(
                "{}: expected a square 3-channel input, metadata says {}x{}x{}".format(
                    backend.path, inp["height"], inp["width"], inp["channels"]
                )
            )
        self.size = int(inp["height"])
        self.layout = inp["layout"]
        self.rgb = inp.get("color", "rgb") == "rgb"
        norm = meta["normalization"]
        self.norm = None if norm["in_model"] else (np.float32(norm["scale"]), np.float32(norm["offset"]))
        self.anchors = ssd.ssd_anchors(det["anchors"])
        if len(self.anchors) != det["num_anchors"]:
            raise DetectorConfigError(
                "{}: {} anchors from the metadata's anchor options, the model has {}".format(
                    backend.path, len(self.anchors), det["num_anchors"]
                )
            )
        self.box_scale = float(det["box_scale"])
        self.outputs = list(det["outputs"])
        self.mapping = CropMapping.from_meta(det["crop"])
        # the keypoint template (None without one) and the framing in use (the metadata's crop.framing)
        self.keypoint_framing = KeypointFraming.from_meta(det["crop"], det.get("keypoints") or BLAZEFACE_KEYPOINTS)
        self.framing = self.keypoint_framing if det["crop"].get("framing") == "keypoints" else None
        # faces rolled less than this (degrees) are cut upright (metadata crop.min_roll; 0: always levelled)
        self.min_roll = float(det["crop"].get("min_roll", 0.0))
        self.min_size = int(min_size)
        self.score_threshold = float(
            det.get("score_threshold", DEFAULTS["score_threshold"]) if score_threshold is None else score_threshold
        )
        self.nms_iou = float(det.get("nms_iou", DEFAULTS["nms_iou"]) if nms_iou is None else nms_iou)
        self.tiles = parse_tiles(DEFAULTS["tiles"] if tiles is None else tiles)
        self.tile_overlap = float(DEFAULTS["tile_overlap"] if tile_overlap is None else tile_overlap)
        self.align = DEFAULTS["align"] if align is None else bool(align)
        self.max_faces = int(max_faces)
        check_options(self.score_threshold, self.nms_iou, self.tile_overlap, self.min_size)
        self._self_check()

    def _self_check(self):
        """One inference on a black frame at load: finite outputs of the shapes the metadata says."""
        from edge.backends.base import ModelFileError

        x, _ = self._batch(np.zeros((self.size, self.size, 3), np.uint8), [(0, 0, self.size, self.size)])
        outputs = self.backend.run(x)
        where = str(self.backend.path)
        if len(outputs) != len(self.outputs):
            raise ModelFileError(
                "{}: the model has {} outputs, its metadata names {}".format(where, len(outputs), len(self.outputs))
            )
        boxes = outputs[self.outputs.index("boxes")]
        scores = outputs[self.outputs.index("scores")]
        if boxes.shape[:2] != (1, len(self.anchors)) or scores.shape[:2] != (1, len(self.anchors)):
            raise ModelFileError(
                "{}: outputs {} and {} do not fit {} anchors".format(
                    where, boxes.shape, scores.shape, len(self.anchors)
                )
            )
        if not (np.all(np.isfinite(boxes)) and np.all(np.isfinite(scores))):
            raise ModelFileError("{}: the detector's outputs are not finite (corrupt weights?)".format(where))

    @property
    def runtime(self):
        return self.backend.name

    def with_tiles(self, tiles):
        """This detector with ``tiles`` ((cols, rows)): itself when it has them, else a copy on the same
        loaded backend (a camera's own ``detector_tiles``)."""
        tiles = parse_tiles(tiles)
        if tiles == tuple(self.tiles):
            return self
        view = copy.copy(self)
        view.tiles = tiles
        return view

    def regions(self, width, height):
        """The frame regions run as one batch: the whole frame, then the tiles (if any)."""
        whole = [(0, 0, int(width), int(height))]
        if self.tiles == (1, 1):
            return whole
        return whole + tile_regions(width, height, self.tiles, self.tile_overlap)

    def _batch(self, image, regions):
        batch = np.empty((len(regions), self.size, self.size, 3), np.uint8)
        placement = []
        for i, (x0, y0, x1, y1) in enumerate(regions):
            _, scale, px, py = letterbox(image[y0:y1, x0:x1], self.size, out=batch[i])
            placement.append((x0, y0, scale, px, py))
        if self.rgb:
            batch = batch[..., ::-1]
        x = batch.astype(np.float32)
        if self.norm is not None:
            x = x * self.norm[0] + self.norm[1]
        if self.layout == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x, placement

    def detect(self, image):
        image = np.asarray(image)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.ndim == 3 and image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        height, width = image.shape[:2]
        regions = self.regions(width, height)
        x, placement = self._batch(image, regions)
        outputs = self.backend.run(x)
        raw_boxes = outputs[self.outputs.index("boxes")]
        raw_scores = outputs[self.outputs.index("scores")]
        all_boxes, all_scores, all_points = [], [], []
        for i, (x0, y0, scale, px, py) in enumerate(placement):
            scores = ssd.sigmoid_scores(raw_scores[i]).reshape(-1)
            keep = scores >= self.score_threshold
            if not keep.any():
                continue
            boxes, points = ssd.decode(raw_boxes[i], self.anchors, self.box_scale)
            boxes, scores, points = boxes[keep], scores[keep], points[keep]
            valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, scores, points = ssd.weighted_nms(boxes[valid], scores[valid], points[valid], self.nms_iou)
            # normalised letterbox coordinates -> frame pixels
            boxes = (boxes * self.size - np.array([px, py, px, py], np.float32)) / scale + np.array(
                [x0, y0, x0, y0], np.float32
            )
            points = (points * self.size - np.array([px, py], np.float32)) / scale + np.array([x0, y0], np.float32)
            all_boxes.append(boxes)
            all_scores.append(scores)
            all_points.append(points)
        if not all_boxes:
            return []
        boxes, scores, points = np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_points)
        if len(placement) > 1:
            boxes, scores, points = ssd.merge_tiles(boxes, scores, points, self.nms_iou)
        out = []
        for box, score, pts in zip(boxes, scores, points):
            x_, y_, w_, h_ = clip_box(box, width, height)
            if min(w_, h_) < self.min_size:
                continue
            keypoints = as_points(pts)
            exact = (float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1]))
            out.append(Detection((x_, y_, w_, h_), round(float(score), 4), self.region(exact, keypoints), keypoints))
            if len(out) >= self.max_faces:
                break
        return out

    def region(self, box, keypoints):
        """The classifier's crop (cx, cy, side, angle) of a face: the keypoint framing when the
        metadata chooses it and the keypoints fit, else the box mapping; levelled by the face's roll
        when ``align`` is on and the roll is at least ``min_roll`` degrees, upright otherwise."""
        if self.framing is not None:
            region = self.framing.region(keypoints, rotate=self.align)
            if region is not None and abs(region[3]) < self.min_roll:
                region = self.framing.region(keypoints, rotate=False)
            if region is not None:
                return region
        angle = eye_angle(keypoints) if self.align and keypoints and len(keypoints) >= 2 else 0.0
        return self.mapping.region(box, angle if abs(angle) >= self.min_roll else 0.0)

    def close(self):
        self.backend.close()


def check_options(score_threshold, nms_iou, tile_overlap, min_size):
    if not 0.0 < score_threshold < 1.0:
        raise DetectorConfigError("detector_score: {} is outside (0, 1)".format(score_threshold))
    if not 0.0 < nms_iou < 1.0:
        raise DetectorConfigError("detector_nms: {} is outside (0, 1)".format(nms_iou))
    if not 0.0 <= tile_overlap < 0.9:
        raise DetectorConfigError("detector_tile_overlap: {} is outside [0, 0.9)".format(tile_overlap))
    if min_size < 1:
        raise DetectorConfigError("min_face: {} must be at least 1".format(min_size))
