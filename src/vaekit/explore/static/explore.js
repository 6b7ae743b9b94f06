// vaekit explore: the page. Plain JS and canvas; the server decodes, the page draws.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf"];
const $ = (id) => document.getElementById(id);
let info = null;
let z = null;               // the code shown in "Decoded": latent_dim numbers
let view = null;            // scatter view: centre (cx, cy) in plane units and pixels per unit
let marker = null;          // the plane point of z, drawn as a cross

// --- talking to the server ------------------------------------------------------------------------

async function post(url, body) {
  const response = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body)});
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// Dragging asks for many decodes; only one is in flight and only the newest waiting one follows it,
// so the image keeps up with the pointer instead of replaying a queue.
let inFlight = false, waiting = null;
let drawSeed = 0;  // with "draw" on, the seed of the drawn values: kept while z moves, so the noise stays put
function requestDecode(code) {
  waiting = code.slice();
  if (!inFlight) sendDecode();
}
async function sendDecode() {
  const code = waiting;
  waiting = null;
  inFlight = true;
  try {
    const body = {z: code};
    if (info.conditional_classes && $("decode-class").value !== "") body.class = Number($("decode-class").value);
    if ($("decode-draw").checked) { body.draw = true; body.seed = drawSeed; }
    const data = await post("/api/decode", body);
    showDecoded(data.items[0]);
    $("status").textContent = "";
  } catch (err) {
    $("status").textContent = "decode failed: " + err.message;
  }
  inFlight = false;
  if (waiting) sendDecode();
}
window.exploreIdle = () => !inFlight && !waiting;  // for tests: every asked decode has been drawn

// --- drawing items --------------------------------------------------------------------------------

