// vid2vid app: the page. It holds no model logic: it sends inputs to the server's API and shows what comes back.
"use strict";

const $ = (id) => document.getElementById(id);
let exports = [];
const current = () => exports.find((e) => e.id === $("export").value);

async function api(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({error: `${url}: HTTP ${response.status}`}));
  if (!response.ok) throw new Error(body.error || `${url}: HTTP ${response.status}`);
  return body;
}

function showError(text) { $("error").textContent = text || ""; }

// ---- models ----
async function loadExports() {
  exports = await api("/api/exports");
  $("export").innerHTML = "";
  for (const e of exports) {
    const option = new Option(`${e.id} (${e.kind}: ${e.model}, ${e.input})`, e.id);
    $("export").add(option);
  }
  $("export").addEventListener("change", chooseExport);
  chooseExport();
}

function chooseExport() {
  const e = current();
  if (!e) return;
  const steps = e.steps === null ? "steps unknown" : `${e.steps} training steps`;
  $("export-info").textContent = `${e.kind} model · ${e.input} · ${e.labels} labels · ${steps} · ${e.size}`;
  $("labels").value = e.default_labels;
  $("size").value = e.input === "face" ? "" : e.size;  // a face model's size is its crop's (--size refused)
  $("sequence").innerHTML = '<option value="">(none)</option>';
  for (const s of e.sequences) $("sequence").add(new Option(s, s));
  const first = $("first-frame");
  for (const o of [...first.options]) if (o.value.startsWith("image-model:")) o.remove();
  for (const other of exports.filter((x) => x.kind === "image" && x.input === e.input)) {
    first.add(new Option(`image model ${other.id}`, `image-model:${other.id}`));
  }
  setupPalette(e);
}

// ---- tabs ----
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    for (const m of document.querySelectorAll(".mode")) m.hidden = m.id !== `mode-${tab.dataset.mode}`;
  });
}

// ---- jobs: progress, then the player, E_warp and its plot ----
let activeJob = null;  // the job this tab shows: an earlier one still polling stops showing anything

async function runJob(jobId) {
  activeJob = jobId;
  $("job").hidden = false;
  $("result").hidden = true;
  for (;;) {
    const s = await api(`/api/jobs/${jobId}`);
    if (activeJob !== jobId) return;
    $("progress").max = s.total;
    $("progress").value = s.frames;
    $("progress-text").textContent = `${s.state}: ${s.frames} / ${s.total} frames, ${s.fps.toFixed(2)} frames/s`;
    if (s.state === "failed") { showError(s.error); return; }
    if (s.state === "done") break;
    await new Promise((r) => setTimeout(r, 300));
  }
  const metrics = await api(`/api/jobs/${jobId}/metrics`);
  if (activeJob === jobId) showResult(jobId, metrics);
}

function showResult(jobId, m) {
  $("result").hidden = false;
  $("panels").textContent = m.panels.join(" | ");
  const player = $("player");
  player.src = `/api/jobs/${jobId}/player`;
  player.dataset.fps = m.fps;
  player.dataset.frames = m.frames;
  $("scrub").max = m.frames - 1;
  $("scrub").value = 0;
  $("player-frames").textContent = `${m.frames} frames`;
  $("download").href = `/api/jobs/${jobId}/video`;
  const fmt = (v) => (v === null ? "n/a" : (v * 1e3).toFixed(3));
  $("ewarp").textContent = m.e_warp_output === null ? "E_warp: needs 2 frames or more" :
    `E_warp ×1e3: output ${fmt(m.e_warp_output)} · input ${fmt(m.e_warp_input)} (${m.flow})`;
  $("ewarp").dataset.output = m.e_warp_output;
  drawPlot(m, 0);
  $("result").metrics = m;
}

function frameIndex() {
  const p = $("player");
  return Math.min(Math.floor(p.currentTime * Number(p.dataset.fps)), Number(p.dataset.frames) - 1);  // the frame shown
}

$("play").addEventListener("click", () => {
  const p = $("player");
  if (p.paused) p.play(); else p.pause();
});
$("player").addEventListener("play", () => { $("play").textContent = "Pause"; });
$("player").addEventListener("pause", () => { $("play").textContent = "Play"; });
$("player").addEventListener("timeupdate", () => {
  const i = frameIndex();
  $("scrub").value = i;
  $("frame-text").textContent = `frame ${i + 1} / ${$("player").dataset.frames}`;
  if ($("result").metrics) drawPlot($("result").metrics, i);
});
$("scrub").addEventListener("input", () => {
  const p = $("player");
  p.pause();
  p.currentTime = (Number($("scrub").value) + 0.5) / Number(p.dataset.fps);
});

