// The neural face detector (BlazeFace) of edge/detect/blazeface.py and edge/detect/ssd.py: letterbox,
// one batch through onnxruntime-web, anchor decode, weighted NMS, frame pixels, the cut-edge rule, tile
// merge, boxes; the regions and the merge of automatic tiles' faces are schedule.js's.
// Every constant comes from config.json (written from the Python definitions and the model metadata).
import { makeImage, resizeLinear, rint, cropRect } from "./imaging.js";
import { merge, plan } from "./schedule.js";
import { cropRegion, eyeAngle } from "./framing.js";

/** The image letterboxed into size x size (zeros around): [canvas, scale, padX, padY]. */
export function letterbox(img, size) {
  const scale = Math.min(size / img.width, size / img.height);
  const nw = Math.max(1, rint(img.width * scale));
  const nh = Math.max(1, rint(img.height * scale));
  const canvas = makeImage(size, size, 3);
  const px = Math.floor((size - nw) / 2);
  const py = Math.floor((size - nh) / 2);
  const small = resizeLinear(img, nw, nh);
  for (let y = 0; y < nh; y++) {
    canvas.data.set(small.data.subarray(y * nw * 3, (y + 1) * nw * 3), ((py + y) * size + px) * 3);
  }
  return [canvas, scale, px, py];
}

function sigmoid(raw, limit) {
  const v = Math.fround(Math.min(limit, Math.max(-limit, raw)));
  return Math.fround(1 / (1 + Math.exp(-v)));
}

function coverage(a, b) {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  return (w * h) / Math.max((a[2] - a[0]) * (a[3] - a[1]), 1e-12);
}

const f32 = Math.fround;

/** numpy's float32 sum of a 1-D array (pairwise: 8 accumulators from 8 items on, up to 128). */
function sum32(values) {
  const n = values.length;
  if (n < 8) {
    let s = 0;
    for (const v of values) s = f32(s + v);
    return s;
  }
  if (n <= 128) {
    const r = values.slice(0, 8).map(f32);
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let k = 0; k < 8; k++) r[k] = f32(r[k] + values[i + k]);
    let s = f32(f32(f32(r[0] + r[1]) + f32(r[2] + r[3])) + f32(f32(r[4] + r[5]) + f32(r[6] + r[7])));
    for (; i < n; i++) s = f32(s + values[i]);
    return s;
  }
  const half = Math.floor(n / 2 / 8) * 8;
  return f32(sum32(values.slice(0, half)) + sum32(values.slice(half)));
}

function iou(a, b) {
  const w = Math.max(0, f32(Math.min(a[2], b[2]) - Math.max(a[0], b[0])));
  const h = Math.max(0, f32(Math.min(a[3], b[3]) - Math.max(a[1], b[1])));
  const inter = f32(w * h);
  const union = f32(f32(f32(f32(a[2] - a[0]) * f32(a[3] - a[1])) + f32(f32(b[2] - b[0]) * f32(b[3] - b[1]))) - inter);
  return union > 0 ? inter / Math.max(union, 1e-12) : 0;
}

/** MediaPipe's weighted NMS over {box, score, points} (ssd.weighted_nms, in float32 as numpy does); best first. */
export function weightedNms(cands, threshold, maxOut = 100) {
  const order = cands.map((c, i) => i).sort((i, j) => cands[j].score - cands[i].score || i - j);
  const sorted = order.map((i) => cands[i]);
  const alive = sorted.map(() => true);
  const out = [];
  for (let i = 0; i < sorted.length; i++) {
    if (!alive[i]) continue;
    const group = [];
    for (let j = 0; j < sorted.length; j++) {
      if (alive[j] && (j === i || iou(sorted[i].box, sorted[j].box) > threshold)) group.push(j);
    }
    const total = sum32(group.map((j) => sorted[j].score));
    const box = [0, 0, 0, 0];
    const points = sorted[i].points.map(() => [0, 0]);
    for (const j of group) {
      const w = sorted[j].score;
      for (let k = 0; k < 4; k++) box[k] = f32(box[k] + f32(sorted[j].box[k] * w));
      sorted[j].points.forEach((p, k) => {
        points[k][0] = f32(points[k][0] + f32(p[0] * w));
        points[k][1] = f32(points[k][1] + f32(p[1] * w));
      });
      alive[j] = false;
    }
    out.push({
      box: box.map((v) => f32(v / total)),
      score: sorted[i].score,
      points: points.map((p) => [f32(p[0] / total), f32(p[1] / total)]),
    });
    if (out.length >= maxOut) break;
  }
  return out;
}