function drawImage(canvas, b64) {
  const [c, h, w] = info.item_shape;
  const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));  // (C, H, W)
  const small = document.createElement("canvas");
  small.width = w; small.height = h;
  const ctx = small.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let p = 0; p < h * w; p++) {
    for (let k = 0; k < 3; k++) img.data[4 * p + k] = bytes[(c === 1 ? 0 : k) * h * w + p];
    img.data[4 * p + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  const out = canvas.getContext("2d");
  out.imageSmoothingEnabled = false;
  out.drawImage(small, 0, 0, canvas.width, canvas.height);
}

function rowsTable(rows, rowNames) {
  const table = document.createElement("table");
  const head = table.insertRow();
  head.insertCell().textContent = "";
  for (const name of info.features) { const th = document.createElement("th"); th.textContent = name; head.appendChild(th); }
  rows.forEach((row, r) => {
    const tr = table.insertRow();
    tr.insertCell().textContent = rowNames[r];
    for (const v of row) tr.insertCell().textContent = v.toPrecision(4);
  });
  return table;
}

function itemFigure(item, caption, size) {
  const fig = document.createElement("figure");
  if (info.kind === "image") {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = size;
    drawImage(canvas, item);
    fig.appendChild(canvas);
  }
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.appendChild(cap);
  return fig;
}

function showDecoded(item) {
  if (info.kind === "image") { drawImage($("decoded"), item); return; }
  const box = $("decoded-table");
  box.replaceChildren(rowsTable([item], ["decoded"]));
}

// --- the plane: points, zoom, the map back to z -----------------------------------------------------

function planeToZ(p) {  // z = center + axes^T p, clipped to the bound the server accepts
  return info.center.map((c, d) => {
    const v = c + info.axes[0][d] * p[0] + info.axes[1][d] * p[1];
    return Math.max(-info.z_bound, Math.min(info.z_bound, v));
  });
}
function zToPlane(code) {  // p = axes (z - center): where z falls on the plane
  return [0, 1].map((a) => code.reduce((s, v, d) => s + info.axes[a][d] * (v - info.center[d]), 0));
}

function resetView() {
  const xs = info.points.map((p) => p[0]), ys = info.points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const span = Math.max(x1 - x0, y1 - y0, 1e-3) * 1.1;
  view = {cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, scale: (PLOT.size) / span};
  drawScatter();
}

const PLOT = {left: 56, top: 12, size: 520};  // the square plot area inside the canvas
const toPx = (p) => [PLOT.left + PLOT.size / 2 + (p[0] - view.cx) * view.scale,
                     PLOT.top + PLOT.size / 2 - (p[1] - view.cy) * view.scale];
const toPlane = (x, y) => [view.cx + (x - PLOT.left - PLOT.size / 2) / view.scale,
                           view.cy - (y - PLOT.top - PLOT.size / 2) / view.scale];

function niceStep(range) {
  const raw = range / 6, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
}

function drawScatter() {
  const canvas = $("scatter"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.save();
  ctx.beginPath(); ctx.rect(PLOT.left, PLOT.top, PLOT.size, PLOT.size); ctx.clip();
  info.points.forEach((p, i) => {
    const [x, y] = toPx(p);
    ctx.fillStyle = info.labels ? PALETTE[info.labels[i] % PALETTE.length] : "#1f77b4";
    ctx.globalAlpha = 0.7;
    ctx.fillRect(x - 2, y - 2, 4, 4);
  });
  ctx.globalAlpha = 1;
  if (marker) {
    const [x, y] = toPx(marker);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(x - 8, y); ctx.lineTo(x + 8, y); ctx.moveTo(x, y - 8); ctx.lineTo(x, y + 8); ctx.stroke();
  }
  ctx.restore();
  drawAxes(ctx);
}

function drawAxes(ctx) {
  ctx.strokeStyle = "#333"; ctx.fillStyle = "#333"; ctx.lineWidth = 1; ctx.font = "11px sans-serif";
  ctx.strokeRect(PLOT.left, PLOT.top, PLOT.size, PLOT.size);
  const [lo, hi] = [toPlane(PLOT.left, PLOT.top + PLOT.size), toPlane(PLOT.left + PLOT.size, PLOT.top)];
  for (const a of [0, 1]) {
    const step = niceStep(hi[a] - lo[a]);
    for (let t = Math.ceil(lo[a] / step) * step; t <= hi[a]; t += step) {
      const label = Math.abs(t) < step / 1e6 ? "0" : +t.toPrecision(6) + "";
      if (a === 0) {
        const [x] = toPx([t, 0]);
        ctx.fillText(label, x - ctx.measureText(label).width / 2, PLOT.top + PLOT.size + 14);
      } else {
        const [, y] = toPx([0, t]);
        ctx.fillText(label, PLOT.left - 6 - ctx.measureText(label).width, y + 4);
      }
    }
  }
  ctx.font = "12px sans-serif";
  const xName = info.axis_names[0];
  ctx.fillText(xName, PLOT.left + PLOT.size / 2 - ctx.measureText(xName).width / 2, PLOT.top + PLOT.size + 34);
  ctx.save();
  ctx.translate(16, PLOT.top + PLOT.size / 2); ctx.rotate(-Math.PI / 2);
  ctx.fillText(info.axis_names[1], -ctx.measureText(info.axis_names[1]).width / 2, 0);
  ctx.restore();
}

function nearestItem(p) {
  let best = 0, bestD = Infinity;
  info.points.forEach((q, i) => {
    const d = (q[0] - p[0]) ** 2 + (q[1] - p[1]) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  });
  return best;
}

function pointAt(p) {  // a click or drag on the plane: decode there, move the sliders, name the nearest item
  setCode(planeToZ(p));
  const i = nearestItem(p);
  const label = info.labels ? ` (class ${className(info.labels[i])})` : "";
  const near = $("nearest");
  near.replaceChildren(`nearest test item: #${i}${label} `);
  for (const which of ["a", "b"]) {
    const button = document.createElement("button");
    button.type = "button"; button.textContent = `use as ${which.toUpperCase()}`;
    button.onclick = () => { $("item-" + which).value = i; };
    near.appendChild(button);
  }
}

function setupScatter() {
  const canvas = $("scatter");
  let drag = null;  // "decode" or {x, y, cx, cy} for a pan
  const local = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    const [x, y] = local(e);
    if (e.shiftKey) { drag = {x, y, cx: view.cx, cy: view.cy}; return; }
    drag = "decode";
    pointAt(toPlane(x, y));
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const [x, y] = local(e);
    if (drag === "decode") { pointAt(toPlane(x, y)); return; }
    view.cx = drag.cx - (x - drag.x) / view.scale; view.cy = drag.cy + (y - drag.y) / view.scale;
    drawScatter();
  });
  canvas.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [x, y] = local(e);
    zoom(e.deltaY < 0 ? 1.25 : 0.8, toPlane(x, y));
  }, {passive: false});
  $("zoom-in").onclick = () => zoom(1.5, [view.cx, view.cy]);
  $("zoom-out").onclick = () => zoom(1 / 1.5, [view.cx, view.cy]);
  $("zoom-reset").onclick = resetView;
}

