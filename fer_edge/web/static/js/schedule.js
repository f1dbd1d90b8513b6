// The regions a single image's detection runs on and how their faces are merged: NeuralFaceDetector.detect
// of edge/detect/blazeface.py (regions(), grid()), edge/detect/tiling.py (auto_tiles, tile_regions) and
// edge/detect/schedule.py (merge). The video schedule (DetectionSchedule) is not ported: the page's webcam
// runs this single-image path on every frame. Constants: config.json's detector.tiling (from Python).
import { rint } from "./imaging.js";

/** tiling.tile_size: the side of each of ``count`` tiles overlapping by ``overlap`` along ``length``. */
function tileSize(length, count, overlap) {
  return length / (count - (count - 1) * overlap);
}

/** tiling.tile_regions: [x0, y0, x1, y1] integer regions of tiles [cols, rows]. */
export function tileRegions(width, height, tiles, overlap) {
  const [cols, rows] = tiles;
  const out = [];
  const tw = tileSize(width, cols, overlap);
  const th = tileSize(height, rows, overlap);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const x0 = c * tw * (1 - overlap);
      const y0 = r * th * (1 - overlap);
      out.push([rint(x0), rint(y0), rint(Math.min(width, x0 + tw)), rint(Math.min(height, y0 + th))]);
    }
  }
  return out;
}

function count(length, side, overlap, rules) {
  let n = 1;
  while (tileSize(length, n, overlap) > side && n < rules.max_count) n++;
  return n;
}

/** tiling.auto_tiles: [cols, rows] for a width x height frame, min_face ``minFace``, a square input of ``inputSize``. */
export function autoTiles(width, height, minFace, inputSize, overlap, rules) {
  if (minFace > Math.min(width, height)) {
    throw new Error(`min_face: ${minFace} px is larger than the ${width}x${height} frame (no face can be found)`);
  }
  let side = Math.max((inputSize * minFace) / rules.face_input_px, inputSize);
  if (Math.max(width, height) <= side) return [1, 1];
  for (;;) {
    const cols = count(width, side, overlap, rules);
    const rows = count(height, side, overlap, rules);
    if (cols * rows <= rules.max_tiles && cols <= rules.max_grid && rows <= rules.max_grid) return [cols, rows];
    side *= rules.side_growth;
  }
}

/** The tiles [cols, rows] of a frame: the configured ones or the automatic grid (NeuralFaceDetector.grid). */
export function grid(width, height, det) {
  if (det.tiles === det.tiling.auto) {
    return autoTiles(width, height, det.min_size, det.size, det.tile_overlap, det.tiling);
  }
  return det.tiles;
}

/** The regions of a single image: {whole: the whole frame, tiles: [regions], auto: whether the tiles'
 * faces merge by the rules of automatic tiles (else one batch, as explicit tiles run)}. */
export function plan(width, height, det) {
  const tiles = grid(width, height, det);
  const one = tiles[0] === 1 && tiles[1] === 1;
  return {
    whole: [0, 0, width, height],
    tiles: one ? [] : tileRegions(width, height, tiles, det.tile_overlap),
    auto: det.tiles === det.tiling.auto,
  };
}

/** schedule._near: the centre of box b (x, y, w, h) lies within box a. */
function near(a, b) {
  const cx = b[0] + b[2] / 2;
  const cy = b[1] + b[3] / 2;
  return a[0] <= cx && cx <= a[0] + a[2] && a[1] <= cy && cy <= a[1] + a[3];
}

/** schedule.merge (without followed faces): the whole frame's detections kept; a tile's replaces the
 * whole frame's for a face ``small(box)`` says is small from replace_score of its score on; a face only
 * a tile found is kept from discover_score up. Scores are the detections' (4 decimals, as Python's). */
export function merge(whole, closer, small, rules) {
  const out = whole.filter((d) => d.box[2] > 0 && d.box[3] > 0);
  for (const det of closer) {
    if (det.box[2] <= 0 || det.box[3] <= 0) continue;
    const same = [];
    out.forEach((d, i) => {
      if (near(d.box, det.box) || near(det.box, d.box)) same.push(i);
    });
    if (same.length) {
      if (small(out[same[0]].box) && det.score >= out[same[0]].score * rules.replace_score) out[same[0]] = det;
    } else if (det.score >= rules.discover_score) {
      out.push(det);
    }
  }
  return out;
}
