// Pixel operations of the Python pipeline, written after OpenCV's own arithmetic so the browser gives
// the same uint8 pixels as cv2 (fixed-point bilinear resize and warpAffine, float area resize, the
// BGR->GRAY weights). An image here: {width, height, channels, data: Uint8Array} (RGB when 3 channels).

const RESIZE_BITS = 11; // INTER_RESIZE_COEF_BITS
const RESIZE_ONE = 1 << RESIZE_BITS;
const INTER_BITS = 5; // warpAffine's sub-pixel grid: 1/32 pixel
const INTER_TAB = 1 << INTER_BITS;
const AB_BITS = 10;
const AB_SCALE = 1 << AB_BITS;
const REMAP_BITS = 15; // INTER_REMAP_COEF_BITS

/** cvRound: round half to even (lrint). */
export function rint(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const f32 = Math.fround;

export function makeImage(width, height, channels, data) {
  return { width, height, channels, data: data || new Uint8Array(width * height * channels) };
}

/** RGBA (canvas ImageData) -> RGB. */
export function rgbaToRgb(rgba, width, height) {
  const out = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; j < out.length; i += 4, j += 3) {
    out[j] = rgba[i];
    out[j + 1] = rgba[i + 1];
    out[j + 2] = rgba[i + 2];
  }
  return makeImage(width, height, 3, out);
}

/** OpenCV 4's COLOR_BGR2GRAY in fixed point (R 19596, G 38470, B 7470, 16 bits; matches cv2 4.14
 * pixel for pixel where the 14-bit weights of the docs differ on halves). */
export function toGray(img) {
  if (img.channels === 1) return img;
  const n = img.width * img.height;
  const out = new Uint8Array(n);
  const d = img.data;
  for (let i = 0, j = 0; i < n; i++, j += img.channels) {
    out[i] = (d[j] * 19596 + d[j + 1] * 38470 + d[j + 2] * 7470 + 32768) >>> 16;
  }
  return makeImage(img.width, img.height, 1, out);
}

/** The region x0..x1, y0..y1 of an image (a copy). */
export function cropRect(img, x0, y0, x1, y1) {
  const w = x1 - x0;
  const h = y1 - y0;
  const c = img.channels;
  const out = new Uint8Array(w * h * c);
  for (let y = 0; y < h; y++) {
    const from = ((y0 + y) * img.width + x0) * c;
    out.set(img.data.subarray(from, from + w * c), y * w * c);
  }
  return makeImage(w, h, c, out);
}

function linearTable(ssize, dsize, clampEdges) {
  // cv::resize INTER_LINEAR coefficient table: float32 fractions, 11-bit fixed point; columns past
  // the edges take the edge pixel whole (clampEdges), rows keep their weights on the clamped rows
  const scale = ssize / dsize;
  const ofs = new Int32Array(dsize);
  const a0 = new Int32Array(dsize);
  const a1 = new Int32Array(dsize);
  for (let d = 0; d < dsize; d++) {
    let fx = f32((d + 0.5) * scale - 0.5);
    let sx = Math.floor(fx);
    fx = f32(fx - sx);
    if (clampEdges && sx < 0) {
      fx = 0;
      sx = 0;
    }
    if (clampEdges && sx + 1 >= ssize) {
      fx = 0;
      sx = ssize - 1;
    }
    ofs[d] = sx;
    a0[d] = rint(f32(f32(1 - fx) * RESIZE_ONE));
    a1[d] = rint(f32(fx * RESIZE_ONE));
  }
  return { ofs, a0, a1 };
}

/** cv2.resize(..., INTER_LINEAR) for uint8: horizontal then vertical pass in 11-bit fixed point.
 * ``vecLanes``: OpenCV's vectorised vertical pass rounds differently from its scalar tail; the
 * first floor(width / lanes) * lanes pixels of a row follow the vector rule. */