function zoom(factor, at) {  // keep the plane point `at` under the same pixel
  view.cx = at[0] + (view.cx - at[0]) / factor;
  view.cy = at[1] + (view.cy - at[1]) / factor;
  view.scale *= factor;
  drawScatter();
}

// --- sliders --------------------------------------------------------------------------------------

function setupSliders() {
  const box = $("sliders");
  info.dims.forEach((d, k) => {
    const name = document.createElement("label");
    name.textContent = `z${d + 1}`;
    name.title = `${info.use_name}: ${info.dim_use[k]}`;
    const slider = document.createElement("input");
    const [lo, hi] = info.dim_range[k];
    Object.assign(slider, {type: "range", min: lo, max: hi, step: 0.01, className: "slider", id: `slider-${d}`});
    slider.dataset.dim = d;
    const out = document.createElement("output");
    slider.addEventListener("input", () => {
      z[d] = parseFloat(slider.value);
      out.textContent = z[d].toFixed(2);
      marker = zToPlane(z);
      drawScatter();
      requestDecode(z);
    });
    name.htmlFor = slider.id;
    box.append(name, slider, out);
  });
  const hidden = info.latent_dim - info.dims.length;
  $("slider-note").textContent = `(ordered by ${info.use_name}, most used first` +
    (hidden > 0 ? `; the ${hidden} least used dims are not shown and keep their value)` : ")");
}

function setCode(code) {  // show a new z everywhere: sliders, marker, decoded image
  z = code;
  for (const slider of document.querySelectorAll(".slider")) {
    const d = +slider.dataset.dim;
    slider.value = z[d];
    slider.nextElementSibling.textContent = z[d].toFixed(2);
  }
  marker = zToPlane(z);
  $("decoded-at").textContent = "plane point (" + marker.map((v) => v.toFixed(2)).join(", ") + ")";
  drawScatter();
  requestDecode(z);
}

// --- interpolation, anomalies, metrics -----------------------------------------------------------

async function interpolate(e) {
  if (e) e.preventDefault();
  const body = {i: +$("item-a").value, j: +$("item-b").value, steps: +$("steps").value};
  if ($("decode-draw").checked) { body.draw = true; body.seed = drawSeed; }
  const strip = $("interp");
  try {
    const data = await post("/api/interpolate", body);
    $("interp-error").textContent = "";
    if (info.kind === "table") {
      const names = ["A #" + body.i, ...data.frames.map((_, k) => "frame " + (k + 1)), "B #" + body.j];
      strip.replaceChildren(rowsTable([data.ends[0], ...data.frames, data.ends[1]], names));
      return;
    }
    const figs = data.frames.map((item, k) => {
      const fig = itemFigure(item, String(k + 1), 56);
      fig.classList.add("frame");
      return fig;
    });
    const ends = [["A #" + body.i, data.ends[0]], ["B #" + body.j, data.ends[1]]].map(([cap, item]) => {
      const fig = itemFigure(item, cap, 56);
      fig.classList.add("end");
      return fig;
    });
    strip.replaceChildren(ends[0], ...figs, ends[1]);
  } catch (err) {
    $("interp-error").textContent = err.message;
  }
}

function className(label) {
  return info.class_names && info.class_names[label] !== undefined ? info.class_names[label] : String(label);
}

function showExtremes(id, entries) {
  const box = $(id);
  const caption = (x) => `#${x.index}` + (x.label === null ? "" : ` (${className(x.label)})`) + `\n${x.score}`;
  if (info.kind === "table") {
    box.replaceChildren(rowsTable(entries.map((x) => x.item), entries.map((x) => caption(x).replace("\n", ": "))));
    return;
  }
  box.replaceChildren(...entries.map((x) => {
    const fig = itemFigure(x.item, caption(x), 56);
    fig.classList.add("pick");
    fig.title = "click: use as interpolation item A (shift-click: B)";
    fig.onclick = (e) => { $(e.shiftKey ? "item-b" : "item-a").value = x.index; };
    return fig;
  }));
}