function drawPlot(m, frame) {
  const c = $("plot"), g = c.getContext("2d"), pad = 40;
  g.clearRect(0, 0, c.width, c.height);
  const series = [["output", m.pairs_output, "#d9541e"], ["input", m.pairs_input, "#2b5797"]].filter((s) => s[1].length);
  const all = series.flatMap((s) => s[1]);
  if (!all.length) return;
  const top = Math.max(...all) * 1.1 || 1, n = Math.max(...series.map((s) => s[1].length));
  const x = (i) => pad + (i / Math.max(n - 1, 1)) * (c.width - 2 * pad);
  const y = (v) => c.height - pad - (v / top) * (c.height - 2 * pad);
  g.strokeStyle = "#999"; g.strokeRect(pad, pad, c.width - 2 * pad, c.height - 2 * pad);
  g.fillStyle = "#333"; g.font = "12px sans-serif";
  g.fillText(`E_warp ×1e3 per frame pair (max ${(top * 1e3).toFixed(2)})`, pad, pad - 8);
  g.fillText("frame pair →", c.width - pad - 70, c.height - pad + 16);
  series.forEach(([name, values, colour], k) => {
    g.strokeStyle = colour; g.lineWidth = 2; g.beginPath();
    values.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
    g.stroke();
    g.fillStyle = colour; g.fillText(name, c.width - pad - 60, pad + 14 + 14 * k);
  });
  g.strokeStyle = "#000"; g.lineWidth = 1; g.beginPath();
  g.moveTo(x(Math.min(frame, n - 1)), pad); g.lineTo(x(Math.min(frame, n - 1)), c.height - pad); g.stroke();
}

// ---- your video ----
$("video-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const form = new FormData();
  form.append("export", $("export").value);
  const file = $("video-file").files[0];
  if (file) form.append("video", file); else form.append("sequence", $("sequence").value);
  form.append("labels", $("labels").value);
  form.append("landmarks", $("landmarks").value);
  form.append("first_frame", $("first-frame").value);
  form.append("precision", $("precision").value);
  form.append("size", $("size").value);
  form.append("max_frames", $("max-frames").value);
  try {
    const job = await api("/api/jobs", { method: "POST", body: form });
    await runJob(job.id);
  } catch (e) { showError(e.message); }
});

// ---- paint ----
const paint = { ids: null, w: 0, h: 0, colour: 0, palette: [] };

function setupPalette(e) {
  const [h, w] = e.size.split("x").map(Number);
  Object.assign(paint, { w, h, ids: new Uint8Array(w * h), palette: e.palette, colour: Math.min(1, e.palette.length - 1) });
  $("paint-canvas").width = w;
  $("paint-canvas").height = h;
  $("palette").innerHTML = "";
  e.palette.forEach((rgb, id) => {
    const b = document.createElement("button");
    b.className = "swatch";
    b.id = `swatch-${id}`;
    b.title = `label ${id}`;
    b.textContent = id;
    b.style.background = `rgb(${rgb.join(",")})`;
    b.style.color = rgb[0] + rgb[1] + rgb[2] > 380 ? "#000" : "#fff";
    b.addEventListener("click", () => choose(id));
    $("palette").append(b);
  });
  choose(paint.colour);
  redraw();
}

function choose(id) {
  paint.colour = id;
  for (const b of document.querySelectorAll(".swatch")) b.classList.toggle("active", b.id === `swatch-${id}`);
}

function redraw() {
  const g = $("paint-canvas").getContext("2d"), image = g.createImageData(paint.w, paint.h);
  paint.ids.forEach((id, i) => { image.data.set([...paint.palette[id], 255], 4 * i); });
  g.putImageData(image, 0, 0);
}

function brush(cx, cy) {
  const r = Number($("brush-size").value);
  for (let y = Math.max(0, cy - r); y <= Math.min(paint.h - 1, cy + r); y++)
    for (let x = Math.max(0, cx - r); x <= Math.min(paint.w - 1, cx + r); x++)
      if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) paint.ids[y * paint.w + x] = paint.colour;
}

function fill(cx, cy) {
  const from = paint.ids[cy * paint.w + cx], to = paint.colour;
  if (from === to) return;
  const stack = [[cx, cy]];
  while (stack.length) {
    const [x, y] = stack.pop();
    if (x < 0 || y < 0 || x >= paint.w || y >= paint.h || paint.ids[y * paint.w + x] !== from) continue;
    paint.ids[y * paint.w + x] = to;
    stack.push([x + 1, y], [x - 1, y], [x, y + 1], [x, y - 1]);
  }
}

function canvasPoint(event) {
  const c = $("paint-canvas"), box = c.getBoundingClientRect();
  return [Math.floor(((event.clientX - box.left) / box.width) * c.width),
          Math.floor(((event.clientY - box.top) / box.height) * c.height)];
}

let lastPoint = null;  // the brush's previous point while the button is down

$("paint-canvas").addEventListener("pointerdown", (event) => {
  const [x, y] = canvasPoint(event);
  if ($("tool-fill").checked) fill(x, y); else { brush(x, y); lastPoint = [x, y]; }
  redraw();
});
$("paint-canvas").addEventListener("pointermove", (event) => {
  if (!lastPoint) return;
  const [x, y] = canvasPoint(event), [x0, y0] = lastPoint;
  const n = Math.max(Math.abs(x - x0), Math.abs(y - y0), 1);
  for (let i = 1; i <= n; i++) brush(Math.round(x0 + ((x - x0) * i) / n), Math.round(y0 + ((y - y0) * i) / n));
  lastPoint = [x, y];
  redraw();
});
window.addEventListener("pointerup", () => { lastPoint = null; });

