"""A neural face detector (BlazeFace) on the model runtimes: ONNX Runtime, OpenVINO, TensorRT.

The detector is an artifact like the classifier: the same formats (``edge.formats``), backends
and metadata reader; its metadata (``kind: face_detector``) holds the input geometry, the SSD
anchors, the box scale, the box -> FER crop mapping and the keypoint template
(``edge.detect.framing``). Here: letterbox the frame (or each tile of it) to the model's square
input, run the batch through the backend, decode the anchors, weighted NMS, map boxes back to
frame pixels and merge across tiles. Numpy and OpenCV only, Python 3.6 compatible (device code).

Tiling: ``tiles=(cols, rows)`` cuts the frame into overlapping tiles run as one batch (with the
whole frame as well, for faces larger than a tile); small faces in wide frames need it
(``fer-edge bench detect`` measures the trade-off). ``auto`` (the default) chooses the tiles from
the frame size and ``min_size`` (``edge.detect.tiling``); a video runs them one per frame in
rotation instead (``edge.detect.scheduled``), through :meth:`NeuralFaceDetector.detect_batch`.
"""

import copy
from typing import Any, Dict

import cv2
import numpy as np

from edge import metadata as md
from edge.detect import ssd
from edge.detect.base import DetectorConfigError, FaceDetector
from edge.detect.crops import CropMapping, Detection, as_points, clip_box, eye_angle
from edge.detect.framing import BLAZEFACE_KEYPOINTS, KeypointFraming
from edge.detect.schedule import merge
from edge.detect.tiling import AUTO, FACE_INPUT_PX, auto_tiles, check_tiles, parse_tiles, tile_regions

DEFAULTS: Dict[str, Any] = {"score_threshold": 0.5, "nms_iou": 0.3, "tiles": AUTO, "tile_overlap": 0.25, "align": True}
MAX_BATCH = 9  # inputs per backend call (the Jetson's detector engine: the whole frame + 4x2 tiles)
__all__ = ["MAX_BATCH", "NeuralFaceDetector", "letterbox", "parse_tiles", "tile_regions"]


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

    size: int
    mapping: CropMapping

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
        self.runtime = backend.name
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
        self._grid_key, self._grid = None, (1, 1)  # the tiles of the last frame size (grid())
        check_options(self.score_threshold, self.nms_iou, self.tile_overlap, self.min_size)
        self._self_check()

    def _self_check(self):
        """One inference on a black frame at load: finite outputs of the shapes the metadata says."""
        from edge.backends.base import ModelFileError

        x, _ = self._batch(np.zeros((self.size, self.size, 3), np.uint8), [[(0, 0, self.size, self.size)]])
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

    def with_tiles(self, tiles):
        """This detector with ``tiles`` ((cols, rows) or ``auto``): itself when it has them, else a copy on
        the same loaded backend (a camera's own ``detector_tiles``)."""
        tiles = parse_tiles(tiles)
        if tiles == self.tiles:
            return self
        view = copy.copy(self)
        view.tiles = tiles
        return view

    def grid(self, width, height):
        """The (cols, rows) tiles of a ``width`` x ``height`` frame: the configured ones (checked against the
        frame and ``min_size``), or the automatic grid (``edge.detect.tiling.auto_tiles``)."""
        key = (int(width), int(height), self.tiles)
        if self._grid_key != key:
            if self.tiles == AUTO:
                grid = auto_tiles(int(width), int(height), self.min_size, self.size, self.tile_overlap)
            else:
                check_tiles(int(width), int(height), self.tiles, self.min_size, self.tile_overlap)
                grid = tuple(self.tiles)
            self._grid_key, self._grid = key, grid
        return self._grid

    def regions(self, width, height):
        """The frame regions run as one batch: the whole frame, then the tiles (if any)."""
        whole = [(0, 0, int(width), int(height))]
        grid = self.grid(width, height)
        if grid == (1, 1):
            return whole
        return whole + tile_regions(width, height, grid, self.tile_overlap)

    def _batch(self, image, items):
        """The backend's input for ``items`` (each a list of 1 to 4 regions: one fills the input, more
        share it as a 2x2 mosaic) and, per item, the cells: (cell x, cell y, cell side, the region
        (x0, y0, x1, y1), letterbox scale, pad x, pad y)."""
        batch = np.empty((len(items), self.size, self.size, 3), np.uint8)
        placement = []
        half = self.size // 2
        for i, regions in enumerate(items):
            if not 1 <= len(regions) <= 4:
                raise ValueError("a batch entry holds 1 to 4 regions, got {}".format(len(regions)))
            cells = []
            if len(regions) == 1:
                x0, y0, x1, y1 = regions[0]
                _, scale, px, py = letterbox(image[y0:y1, x0:x1], self.size, out=batch[i])
                cells.append((0, 0, self.size, (x0, y0, x1, y1), scale, px, py))
            else:
                batch[i] = 0
                for k, (x0, y0, x1, y1) in enumerate(regions):
                    cx, cy = (k % 2) * half, (k // 2) * half
                    _, scale, px, py = letterbox(
                        image[y0:y1, x0:x1], half, out=batch[i, cy : cy + half, cx : cx + half]
                    )
                    cells.append((cx, cy, half, (x0, y0, x1, y1), scale, px, py))
            placement.append(cells)
        if self.rgb:
            batch = batch[..., ::-1]
        x = batch.astype(np.float32)
        if self.norm is not None:
            x = x * self.norm[0] + self.norm[1]
        if self.layout == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x, placement

    def _run(self, x):
        """(raw boxes, raw scores) of a batch, in backend calls of at most MAX_BATCH inputs."""
        boxes, scores = [], []
        for start in range(0, len(x), MAX_BATCH):
            outputs = self.backend.run(x[start : start + MAX_BATCH])
            boxes.append(outputs[self.outputs.index("boxes")])
            scores.append(outputs[self.outputs.index("scores")])
        return np.concatenate(boxes), np.concatenate(scores)

    def detect(self, image):
        image = as_bgr(image)
        height, width = image.shape[:2]
        regions = self.regions(width, height)
        if self.tiles != AUTO or len(regions) == 1:
            return self.detect_batch(image, [[r] for r in regions])
        # automatic tiles: the whole frame's faces as without tiles, the tiles' checked (schedule.merge)
        whole, closer = self.detect_groups(image, [[regions[:1]], [[r] for r in regions[1:]]])
        scale = self.size / float(max(width, height))
        return merge(whole, closer, lambda box: max(box[2], box[3]) * scale < FACE_INPUT_PX)

    def detect_batch(self, image, items):
        return self.detect_groups(image, [items])[0]

    def detect_groups(self, image, groups):
        image = as_bgr(image)
        height, width = image.shape[:2]
        items = [regions for group in groups for regions in group]
        for regions in items:
            for x0, y0, x1, y1 in regions:
                if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                    raise DetectorConfigError(
                        "region: ({}, {}, {}, {}) is not inside the {}x{} frame".format(x0, y0, x1, y1, width, height)
                    )
        x, placement = self._batch(image, items)
        raw_boxes, raw_scores = self._run(x)
        out, start = [], 0
        for group in groups:
            entries = range(start, start + len(group))
            out.append(self._collect(raw_boxes, raw_scores, placement, entries, width, height))
            start += len(group)
        return out

    def _collect(self, raw_boxes, raw_scores, placement, entries, width, height):
        """The detections of the batch ``entries`` (indices into the batch), in frame pixels, merged across
        their regions."""
        all_boxes, all_scores, all_points = [], [], []
        for i in entries:
            cells = placement[i]
            scores = ssd.sigmoid_scores(raw_scores[i]).reshape(-1)
            keep = scores >= self.score_threshold
            if not keep.any():
                continue
            boxes, points = ssd.decode(raw_boxes[i], self.anchors, self.box_scale)
            boxes, scores, points = boxes[keep], scores[keep], points[keep]
            valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, scores, points = ssd.weighted_nms(boxes[valid], scores[valid], points[valid], self.nms_iou)
            boxes, points = boxes * self.size, points * self.size  # input pixels
            centre_x, centre_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            for cx, cy, side, region, scale, px, py in cells:
                inside = (centre_x >= cx) & (centre_x < cx + side) & (centre_y >= cy) & (centre_y < cy + side)
                if not inside.any():
                    continue
                # input pixels -> frame pixels
                offset = np.array([cx + px, cy + py], np.float32)
                origin = np.array(region[:2], np.float32)
                frame_boxes = (boxes[inside] - np.tile(offset, 2)) / scale + np.tile(origin, 2)
                whole = inner_edges_kept(frame_boxes, region, width, height)
                all_boxes.append(frame_boxes[whole])
                all_points.append(((points[inside] - offset) / scale + origin)[whole])
                all_scores.append(scores[inside][whole])
        if not all_boxes:
            return []
        boxes, scores, points = np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_points)
        if sum(len(placement[i]) for i in entries) > 1:
            boxes, scores, points = ssd.merge_tiles(boxes, scores, points, self.nms_iou)
        return self._detections(boxes, scores, points, width, height)

    def _detections(self, boxes, scores, points, width, height):
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


