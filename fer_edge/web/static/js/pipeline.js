// The in-browser pipeline of `fer-edge image`: config.json (from the Python definitions), the two ONNX
// models on onnxruntime-web (wasm, vendored: nothing from a CDN), detect -> frame -> classify.
import * as ort from "../vendor/ort.wasm.min.mjs";
import { classify, describe } from "./classify.js";
import { detectFaces } from "./detect.js";
import { faceCrop } from "./framing.js";
import { rgbaToRgb } from "./imaging.js";

export async function loadPipeline(base) {
  const config = await (await fetch(new URL("config.json", base))).json();
  ort.env.wasm.wasmPaths = new URL("vendor/", base).href;
  ort.env.wasm.numThreads = 1; // a static host is not cross-origin isolated: no wasm threads
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const detector = await ort.InferenceSession.create(new URL(config.detector.model, base).href, options);
  const classifier = await ort.InferenceSession.create(new URL(config.classifier.model, base).href, options);
  return {
    config,
    runtime: `onnxruntime-web ${ort.env.versions ? ort.env.versions.web : "?"} (wasm, ${ort.env.wasm.numThreads} thread)`,
    /** faces of an RGB image {width, height, channels: 3, data}; ``trace``: an object that receives the
     * detections and the crops (the parity check's diagnostics) */
    async detectEmotions(img, trace = null) {
      const t0 = performance.now();
      const detections = await detectFaces(ort, detector, img, config.detector, trace);
      const t1 = performance.now();
      const crops = detections.map((d) => faceCrop(img, d.crop, config.detector.crop_grid));
      const t2 = performance.now();
      const rows = await classify(ort, classifier, crops, config.classifier);
      if (trace) {
        Object.assign(trace, { detections, crops });
        trace.ms = Object.assign(trace.ms || {}, { detect: t1 - t0, crop: t2 - t1, classify: performance.now() - t2 });
      }
      return describe(detections, rows, config.classifier.labels);
    },
  };
}

/** The RGB pixels of an image source (ImageBitmap, video, canvas) as decoded, without colour management. */
export function pixelsOf(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(source, 0, 0);
  return rgbaToRgb(ctx.getImageData(0, 0, width, height).data, width, height);
}

export async function decodeBlob(blob) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const img = pixelsOf(bitmap, bitmap.width, bitmap.height);
  return { bitmap, img };
}