/** Cross-tile suppression (ssd.merge_tiles): drop boxes mostly inside a larger one, then NMS. */
export function mergeTiles(cands, threshold, contained = 0.7) {
  const area = (b) => (b[2] - b[0]) * (b[3] - b[1]);
  const keep = cands.map(() => true);
  const bySize = cands.map((c, i) => i).sort((i, j) => area(cands[i].box) - area(cands[j].box) || i - j);
  for (const i of bySize) {
    let worst = -1;
    for (let j = 0; j < cands.length; j++) {
      if (keep[j] && area(cands[j].box) > area(cands[i].box)) worst = Math.max(worst, coverage(cands[i].box, cands[j].box));
    }
    if (worst > contained) keep[i] = false;
  }
  return weightedNms(cands.filter((c, i) => keep[i]), threshold);
}

function clipBox(box, width, height) {
  const x0 = Math.max(0, rint(box[0]));
  const y0 = Math.max(0, rint(box[1]));
  const x1 = Math.min(width, rint(box[2]));
  const y1 = Math.min(height, rint(box[3]));
  return [x0, y0, Math.max(0, x1 - x0), Math.max(0, y1 - y0)];
}

/** The model input of the regions: float32 [N, S, S, 3] (or NCHW), RGB or BGR as the metadata says. */
function batchInput(img, regs, det) {
  const s = det.size;
  const x = new Float32Array(regs.length * s * s * 3);
  const placement = [];
  regs.forEach(([x0, y0, x1, y1], n) => {
    const part = x0 === 0 && y0 === 0 && x1 === img.width && y1 === img.height ? img : cropRect(img, x0, y0, x1, y1);
    const [canvas, scale, px, py] = letterbox(part, s);
    placement.push([scale, px, py]);
    const d = canvas.data;
    const base = n * s * s * 3;
    for (let i = 0; i < s * s; i++) {
      for (let c = 0; c < 3; c++) {
        let v = d[i * 3 + (det.rgb ? c : 2 - c)];
        if (det.norm) v = Math.fround(Math.fround(v * det.norm[0]) + det.norm[1]);
        if (det.layout === "NCHW") x[base + c * s * s + i] = v;
        else x[base + i * 3 + c] = v;
      }
    }
  });
  const dims = det.layout === "NCHW" ? [regs.length, 3, s, s] : [regs.length, s, s, 3];
  return [x, dims, placement];
}

/** edge/detect/blazeface.inner_edges_kept: false for a box (frame pixels) reaching an edge of ``region``
 * that cuts the frame (float32 comparisons, as numpy makes them). */
export function innerEdgesKept(box, region, width, height, edgeMargin) {
  const [x0, y0, x1, y1] = region;
  const margin = edgeMargin * Math.max(x1 - x0, y1 - y0);
  if (x0 > 0 && !(box[0] > f32(x0 + margin))) return false;
  if (y0 > 0 && !(box[1] > f32(y0 + margin))) return false;
  if (x1 < width && !(box[2] < f32(x1 - margin))) return false;
  if (y1 < height && !(box[3] < f32(y1 - margin))) return false;
  return true;
}

