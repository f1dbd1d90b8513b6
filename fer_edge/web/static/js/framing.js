// The FER framing: a detection's box and eyes -> the square region the classifier sees, and the
// crop of it (edge/detect/crops.py: CropMapping.region, eye_angle, face_crop). Kept apart so a new
// region rule (keypoint-based framing) ports here alone; the crop itself needs only (cx, cy, side, angle).
import { cropRect, rint, rotationMatrix, warpAffine } from "./imaging.js";

/** Roll of the head in degrees from the two eye keypoints (0: level). */
export function eyeAngle(points) {
  let [[rx, ry], [lx, ly]] = points;
  if (lx < rx) [[rx, ry], [lx, ly]] = [[lx, ly], [rx, ry]];
  return (Math.atan2(ly - ry, lx - rx) * 180) / Math.PI;
}

/** (cx, cy, side, angle) of the crop for an exact box (x, y, w, h). */
export function cropRegion(box, angle, mapping) {
  const [x, y, w, h] = box;
  const side = (mapping.scale * (w + h)) / 2;
  return [x + w / 2 + mapping.shift_x * w, y + h / 2 + mapping.shift_y * h, side, angle];
}

/** The region snapped to the metadata's grid (edge/detect/crops.py snap_region: round half up). */
export function snapRegion(region, grid) {
  const [cx, cy, side, angle] = region;
  const snap = (v, g) => Math.floor(v * g + 0.5) / g;
  return [snap(cx, grid.region), snap(cy, grid.region), snap(side, grid.region), snap(angle, grid.angle)];
}

/** The classifier's crop of a detection's region (snapped to ``grid``, config.json's crop_grid): rotated by its angle, edge-padded (warpAffine). */
export function faceCrop(img, region, grid) {
  const [cx, cy, side, angle] = snapRegion(region, grid);
  const out = Math.max(1, rint(side));
  if (!angle) {
    const x0 = rint(cx - side / 2);
    const y0 = rint(cy - side / 2);
    const s = rint(side);
    if (x0 >= 0 && y0 >= 0 && x0 + s <= img.width && y0 + s <= img.height) {
      return cropRect(img, x0, y0, x0 + s, y0 + s);
    }
  }
  const m = rotationMatrix(cx, cy, angle, out / side);
  m[2] += out / 2 - cx;
  m[5] += out / 2 - cy;
  return warpAffine(img, m, out, out);
}
