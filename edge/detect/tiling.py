"""Tiles of a frame for a neural detector: the ``detector_tiles`` option, the tile regions, and the
automatic grid chosen from the frame size and ``min_face`` (``auto``, the default).

A detector with a square input of ``S`` pixels sees a face of side ``f`` in a region of side ``R``
at ``f * S / R`` input pixels. BlazeFace (back, 256) finds about 90% of FER-framed faces from about
:data:`FACE_INPUT_PX` input pixels up and few below 25 (``docs/experiments/2026-12-07-small-faces.md``).
``auto`` therefore cuts the frame into the fewest overlapping tiles that show a ``min_face`` face
at that size, at most :data:`MAX_TILES` of them (beyond that, the smallest face found grows),
and none smaller than the input (upscaled tiles show textures as faces); none when the whole
frame already shows it so. Python 3.6 compatible (device code).
"""

from edge.detect.base import DetectorConfigError

AUTO = "auto"
FACE_INPUT_PX = 40  # input pixels a face needs to be found reliably (measured, back-256)
MAX_TILES = 15  # a far face is found within this many frames in rotation (video)
TILE_OVERLAP = 0.25
MAX_GRID = 8  # columns or rows at most
MAX_COUNT = 64  # _count stops here
SIDE_GROWTH = 1.05  # auto_tiles grows the tile side by this factor until the grid fits MAX_TILES


def parse_tiles(value, where="detector_tiles"):
    """'auto', '1x1', '4x2' (columns x rows) or a (cols, rows) pair -> AUTO or (cols, rows)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        cols, rows = value
    else:
        text = str(value).strip().lower()
        if text == AUTO:
            return AUTO
        parts = text.split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise DetectorConfigError(
                "{}: expected auto or COLSxROWS such as 1x1 or 4x2, got {!r}".format(where, value)
            )
        cols, rows = int(parts[0]), int(parts[1])
    if not (1 <= int(cols) <= MAX_GRID and 1 <= int(rows) <= MAX_GRID):
        raise DetectorConfigError(
            "{}: columns and rows must be within 1..{}, got {}x{}".format(where, MAX_GRID, cols, rows)
        )
    return int(cols), int(rows)


def tile_size(length, count, overlap=TILE_OVERLAP):
    """The side of each of ``count`` tiles overlapping by ``overlap`` along ``length`` pixels."""
    return length / (count - (count - 1) * overlap)


def tile_regions(width, height, tiles, overlap=TILE_OVERLAP):
    """(x0, y0, x1, y1) integer regions of ``tiles`` (cols, rows) overlapping by ``overlap``."""
    cols, rows = tiles
    out = []
    tw = tile_size(width, cols, overlap)
    th = tile_size(height, rows, overlap)
    for r in range(rows):
        for c in range(cols):
            x0 = c * tw * (1 - overlap)
            y0 = r * th * (1 - overlap)
            out.append(
                (int(round(x0)), int(round(y0)), int(round(min(width, x0 + tw))), int(round(min(height, y0 + th))))
            )
    return out


def _count(length, side, overlap):
    """The fewest tiles of at most ``side`` pixels covering ``length`` with ``overlap``."""
    n = 1
    while tile_size(length, n, overlap) > side and n < MAX_COUNT:
        n += 1
    return n


def auto_tiles(width, height, min_face, input_size, overlap=TILE_OVERLAP):
    """(cols, rows) for a ``width`` x ``height`` frame: the fewest tiles whose side shows a ``min_face``
    face at :data:`FACE_INPUT_PX` input pixels (and is at least ``input_size``), at most
    :data:`MAX_TILES`; (1, 1) when the whole frame does. Raises DetectorConfigError (naming ``min_face``) when min_face exceeds the frame."""
    check_frame(width, height, min_face)
    # never magnified: a tile upscaled into the input shows textures as faces (false positives)
    side = max(float(input_size) * min_face / FACE_INPUT_PX, float(input_size))
    if max(width, height) <= side:
        return (1, 1)
    while True:
        cols, rows = _count(width, side, overlap), _count(height, side, overlap)
        if cols * rows <= MAX_TILES and cols <= MAX_GRID and rows <= MAX_GRID:
            return (cols, rows)
        side *= SIDE_GROWTH


def check_frame(width, height, min_face):
    """A frame must hold a ``min_face`` face."""
    if min_face > min(width, height):
        raise DetectorConfigError(
            "min_face: {} px is larger than the {}x{} frame (no face can be found)".format(min_face, width, height)
        )


def check_tiles(width, height, tiles, min_face, overlap=TILE_OVERLAP):
    """Explicit (cols, rows) tiles must each hold a ``min_face`` face with room around it (twice its side)."""
    check_frame(width, height, min_face)
    cols, rows = tiles
    tw, th = tile_size(width, cols, overlap), tile_size(height, rows, overlap)
    if (cols, rows) != (1, 1) and min(tw, th) < 2 * min_face:
        raise DetectorConfigError(
            "detector_tiles: {}x{} tiles of a {}x{} frame are {}x{} px, smaller than twice min_face ({} px): "
            "use fewer tiles or auto".format(cols, rows, width, height, int(tw), int(th), min_face)
        )