function showMetrics() {
  const m = info.metrics, table = $("metrics");
  const rows = Object.entries(m.test).map(([k, v]) => [`test ${k}`, v === null ? "n/a" : (+v).toFixed(3)]);
  rows.push(["epochs", m.epochs], ["best epoch", m.best_epoch ?? "n/a"]);
  if (m.wall_seconds !== null && m.wall_seconds !== undefined) rows.push(["training time (s)", m.wall_seconds.toFixed(1)]);
  for (const [k, v] of rows) {
    const tr = table.insertRow();
    tr.insertCell().textContent = k; tr.insertCell().textContent = v;
  }
  if (info.files.includes("curves.png")) $("curves").src = "/run/curves.png";
  else $("curves").remove();
  if (!info.files.includes("report.html")) $("report-link").replaceWith("no report.html in this run");
}

function showHeader() {
  document.title = "vaekit explore: " + info.run;
  $("run-name").textContent = info.run;
  $("run-line").textContent = `${info.dataset}, ${info.model}, latent dim ${info.latent_dim}, ` +
    `${info.points.length} ${info.items}`;
  $("scatter-title").textContent = `Latent space: latent means of the ${info.items}`;
  $("extremes-title").textContent = `Strangest and most ordinary ${info.items}`;
  $("plane-note").textContent = info.latent_dim > 2
    ? "The plane is the first two principal components of the latent means. A point p of it decodes " +
      "from z = mean + PC1·p1 + PC2·p2: the other principal directions stay at the mean."
    : "The plane is the latent space itself: a point decodes from z = (its coordinates).";
  $("score-note").textContent = `Score: ${info.score_name}; higher is stranger. Click an item: interpolation A; shift-click: B.`;
  if (info.kind === "image") $("decoded-table").remove(); else $("decoded").remove();
  if (info.conditional_classes) {  // a model of labels: decode a chosen class, or the mixture of all
    const choices = [["", "all (mixture)"]];
    for (let k = 0; k < info.conditional_classes; k++) {
      choices.push([String(k), info.conditional_class_names[k]]);
    }
    $("decode-class").replaceChildren(...choices.map(([value, text]) => {
      const option = document.createElement("option");
      option.value = value; option.textContent = text;
      return option;
    }));
    $("decode-class").addEventListener("change", () => requestDecode(z));
    $("class-row").hidden = false;
  }
  // An autoregressive likelihood's mean is only approximated (mean-field): its exact pictures are drawn, so
  // such a model starts with "draw" on.
  $("decode-draw").checked = info.approximate_mean;
  $("redraw").disabled = !info.approximate_mean;
  $("draw-note").textContent = info.approximate_mean
    ? "this likelihood is autoregressive: its mean is approximated; drawn values are its exact samples"
    : "unticked: the likelihood's mean";
  $("decode-draw").addEventListener("change", () => {
    $("redraw").disabled = !$("decode-draw").checked;
    requestDecode(z);
    interpolate();
  });
  $("redraw").addEventListener("click", () => {
    drawSeed = (drawSeed + 1) % 2147483648;
    requestDecode(z);
    interpolate();
  });
  if (info.labels) {
    const names = info.class_names || [...new Set(info.labels)].sort((a, b) => a - b).map(String);
    $("legend").replaceChildren(...names.map((name, k) => {
      const span = document.createElement("span");
      const dot = document.createElement("i");
      dot.style.background = PALETTE[k % PALETTE.length];
      span.append(dot, name);
      return span;
    }));
  }
}

async function main() {
  const response = await fetch("/api/info");
  info = await response.json();
  $("item-a").max = $("item-b").max = info.points.length - 1;
  $("steps").max = info.max_steps;
  showHeader();
  setupScatter();
  setupSliders();
  resetView();
  showExtremes("most", info.most_anomalous);
  showExtremes("least", info.least_anomalous);
  showMetrics();
  $("interp-form").addEventListener("submit", interpolate);
  setCode(info.center.slice());
  await interpolate();
  document.body.dataset.ready = "1";  // for tests and screenshots: the first decode and strip are drawn
}

main().catch((err) => { $("status").textContent = "could not load the run: " + err.message; });
