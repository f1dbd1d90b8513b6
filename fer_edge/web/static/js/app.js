// The demo page: a photo or the webcam, run on the server (POST /v1/emotions) or in this browser
// (pipeline.js), faces drawn over the image. window.fer is the hook `fer-edge web --check` and the tests use.
import { decodeBlob, loadPipeline, pixelsOf } from "./pipeline.js";
import { drawFaces, listFaces } from "./draw.js";

const base = new URL(".", document.baseURI);
const $ = (id) => document.getElementById(id);
const state = { config: null, pipeline: null, stream: null, busy: false, runs: 0, last: null };

function mode() {
  return $("mode-server").checked ? "server" : "browser";
}

async function browserPipeline() {
  if (!state.pipeline) state.pipeline = await loadPipeline(base);
  return state.pipeline;
}

async function onServer(blob) {
  const headers = { "Content-Type": blob.type || "application/octet-stream" };
  const key = $("api-key").value.trim();
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(state.config.api, { method: "POST", body: blob, headers });
  const body = await response.json();
  if (!response.ok) throw new Error(`${response.status}: ${body.error ? body.error.message : response.statusText}`);
  return body.faces;
}

async function analyse(source, width, height, blob) {
  const started = performance.now();
  const faces =
    mode() === "server"
      ? await onServer(blob || (await frameBlob(source, width, height)))
      : await (await browserPipeline()).detectEmotions(pixelsOf(source, width, height));
  const ms = performance.now() - started;
  drawFaces($("view"), source, width, height, faces);
  listFaces($("faces"), faces);
  state.runs += 1;
  state.last = { mode: mode(), faces, ms };
  $("status").textContent = `${faces.length} face(s), ${mode() === "server" ? "on the server" : "in this browser"}, ${ms.toFixed(0)} ms`;
  return faces;
}

async function frameBlob(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext("2d").drawImage(source, 0, 0);
  return canvas.convertToBlob({ type: "image/png" });
}

async function onFile() {
  const file = $("file").files[0];
  if (!file) return;
  stopWebcam();
  try {
    const { bitmap } = await decodeBlob(file);
    await analyse(bitmap, bitmap.width, bitmap.height, file);
  } catch (err) {
    $("status").textContent = `error: ${err.message}`;
  }
}

async function webcamLoop() {
  const video = $("video");
  while (state.stream) {
    if (video.readyState >= 2 && video.videoWidth) {
      try {
        await analyse(video, video.videoWidth, video.videoHeight, null);
      } catch (err) {
        $("status").textContent = `error: ${err.message}`;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
}

async function startWebcam() {
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (err) {
    $("status").textContent = `no webcam: ${err.message}`;
    return;
  }
  const video = $("video");
  video.srcObject = state.stream;
  await video.play();
  $("stop").hidden = false;
  webcamLoop();
}

function stopWebcam() {
  if (!state.stream) return;
  state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  $("stop").hidden = true;
}

async function main() {
  state.config = await (await fetch(new URL("config.json", base))).json();
  if (state.config.api) {
    $("mode-server").checked = true;
    $("key-label").hidden = !state.config.api_key_required;
  } else {
    $("mode-server").disabled = true;
    $("mode-browser").checked = true;
  }
  if (state.config.browser === false) {
    $("mode-browser").disabled = true;
    $("mode-browser").title = state.config.browser_off;
  }
  $("file").addEventListener("change", onFile);
  $("webcam").addEventListener("click", startWebcam);
  $("stop").addEventListener("click", stopWebcam);
  $("status").textContent = "Ready: choose a photo or use the webcam.";
  window.fer = {
    ready: true,
    state,
    /** The in-browser pipeline on an image URL: the faces and the milliseconds (the parity check, the benchmark). */
    async run(url, repeat = 1, traced = false) {
      const pipeline = await browserPipeline();
      const { img } = await decodeBlob(await (await fetch(url)).blob());
      let faces = null;
      const times = [];
      const trace = {};
      const stages = [];
      for (let i = 0; i < repeat; i++) {
        const t0 = performance.now();
        faces = await pipeline.detectEmotions(img, trace);
        times.push(performance.now() - t0);
        stages.push(trace.ms);
      }
      const out = { faces, times, stages, width: img.width, height: img.height, runtime: pipeline.runtime };
      if (traced) {
        out.regions = trace.detections.map((d) => d.crop);
        out.crops = trace.crops.map((c) => ({ width: c.width, height: c.height, channels: c.channels, data: Array.from(c.data) }));
      }
      return out;
    },
  };
}

main();