export function resizeLinear(img, dw, dh, vecLanes = 4) {
  const c = img.channels;
  const sw = img.width;
  const tx = linearTable(sw, dw, true);
  const ty = linearTable(img.height, dh, false);
  const clampRow = (v) => (v < 0 ? 0 : v >= img.height ? img.height - 1 : v);
  const rowLen = dw * c;
  const rows = new Map();
  const hrow = (sy) => {
    let row = rows.get(sy);
    if (row) return row;
    row = new Int32Array(rowLen);
    const base = sy * sw * c;
    for (let d = 0; d < dw; d++) {
      const sx = tx.ofs[d];
      const next = sx + 1 < sw ? sx + 1 : sx;
      for (let k = 0; k < c; k++) {
        row[d * c + k] =
          tx.a1[d] === 0 && next === sx
            ? img.data[base + sx * c + k] * RESIZE_ONE
            : img.data[base + sx * c + k] * tx.a0[d] + img.data[base + next * c + k] * tx.a1[d];
      }
    }
    rows.set(sy, row);
    return row;
  };
  const out = new Uint8Array(dh * rowLen);
  const vecEnd = vecLanes > 0 ? Math.floor(rowLen / vecLanes) * vecLanes : 0;
  for (let y = 0; y < dh; y++) {
    const sy = ty.ofs[y];
    const r0 = hrow(clampRow(sy));
    const r1 = hrow(clampRow(sy + 1));
    const b0 = ty.a0[y];
    const b1 = ty.a1[y];
    const o = y * rowLen;
    for (let x = 0; x < rowLen; x++) {
      let v;
      if (x < vecEnd) {
        v = (((b0 * (r0[x] >> 4)) >> 16) + ((b1 * (r1[x] >> 4)) >> 16) + 2) >> 2;
      } else {
        v = (b0 * r0[x] + b1 * r1[x] + (1 << 21)) >> 22;
      }
      out[o + x] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    if (rows.size > 4) {
      for (const key of rows.keys()) if (key < clampRow(sy)) rows.delete(key);
    }
  }
  return makeImage(dw, dh, c, out);
}

function areaTable(ssize, dsize) {
  // computeResizeAreaTab: (destination index, source index, float32 weight)
  const scale = ssize / dsize;
  const tab = [];
  for (let d = 0; d < dsize; d++) {
    const fs1 = d * scale;
    const fs2 = fs1 + scale;
    const cell = Math.min(scale, ssize - fs1);
    let s2 = Math.floor(fs2);
    let s1 = Math.ceil(fs1);
    s2 = Math.min(s2, ssize - 1);
    s1 = Math.min(s1, s2);
    if (s1 - fs1 > 1e-3) tab.push([d, s1 - 1, f32((s1 - fs1) / cell)]);
    for (let s = s1; s < s2; s++) tab.push([d, s, f32(1 / cell)]);
    if (fs2 - s2 > 1e-3) tab.push([d, s2, f32(Math.min(Math.min(fs2 - s2, 1), cell) / cell)]);
  }
  return tab;
}

/** cv2.resize(..., INTER_AREA) for uint8 when shrinking: integer factors average blocks, others
 * weigh source cells in float32 as OpenCV does. */
export function resizeArea(img, dw, dh) {
  const c = img.channels;
  const sw = img.width;
  const sh = img.height;
  const out = new Uint8Array(dw * dh * c);
  const ix = sw / dw;
  const iy = sh / dh;
  if (Number.isInteger(ix) && Number.isInteger(iy)) {
    const area = ix * iy;
    const scale = f32(1 / area);
    for (let y = 0; y < dh; y++) {
      for (let x = 0; x < dw; x++) {
        for (let k = 0; k < c; k++) {
          let sum = 0;
          for (let v = 0; v < iy; v++) {
            const base = ((y * iy + v) * sw + x * ix) * c + k;
            for (let u = 0; u < ix; u++) sum += img.data[base + u * c];
          }
          out[(y * dw + x) * c + k] = area === 4 ? (sum + 2) >> 2 : Math.min(255, rint(f32(sum * scale)));
        }
      }
    }
    return makeImage(dw, dh, c, out);
  }
  const xtab = areaTable(sw, dw);
  const ytab = areaTable(sh, dh);
  const rowLen = dw * c;
  const buf = new Float32Array(rowLen);
  const sum = new Float32Array(rowLen);
  let prev = ytab.length ? ytab[0][0] : 0;
  const flush = (dy) => {
    for (let x = 0; x < rowLen; x++) {
      const v = rint(sum[x]);
      out[dy * rowLen + x] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  };
  for (const [dy, sy, beta] of ytab) {
    buf.fill(0);
    const base = sy * sw * c;
    for (const [dx, sx, alpha] of xtab) {
      for (let k = 0; k < c; k++) buf[dx * c + k] = f32(buf[dx * c + k] + f32(img.data[base + sx * c + k] * alpha));
    }
    if (dy !== prev) {
      flush(prev);
      for (let x = 0; x < rowLen; x++) sum[x] = f32(beta * buf[x]);
      prev = dy;
    } else {
      for (let x = 0; x < rowLen; x++) sum[x] = f32(sum[x] + f32(beta * buf[x]));
    }
  }
  flush(prev);
  return makeImage(dw, dh, c, out);
}

/** cv2.getRotationMatrix2D. */
export function rotationMatrix(cx, cy, angleDeg, scale) {
  const a = (angleDeg * Math.PI) / 180;
  const alpha = Math.cos(a) * scale;
  const beta = Math.sin(a) * scale;
  return [alpha, beta, (1 - alpha) * cx - beta * cy, -beta, alpha, beta * cx + (1 - alpha) * cy];
}

/** cv2.warpAffine(img, M, (dw, dh), INTER_LINEAR, BORDER_REPLICATE) for uint8: the inverse map on a
 * 1/32-pixel grid, 15-bit bilinear weights (INTER_AREA is bilinear in warpAffine too). */
export function warpAffine(img, matrix, dw, dh) {
  const m = matrix.slice();
  let det = m[0] * m[4] - m[1] * m[3];
  det = det !== 0 ? 1 / det : 0;
  const a11 = m[4] * det;
  const a22 = m[0] * det;
  m[0] = a11;
  m[1] *= -det;
  m[3] *= -det;
  m[4] = a22;
  const b1 = -m[0] * m[2] - m[1] * m[5];
  const b2 = -m[3] * m[2] - m[4] * m[5];
  m[2] = b1;
  m[5] = b2;
  const c = img.channels;
  const sw = img.width;
  const sh = img.height;
  const out = new Uint8Array(dw * dh * c);
  const roundDelta = AB_SCALE / INTER_TAB / 2;
  const adelta = new Int32Array(dw);
  const bdelta = new Int32Array(dw);
  for (let x = 0; x < dw; x++) {
    adelta[x] = rint(m[0] * x * AB_SCALE);
    bdelta[x] = rint(m[3] * x * AB_SCALE);
  }
  const shift = AB_BITS - INTER_BITS;
  const cx = (v) => (v < 0 ? 0 : v >= sw ? sw - 1 : v);
  const cy = (v) => (v < 0 ? 0 : v >= sh ? sh - 1 : v);
  for (let y = 0; y < dh; y++) {
    const X0 = rint((m[1] * y + m[2]) * AB_SCALE) + roundDelta;
    const Y0 = rint((m[4] * y + m[5]) * AB_SCALE) + roundDelta;
    for (let x = 0; x < dw; x++) {
      const X = (X0 + adelta[x]) >> shift;
      const Y = (Y0 + bdelta[x]) >> shift;
      const sx = X >> INTER_BITS;
      const sy = Y >> INTER_BITS;
      const fx = X & (INTER_TAB - 1);
      const fy = Y & (INTER_TAB - 1);
      // 2-D weights: products of (32 - f, f) scaled to 2^15 (exact: multiples of 32)
      const w00 = (INTER_TAB - fx) * (INTER_TAB - fy) * 32;
      const w01 = fx * (INTER_TAB - fy) * 32;
      const w10 = (INTER_TAB - fx) * fy * 32;
      const w11 = fx * fy * 32;
      const x0 = cx(sx);
      const x1 = cx(sx + 1);
      const y0 = cy(sy);
      const y1 = cy(sy + 1);
      const p00 = (y0 * sw + x0) * c;
      const p01 = (y0 * sw + x1) * c;
      const p10 = (y1 * sw + x0) * c;
      const p11 = (y1 * sw + x1) * c;
      const o = (y * dw + x) * c;
      for (let k = 0; k < c; k++) {
        const v =
          (img.data[p00 + k] * w00 +
            img.data[p01 + k] * w01 +
            img.data[p10 + k] * w10 +
            img.data[p11 + k] * w11 +
            (1 << (REMAP_BITS - 1))) >>
          REMAP_BITS;
        out[o + k] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return makeImage(dw, dh, c, out);
}
