"""The live view's page: one self-contained HTML document (no external assets), served at ``/``.

It shows ``/stream.mjpg`` (the annotated frames) and polls ``/api/state`` once a second for the
faces, emotions, fps and delivery state. Python 3.6 compatible (device code).
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fer-edge live view</title>
<style>
  html, body { margin: 0; padding: 0; }
  body { background: #eeece4; color: #1d2327; font: 14px/1.4 system-ui, sans-serif; }
  header { height: 40px; line-height: 40px; padding: 0 12px; background: #1d3b4a; color: #fff;
           white-space: nowrap; overflow: hidden; }
  main { display: flex; flex-wrap: wrap; align-items: flex-start; padding: 12px; }
  #stream { display: block; margin: 0 12px 12px 0; max-width: 100%; background: #000; }
  section { flex: 1 1 300px; min-width: 0; }
  h2 { font-size: 15px; margin: 0 0 4px; }
  table { border-collapse: collapse; margin-bottom: 12px; }
  td, th { padding: 2px 8px 2px 0; text-align: left; vertical-align: top; }
  .bad { color: #b00020; font-weight: bold; }
  .ok { color: #1b6e20; font-weight: bold; }
  .muted { color: #666; }
</style>
</head>
<body>
<header>fer-edge live view &middot; <span id="device">-</span> &middot; model <span id="model">-</span></header>
<main>
  <img id="stream" src="stream.mjpg" alt="annotated camera stream">
  <section>
    <h2>Agent</h2>
    <table>
      <tr><th>fps</th><td id="fps">-</td></tr>
      <tr><th>frames</th><td id="frames">-</td></tr>
      <tr><th>last frame</th><td id="frame">-</td></tr>
      <tr><th>viewers</th><td id="viewers">-</td></tr>
    </table>
    <h2>Faces</h2>
    <table id="faces"><tr><td class="muted">waiting for the first frame</td></tr></table>
    <h2>Delivery</h2>
    <table id="delivery"><tr><td class="muted">-</td></tr></table>
    <p id="error" class="bad"></p>
  </section>
</main>
<script>
"use strict";
function text(id, value) { document.getElementById(id).textContent = value; }
function cell(row, value, cls) {
  var td = document.createElement("td"); td.textContent = value; if (cls) { td.className = cls; }
  row.appendChild(td); return td;
}
function fill(table, rows) {
  while (table.firstChild) { table.removeChild(table.firstChild); }
  rows.forEach(function (cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (c) { cell(tr, c[0], c[1]); });
    table.appendChild(tr);
  });
}
function top3(scores) {
  return Object.keys(scores).sort(function (a, b) { return scores[b] - scores[a]; }).slice(0, 3)
    .map(function (k) { return k + " " + scores[k].toFixed(2); }).join(", ");
}
function show(s) {
  text("device", s.device_id); text("model", s.model || "-");
  text("fps", s.fps.toFixed(1)); text("frames", s.frames);
  text("frame", s.frame === null ? "-" : "#" + s.frame + (s.width ? " (" + s.width + "x" + s.height + ")" : ""));
  text("viewers", s.view.stream_clients + " of " + s.view.max_clients);
  var faces = s.faces.slice().sort(function (a, b) { return a.track_id - b.track_id; }).map(function (f) {
    return [["#" + f.track_id], [f.emotion + " " + Math.round(100 * f.confidence) + "%"],
            [f.box.join(",")], [top3(f.scores), "muted"]];
  });
  fill(document.getElementById("faces"), faces.length ? [[["track"], ["emotion"], ["box x,y,w,h"], ["scores"]]]
       .concat(faces) : [[["no faces", "muted"]]]);
  var d = s.delivery || s.counters || {};
  var rows = Object.keys(d).sort().map(function (k) {
    var v = d[k], cls = "";
    if (k === "connected") { cls = v ? "ok" : "bad"; v = v ? "yes" : "no"; }
    if ((k === "dropped" || k === "failed") && v > 0) { cls = "bad"; }
    return [[k], [String(v), cls]];
  });
  fill(document.getElementById("delivery"), rows.length ? rows : [[["no publisher counters", "muted"]]]);
  text("error", "");
}
// the state's URL without the user:password@ a bookmark may carry (fetch refuses such URLs; the
// browser sends the credentials it was given for this page by itself)
var stateUrl = location.origin + location.pathname.replace(/[^/]*$/, "") + "api/state";
function poll() {
  fetch(stateUrl, {cache: "no-store"}).then(function (r) { return r.json(); }).then(show)
    .catch(function (e) { text("error", "agent not reachable (" + e + ")"); });
}
var img = document.getElementById("stream");
img.onerror = function () {
  text("error", "stream unavailable (too many viewers, or the agent stopped); retrying");
  setTimeout(function () { img.src = "stream.mjpg?t=" + Date.now(); }, 3000);
};
poll();
setInterval(poll, 1000);
</script>
</body>
</html>
"""