/** The candidates {box, score, points} (frame pixels) of batch entry ``n``, run on ``region``. */
function decodeRegion(rawBoxes, rawScores, n, region, cell, det, width, height) {
  const [scale, px, py] = cell;
  const [x0, y0] = region;
  const a = det.anchors.length;
  const stride = rawBoxes.length / (rawScores.length / a) / a;
  const bs = f32(det.box_scale);
  let cands = [];
  for (let i = 0; i < a; i++) {
    const score = sigmoid(rawScores[n * a + i], det.raw_score_limit);
    if (score < det.score_threshold) continue;
    const r = rawBoxes.subarray((n * a + i) * stride, (n * a + i + 1) * stride);
    const [ax, ay] = det.anchors[i];
    // float32 throughout, as numpy computes it
    const cx = f32(f32(r[0] / bs) + ax);
    const cy = f32(f32(r[1] / bs) + ay);
    const hw = f32(f32(r[2] / bs) / 2);
    const hh = f32(f32(r[3] / bs) / 2);
    const box = [f32(cx - hw), f32(cy - hh), f32(cx + hw), f32(cy + hh)];
    if (!(box[2] > box[0] && box[3] > box[1])) continue;
    const points = [];
    for (let k = 4; k + 1 < stride; k += 2) points.push([f32(f32(r[k] / bs) + ax), f32(f32(r[k + 1] / bs) + ay)]);
    cands.push({ box, score, points });
  }
  cands = weightedNms(cands, det.nms_iou);
  const s = det.size;
  const toFrame = (v, pad, origin) => f32(f32(f32(f32(v * s) - pad) / scale) + origin);
  for (const c of cands) {
    c.box = [toFrame(c.box[0], px, x0), toFrame(c.box[1], py, y0), toFrame(c.box[2], px, x0), toFrame(c.box[3], py, y0)];
    c.points = c.points.map(([u, v]) => [toFrame(u, px, x0), toFrame(v, py, y0)]);
  }
  return cands.filter((c) => innerEdgesKept(c.box, region, width, height, det.tiling.edge_margin));
}

/** NeuralFaceDetector._collect: the candidates of ``regionCount`` regions merged across them
 * (when more than one), clipped, at least min_size, at most max_faces; scores to 4 decimals as Python's. */
function detections(cands, regionCount, det, width, height) {
  const all = regionCount > 1 && cands.length ? mergeTiles(cands, det.nms_iou) : cands;
  const out = [];
  for (const c of all) {
    const box = clipBox(c.box, width, height);
    if (Math.min(box[2], box[3]) < det.min_size) continue;
    const roll = det.align && c.points.length >= 2 ? eyeAngle(c.points) : 0;
    const angle = Math.abs(roll) >= det.min_roll ? roll : 0; // levelled only from min_roll degrees
    const exact = [c.box[0], c.box[1], f32(c.box[2] - c.box[0]), f32(c.box[3] - c.box[1])];
    const score = Number(c.score.toFixed(4));
    out.push({ box, score, crop: cropRegion(exact, angle, det.crop), keypoints: c.points });
    if (out.length >= det.max_faces) break;
  }
  return out;
}

/** Detections {box: [x, y, w, h] ints, score, crop: [cx, cy, side, angle], keypoints} of an RGB image, as
 * NeuralFaceDetector.detect finds them: the whole frame and its tiles in one batch; with automatic tiles
 * the tiles' faces merged into the whole frame's (schedule.merge), else all merged as one batch. */
export async function detectFaces(ort, session, img, det, trace = null) {
  const { width, height } = img;
  const p = plan(width, height, det);
  const regs = [p.whole].concat(p.tiles);
  const t0 = performance.now();
  const [x, dims, placement] = batchInput(img, regs, det);
  const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", x, dims) };
  const t1 = performance.now();
  const result = await session.run(feeds);
  if (trace) trace.ms = { letterbox: t1 - t0, detector_model: performance.now() - t1 };
  const rawBoxes = result[session.outputNames[det.outputs.indexOf("boxes")]].data;
  const rawScores = result[session.outputNames[det.outputs.indexOf("scores")]].data;
  const found = placement.map((cell, n) => decodeRegion(rawBoxes, rawScores, n, regs[n], cell, det, width, height));
  if (!p.auto || !p.tiles.length) return detections(found.flat(), regs.length, det, width, height);
  const whole = detections(found[0], 1, det, width, height);
  const closer = detections(found.slice(1).flat(), p.tiles.length, det, width, height);
  const scale = det.size / Math.max(width, height);
  return merge(whole, closer, (box) => Math.max(box[2], box[3]) * scale < det.tiling.face_input_px, det.tiling);
}
