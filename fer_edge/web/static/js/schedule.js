// The detection schedule: which regions of a frame the detector runs on, as one batch (the whole
// frame, then the tiles when the configuration has more than 1x1). edge/detect/blazeface.py's
// regions() and tile_regions(); kept apart so a new schedule ports here alone.
import { rint } from "./imaging.js";

export function tileRegions(width, height, tiles, overlap) {
  const [cols, rows] = tiles;
  const out = [];
  const tw = width / (cols - (cols - 1) * overlap);
  const th = height / (rows - (rows - 1) * overlap);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const x0 = c * tw * (1 - overlap);
      const y0 = r * th * (1 - overlap);
      out.push([rint(x0), rint(y0), rint(Math.min(width, x0 + tw)), rint(Math.min(height, y0 + th))]);
    }
  }
  return out;
}

export function regions(width, height, det) {
  const whole = [[0, 0, width, height]];
  if (det.tiles[0] === 1 && det.tiles[1] === 1) return whole;
  return whole.concat(tileRegions(width, height, det.tiles, det.tile_overlap));
}
