// The classifier side of edge/preprocess.py, edge/calibration.py and edge/pipeline.py: gray, the
// metadata's resize rule, the batch layout, the calibrated probabilities, the face records.
import { resizeArea, resizeLinear, toGray } from "./imaging.js";

/** Face crops (RGB or gray images) -> float32 model input and its dims, from the metadata's input. */
export function prepareFaces(crops, cls) {
  const { height, width, layout } = cls.input;
  const x = new Float32Array(crops.length * height * width);
  crops.forEach((crop, n) => {
    let g = toGray(crop);
    if (g.height !== height || g.width !== width) {
      const shrink = height < g.height || width < g.width;
      g = shrink ? resizeArea(g, width, height) : resizeLinear(g, width, height);
    }
    for (let i = 0; i < height * width; i++) {
      let v = g.data[i];
      if (cls.norm) v = Math.fround(Math.fround(v * cls.norm[0]) + cls.norm[1]);
      x[n * height * width + i] = v;
    }
  });
  const dims = layout === "NCHW" ? [crops.length, 1, height, width] : [crops.length, height, width, 1];
  return [x, dims];
}

/** p_i^(1/T) renormalised per row (edge.calibration.apply_temperature); rows of a flat array. */
export function applyTemperature(probs, labels, temperature, floor) {
  const rows = [];
  for (let n = 0; n < probs.length / labels; n++) {
    const p = Array.from(probs.subarray(n * labels, (n + 1) * labels));
    if (temperature === null || temperature === 1) {
      rows.push(p);
      continue;
    }
    const logits = p.map((v) => Math.log(Math.min(1, Math.max(floor, v))) / temperature);
    const top = Math.max(...logits);
    const e = logits.map((v) => Math.exp(v - top));
    const total = e.reduce((s, v) => s + v, 0);
    rows.push(e.map((v) => Math.fround(v / total)));
  }
  return rows;
}

const round4 = (v) => Math.round(v * 1e4) / 1e4;

/** The faces as `fer-edge image` prints them: box, top emotion, its confidence, every score. */
export function describe(detections, rows, labelNames) {
  return detections.map((det, n) => {
    const p = rows[n];
    let top = 0;
    for (let i = 1; i < p.length; i++) if (p[i] > p[top]) top = i;
    const scores = {};
    labelNames.forEach((label, i) => (scores[label] = round4(p[i])));
    return { box: det.box, emotion: labelNames[top], confidence: round4(p[top]), scores };
  });
}

export async function classify(ort, session, crops, cls) {
  if (!crops.length) return [];
  const [x, dims] = prepareFaces(crops, cls);
  const result = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", x, dims) });
  return applyTemperature(result[session.outputNames[0]].data, cls.labels.length, cls.temperature, cls.floor);
}