EDGE_MARGIN = 0.02  # of a region's side: a box this close to a cut edge is a cut face


def inner_edges_kept(boxes, region, width, height):
    """Of boxes (x0, y0, x1, y1, frame pixels) found in ``region`` (x0, y0, x1, y1): False for those
    reaching a region edge that cuts the frame (a face cut by a tile or a followed face's region:
    the whole frame, a neighbour tile or the next frame sees it whole); edges on the frame's border
    keep theirs."""
    x0, y0, x1, y1 = [float(v) for v in region]
    margin = EDGE_MARGIN * max(x1 - x0, y1 - y0)
    keep = np.ones(len(boxes), dtype=bool)
    if x0 > 0:
        keep &= boxes[:, 0] > x0 + margin
    if y0 > 0:
        keep &= boxes[:, 1] > y0 + margin
    if x1 < width:
        keep &= boxes[:, 2] < x1 - margin
    if y1 < height:
        keep &= boxes[:, 3] < y1 - margin
    return keep


def as_bgr(image):
    """A gray or BGRA image as BGR (uint8 H x W x 3)."""
    image = np.asarray(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def check_options(score_threshold, nms_iou, tile_overlap, min_size):
    if not 0.0 < score_threshold < 1.0:
        raise DetectorConfigError("detector_score: {} is outside (0, 1)".format(score_threshold))
    if not 0.0 < nms_iou < 1.0:
        raise DetectorConfigError("detector_nms: {} is outside (0, 1)".format(nms_iou))
    if not 0.0 <= tile_overlap < 0.9:
        raise DetectorConfigError("detector_tile_overlap: {} is outside [0, 0.9)".format(tile_overlap))
    if min_size < 1:
        raise DetectorConfigError("min_face: {} must be at least 1".format(min_size))