function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return btoa(text);
}

$("paint-render").addEventListener("click", async () => {
  showError("");
  const body = { export: $("export").value, move: $("move").value, frames: Number($("paint-frames").value),
                 labels: { height: paint.h, width: paint.w, data: base64(paint.ids) } };
  try {
    const job = await api("/api/paint", { method: "POST", body: JSON.stringify(body),
                                          headers: { "Content-Type": "application/json" } });
    await runJob(job.id);
  } catch (e) { showError(e.message); }
});

// ---- live ----
// sent: the send time of each frame not yet answered (by number); latencies: send -> picture shown, per frame shown
const live = { socket: null, timer: null, sent: new Map(), latencies: [], received: 0 };

// Browsers give the camera only to localhost or https pages: say so on a page served from elsewhere over http
if (location.protocol !== "https:" && !["127.0.0.1", "localhost", "[::1]"].includes(location.hostname)) {
  $("live-note").textContent = `This page comes from ${location.host} over http, so the browser will not give it the ` +
    "camera: choose a video file, or open the page on the server's own machine (http://127.0.0.1).";
}

$("live-source").addEventListener("change", () => { $("live-file").hidden = $("live-source").value !== "file"; });

async function liveSource() {
  const video = $("live-input");
  if ($("live-source").value === "file") {
    const file = $("live-file").files[0];
    if (!file) throw new Error("choose a video file to play in real time");
    video.srcObject = null;
    video.src = URL.createObjectURL(file);
  } else {
    if (!navigator.mediaDevices) throw new Error("no camera access: browsers give the camera only to localhost or https pages");
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  }
  await video.play();
}

$("live-start").addEventListener("click", async () => {
  showError("");
  live.received = 0;  // this session's frames only (a test or a page waiting on it must not see the last one's)
  try { await liveSource(); } catch (e) { showError(e.message); return; }
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live`);
  socket.binaryType = "blob";
  live.socket = socket;
  live.sent.clear();
  live.latencies = [];
  let seq = 0, size = null, stats = null, pending = false;
  socket.onopen = () => socket.send(JSON.stringify({ export: $("export").value, labels: $("labels").value, size: "" }));
  socket.onmessage = (event) => {
    if (typeof event.data === "string") {
      const message = JSON.parse(event.data);
      if (message.error) { showError(message.error); return; }
      if (message.ready) { size = message.size; live.timer = setInterval(sendFrame, 1000 / 30); return; }
      stats = message;
      return;
    }
    const old = $("live-output").src;
    $("live-output").src = URL.createObjectURL(event.data);
    if (old) URL.revokeObjectURL(old);
    live.received += 1;
    if (stats) {
      const latency = performance.now() - live.sent.get(stats.seq);
      live.latencies.push(latency);
      for (const k of live.sent.keys()) if (k <= stats.seq) live.sent.delete(k);  // answered or dropped
      $("live-stats").textContent = `${stats.fps.toFixed(2)} frames/s · latency ${latency.toFixed(0)} ms · ` +
        `step ${stats.step_ms.toFixed(0)} ms · dropped ${stats.dropped} · shown ${live.received}`;
      $("live-stats").dataset.frames = live.received;
    }
  };
  socket.onclose = () => { if (live.socket === socket) stopLive(); };  // not an older session's late close
  const canvas = document.createElement("canvas");
  function sendFrame() {
    // one frame in flight: the next is taken from the camera when the last one's result came back (the freshest
    // frame, no queue); the server also keeps only the newest frame of any that arrive while it renders
    if (socket.readyState !== WebSocket.OPEN || live.sent.size > 0 || pending || !size) return;
    const video = $("live-input");
    if (!video.videoWidth) return;
    [canvas.height, canvas.width] = size;
    const scale = Math.max(size[1] / video.videoWidth, size[0] / video.videoHeight);  // cover, centred
    const w = video.videoWidth * scale, h = video.videoHeight * scale;
    canvas.getContext("2d").drawImage(video, (size[1] - w) / 2, (size[0] - h) / 2, w, h);
    pending = true;
    const taken = performance.now();
    canvas.toBlob((blob) => {
      pending = false;
      if (socket.readyState !== WebSocket.OPEN) return;
      live.sent.set(seq++, taken);
      socket.send(blob);
    }, "image/jpeg", 0.9);
  }
  $("live-start").disabled = true;
  $("live-stop").disabled = false;
});

function stopLive() {
  clearInterval(live.timer);
  if (live.socket && live.socket.readyState <= WebSocket.OPEN) live.socket.close();
  const video = $("live-input");
  if (video.srcObject) for (const t of video.srcObject.getTracks()) t.stop();
  $("live-start").disabled = false;
  $("live-stop").disabled = true;
}
$("live-stop").addEventListener("click", stopLive);

loadExports().catch((e) => showError(e.message));
