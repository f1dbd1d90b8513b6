"""SSD anchors, box decoding and non-maximum suppression for BlazeFace-style face detectors.

Numpy only, Python 3.6 compatible (device code). The anchor and decoding parameters come from
the detector's metadata (``detector.anchors``, ``detector.box_scale``), written when the model was
converted; they follow MediaPipe's ``SsdAnchorsCalculator`` (fixed anchor size) and
``TensorsToDetectionsCalculator``.

Boxes here are float arrays ``[x0, y0, x1, y1]`` normalised to the model's square input.
"""

import numpy as np

RAW_SCORE_LIMIT = 80.0  # MediaPipe clips at 100; 80 keeps float32 sigmoid finite


def ssd_anchors(options):
    """Anchor centres [A, 2] (x, y in 0..1) of a fixed-anchor-size SSD (MediaPipe's calculator)."""
    strides = list(options["strides"])
    num_layers = int(options["num_layers"])
    height, width = int(options["input_size_height"]), int(options["input_size_width"])
    off_x, off_y = float(options["anchor_offset_x"]), float(options["anchor_offset_y"])
    interpolated = float(options["interpolated_scale_aspect_ratio"])
    out = []
    layer = 0
    while layer < num_layers:
        last = layer
        repeats = 0
        while last < num_layers and strides[last] == strides[layer]:
            last += 1
            repeats += 2 if interpolated == 1.0 else 1
        stride = strides[layer]
        rows, cols = height // stride, width // stride
        ys = (np.arange(rows, dtype=np.float32) + off_y) / rows
        xs = (np.arange(cols, dtype=np.float32) + off_x) / cols
        grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)  # row-major: y outer, x inner
        out.append(np.repeat(grid, repeats, axis=0))
        layer = last
    return np.concatenate(out).astype(np.float32)


def sigmoid_scores(raw):
    raw = np.clip(np.asarray(raw, dtype=np.float32), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
    return 1.0 / (1.0 + np.exp(-raw))


def decode(raw_boxes, anchors, box_scale):
    """Raw regressors [A, 4 + 2K] -> (boxes [A, 4] as x0, y0, x1, y1; keypoints [A, K, 2]), normalised."""
    raw = np.asarray(raw_boxes, dtype=np.float32).reshape(len(anchors), -1) / np.float32(box_scale)
    cx = raw[:, 0] + anchors[:, 0]
    cy = raw[:, 1] + anchors[:, 1]
    half_w, half_h = raw[:, 2] / 2.0, raw[:, 3] / 2.0
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    points = raw[:, 4:].reshape(len(anchors), -1, 2) + anchors[:, None, :]
    return boxes, points


def _intersection(box, boxes):
    """Intersection areas of one box [4] with many [M, 4] (x0, y0, x1, y1)."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    return np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)


def iou(box, boxes):
    """IoU of one box [4] with many [M, 4] (x0, y0, x1, y1)."""
    inter = _intersection(box, boxes)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def coverage(box, boxes):
    """Share of ``box``'s own area that each of ``boxes`` covers."""
    inter = _intersection(box, boxes)
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-12)
    return inter / area


def weighted_nms(boxes, scores, points, iou_threshold, max_out=100):
    """MediaPipe's weighted NMS: each kept face is the score-weighted mean of the boxes (and
    keypoints) that overlap it by more than ``iou_threshold``; its score is the top one.

    Returns (boxes [F, 4], scores [F], keypoints [F, K, 2]), best first.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, scores, points = boxes[order], scores[order], points[order]
    keep_boxes, keep_scores, keep_points = [], [], []
    alive = np.ones(len(boxes), dtype=bool)
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        overlap = alive & (iou(boxes[i], boxes) > iou_threshold)
        overlap[i] = True
        weights = scores[overlap][:, None]
        total = float(weights.sum())
        keep_boxes.append((boxes[overlap] * weights).sum(axis=0) / total)
        keep_points.append((points[overlap] * weights[:, :, None]).sum(axis=0) / total)
        keep_scores.append(scores[i])
        alive &= ~overlap
        if len(keep_boxes) >= max_out:
            break
    if not keep_boxes:
        k = points.shape[1] if points.ndim == 3 else 0
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, k, 2), np.float32)
    return (
        np.asarray(keep_boxes, np.float32),
        np.asarray(keep_scores, np.float32),
        np.asarray(keep_points, np.float32),
    )


def merge_tiles(boxes, scores, points, iou_threshold, contained=0.7):
    """Cross-tile suppression in frame pixels: first drop a box that lies mostly (``contained`` of
    its area) inside a larger one (a face cut by a tile edge, or the same face seen by two tiles),
    then weighted NMS over what is left."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = np.ones(len(boxes), dtype=bool)
    for i in np.argsort(areas, kind="stable"):  # smallest first
        larger = keep & (areas > areas[i])
        if larger.any() and float(coverage(boxes[i], boxes[larger]).max()) > contained:
            keep[i] = False
    return weighted_nms(boxes[keep], scores[keep], points[keep], iou_threshold)
