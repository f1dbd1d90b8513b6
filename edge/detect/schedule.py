"""Which regions of a video frame a neural detector runs, frame by frame: :class:`DetectionSchedule`.

Each frame: the whole frame (near faces); a region around each small face found in the last
frames (re-detected at a size the detector sees well, the way MediaPipe's face pipelines follow
a region of interest), four of them sharing one input as a 2x2 mosaic; and one tile of the
automatic grid (``edge.detect.tiling.auto_tiles``) in rotation, to discover new small faces (a
new far face is found within one rotation: as many frames as tiles). The schedule is per camera
and starts over when the frame size changes (a camera switching mode). Python 3.6 compatible.
"""

from typing import Tuple

from edge.detect.tiling import FACE_INPUT_PX, auto_tiles, tile_regions

ROI_SCALE = 2.5  # a followed face's region: this many times its box side, centred on it
KEEP_MISSED = 3  # frames a followed face is still looked for after it was last found
MOSAIC = 4  # regions of followed faces per input (2x2)
DISCOVER_SCORE = 0.65  # the score a small face needs to be reported first (tiles see textures close up)
REPLACE_SCORE = 0.8  # a close-up replaces the whole frame's box of a small face from this share of its score
MAX_ITEMS = 9  # inputs per frame (the whole frame, the tile, followed faces): one engine call


class DetectionSchedule(object):
    """The regions to run on each frame (:meth:`plan`) and what was found there (:meth:`update`).

    ``input_size``: the detector's square input side; ``min_face``: the smallest face (px);
    ``overlap``: the tiles' overlap. ``size``: the frame size the state belongs to.
    """

    def __init__(self, input_size, min_face, overlap=0.25):
        self.input_size = int(input_size)
        self.min_face = int(min_face)
        self.overlap = float(overlap)
        self.size: Tuple[int, int] = (0, 0)  # (0, 0) until the first frame
        self.tiles = []
        self.next_tile = 0
        self.followed = []  # [[box (x, y, w, h), frames since found]]

    def reset(self, width, height):
        """Start over for a ``width`` x ``height`` frame (the first, or after a size change)."""
        grid = auto_tiles(width, height, self.min_face, self.input_size, self.overlap)
        self.size = (int(width), int(height))
        self.tiles = tile_regions(width, height, grid, self.overlap) if grid != (1, 1) else []
        self.next_tile = 0
        self.followed = []

    def plan(self, width, height):
        """The batch for the next ``width`` x ``height`` frame: a list of entries, each a list of
        (x0, y0, x1, y1) regions (one fills the detector's input; up to four share it)."""
        if self.size != (int(width), int(height)):
            self.reset(width, height)
        items = [[(0, 0, int(width), int(height))]]
        if self.tiles:
            items.append([self.tiles[self.next_tile]])
            self.next_tile = (self.next_tile + 1) % len(self.tiles)
        rois = [self.roi(box) for box, _ in self.followed if self.small(box)]
        for start in range(0, len(rois), MOSAIC):
            if len(items) >= MAX_ITEMS:
                break
            items.append(rois[start : start + MOSAIC])
        return items

    def small(self, box):
        """True for a face the whole frame shows below the size the detector finds reliably."""
        scale = self.input_size / float(max(self.size))
        return max(box[2], box[3]) * scale < FACE_INPUT_PX

    def roi(self, box):
        """The square region (x0, y0, x1, y1) around a followed face, moved inside the frame."""
        width, height = self.size
        x, y, w, h = box
        side = min(int(round(ROI_SCALE * max(w, h))), width, height)
        x0 = int(round(x + w / 2.0 - side / 2.0))
        y0 = int(round(y + h / 2.0 - side / 2.0))
        x0, y0 = min(max(0, x0), width - side), min(max(0, y0), height - side)
        return (x0, y0, x0 + side, y0 + side)

    def update(self, whole, closer):
        """The detections (``edge.detect.crops.Detection``) on the frame just planned, ``whole`` from the
        whole frame and ``closer`` from the other regions -> those to report. A close-up's box replaces
        the whole frame's for a small face (it frames it better); a face only a close-up found and not
        followed yet (a new far face, or a texture a tile sees as one) is reported and followed from
        :data:`DISCOVER_SCORE` up; a followed face not found again is looked for during KEEP_MISSED more
        frames."""
        out = merge(whole, closer, self.small, [box for box, _ in self.followed])
        kept = [[tuple(d.box), 0] for d in out]
        for box, missed in self.followed:
            if missed + 1 <= KEEP_MISSED and not any(_near(box, d.box) for d in out):
                kept.append([box, missed + 1])
        self.followed = kept
        return out


def merge(whole, closer, small, followed=()):
    """The detections of a frame from its whole-frame pass (``whole``: kept, as without tiles) and from
    closer looks (``closer``: tiles, followed faces' regions). A close-up's box replaces the whole
    frame's for a face ``small(box)`` says the whole frame shows small (it frames it better); a face
    only a close-up found and not near a ``followed`` box (x, y, w, h) is kept from
    :data:`DISCOVER_SCORE` up (a tile sees textures close up, and takes them for faces)."""
    out = [d for d in whole if d.box[2] > 0 and d.box[3] > 0]
    for det in closer:
        if det.box[2] <= 0 or det.box[3] <= 0:
            continue
        same = [i for i, d in enumerate(out) if _near(d.box, det.box) or _near(det.box, d.box)]
        if same:
            if small(out[same[0]].box) and det.score >= out[same[0]].score * REPLACE_SCORE:
                out[same[0]] = det
        elif det.score >= DISCOVER_SCORE or any(_near(old, det.box) for old in followed):
            out.append(det)
    return out


def _near(a, b):
    """True when the centre of box ``b`` lies within box ``a`` (the same face, moved a little)."""
    cx, cy = b[0] + b[2] / 2.0, b[1] + b[3] / 2.0
    return a[0] <= cx <= a[0] + a[2] and a[1] <= cy <= a[1] + a[3]
