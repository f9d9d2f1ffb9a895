// medseg viewer: upload a case, follow the job, then scroll slices of the image with the label overlay.
// Plain DOM + canvas, no dependencies, nothing fetched from outside this server.
"use strict";

// Okabe & Ito (2008) colour-blind-safe palette, black left out (the background of most images); sky blue first:
// it stands out on both grey scans and red fundus photographs, where orange would not.
const PALETTE = ["#56B4E9", "#E69F00", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"];
const POLL_MS = 250;

const $ = (id) => document.getElementById(id);
const state = { job: null, preview: null, slice: 0, visible: new Set(), cache: new Map(), render: 0 };
window.medsegViewer = state;  // for people (and tests) who want to look inside

function rgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

function colour(index) {
  return PALETTE[(index - 1) % PALETTE.length];
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function showWarnings(warnings) {
  const box = $("warnings");
  box.textContent = warnings.map((w) => `Warning: ${w}.`).join(" ");
  box.hidden = !warnings.length;
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

async function loadModels() {
  const [models, info] = await Promise.all([getJSON("/models"), getJSON("/info")]);
  const select = $("model");
  select.textContent = "";
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = `${m.name} (${m.spatial_dims}D, ${m.input_channels} channel${m.input_channels > 1 ? "s" : ""})`;
    option.dataset.labels = Object.keys(m.labels).join(", ");
    select.appendChild(option);
  }
  const describe = () => {
    const o = select.selectedOptions[0];
    $("model-labels").textContent = o ? `labels: ${o.dataset.labels}` : "";
  };
  select.addEventListener("change", describe);
  describe();
  $("accepts").textContent = `Accepts ${info.accepts}; up to ${(info.limits.max_upload_bytes / 1048576).toFixed(0)} MiB.`;
  $("server-info").textContent = `version ${info.version}`;
}

function setStatus(text, progress) {
  $("status-text").textContent = text;
  const bar = $("progress");
  bar.hidden = progress === null;
  if (progress !== null) bar.value = progress;
}

async function upload(event) {
  event.preventDefault();
  showError("");
  showWarnings([]);
  const file = $("file").files[0];
  if (!file) { showError("choose an image file first"); return; }
  const form = new FormData();
  form.append("model", $("model").value);
  form.append("file", file);
  $("upload").disabled = true;
  $("viewer").hidden = true;
  $("viewer").dataset.state = "empty";
  state.started = performance.now();
  setStatus("uploading…", 0);
  try {
    const job = await getJSON("/predict", { method: "POST", body: form });
    state.job = job.id;
    await follow(job.id);
  } catch (e) {
    showError(e.message);
    setStatus("", null);
  } finally {
    $("upload").disabled = false;
  }
}

async function follow(id) {
  let job;
  for (;;) {
    job = await getJSON(`/jobs/${id}`);
    if (state.job !== id) return;  // a newer upload took over
    setStatus(`${job.status}: ${job.stage} (${Math.round(job.progress * 100)} %)`, job.progress);
    if (job.status === "done") break;
    if (job.status === "failed") throw new Error(`the job failed: ${job.error}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  await showResult(id);
  showWarnings(job.warnings || []);
}

async function showResult(id) {
  const [preview, volumes, lesions] = await Promise.all([
    getJSON(`/jobs/${id}/preview`), getJSON(`/jobs/${id}/volumes`), getJSON(`/jobs/${id}/lesions`)]);
  state.preview = preview;
  state.cache = new Map();
  state.visible = new Set(preview.labels.map((l) => l.index));
  const slider = $("slice");
  slider.max = String(preview.slices - 1);
  state.slice = Math.floor((preview.slices - 1) / 2);
  slider.value = String(state.slice);
  slider.disabled = preview.slices < 2;
  buildLegend(preview.labels);
  fillVolumes(volumes);
  fillLesions(lesions);
  fillComponents(lesions, preview.spatial_dims);
  fillDownloads(id, preview.formats);
  const view = $("view");
  view.width = preview.shape[preview.shape.length - 1];
  view.height = preview.shape[preview.shape.length - 2];
  // physical aspect ratio: rows are spacing[-2] mm apart, columns spacing[-1] mm
  const sp = preview.spacing;
  view.style.aspectRatio = `${view.width * sp[sp.length - 1]} / ${view.height * sp[sp.length - 2]}`;
  $("viewer").hidden = false;
  await draw();
  const seconds = ((performance.now() - state.started) / 1000).toFixed(2);
  setStatus(`done in ${seconds} s`, 1);
}

function buildLegend(labels) {
  const legend = $("legend");
  legend.querySelectorAll("label").forEach((n) => n.remove());
  for (const l of labels) {
    const row = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = true;
    box.dataset.labelIndex = String(l.index);
    box.addEventListener("change", () => {
      if (box.checked) state.visible.add(l.index); else state.visible.delete(l.index);
      draw();
    });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour(l.index);
    row.append(box, swatch, document.createTextNode(`${l.name} (${l.value})`));
    legend.appendChild(row);
  }
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

function fillVolumes(rows) {
  const body = $("volumes").querySelector("tbody");
  body.textContent = "";
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.label = r.label;
    cell(tr, r.label); cell(tr, r.value); cell(tr, String(r.voxels)); cell(tr, String(r.volume)); cell(tr, r.unit);
    body.appendChild(tr);
  }
}

function fillLesions(table) {
  const body = $("lesions").querySelector("tbody");
  body.textContent = "";
  for (const [label, count] of Object.entries(table.counts)) {
    const largest = table.lesions.find((l) => l.label === label);
    const tr = document.createElement("tr");
    cell(tr, label); cell(tr, String(count));
    cell(tr, largest ? `${largest.volume} ${table.unit}` : "–");
    body.appendChild(tr);
  }
}

const COMPONENTS_LISTED = 10;

function fillComponents(table, spatialDims) {
  // the largest components; a click shows the slice through the component's centroid
  const list = $("components");
  list.textContent = "";
  for (const c of table.lesions.slice(0, COMPONENTS_LISTED)) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    const z = spatialDims === 3 ? Math.round(c.centroid_voxel[0]) : 0;
    button.textContent = `${c.label}: ${c.volume} ${table.unit}, ${c.voxels} voxels` +
      (spatialDims === 3 ? ` (slice ${z + 1})` : "");
    button.addEventListener("click", () => { state.slice = z; $("slice").value = String(z); draw(); });
    li.appendChild(button);
    list.appendChild(li);
  }
}

function fillDownloads(id, formats) {
  const list = $("download-list");
  list.textContent = "";
  const links = formats.map((f) => [`label map (${f})`, `/jobs/${id}/result?format=${f}`]);
  links.push(["volumes (JSON)", `/jobs/${id}/volumes`], ["components (JSON)", `/jobs/${id}/lesions`]);
  for (const [text, href] of links) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    a.setAttribute("download", "");
    li.appendChild(a);
    list.appendChild(li);
  }
}

function loadPixels(url, width, height) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      const canvas = document.createElement("canvas");
      canvas.width = width;
      canvas.height = height;
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(img, 0, 0);
      resolve(ctx.getImageData(0, 0, width, height).data);
    };
    img.onerror = () => reject(new Error(`could not load ${url}`));
    img.src = url;
  });
}

async function slicePixels(index) {
  if (!state.cache.has(index)) {
    const view = $("view");
    const base = `/jobs/${state.job}/preview`;
    state.cache.set(index, Promise.all([
      loadPixels(`${base}/image/${index}.png`, view.width, view.height),
      loadPixels(`${base}/labels/${index}.png`, view.width, view.height)]));
  }
  return state.cache.get(index);
}

async function draw() {
  const ticket = ++state.render;
  const viewer = $("viewer");
  viewer.dataset.state = "drawing";
  const index = state.slice;
  const [image, labels] = await slicePixels(index);
  if (ticket !== state.render) return;  // a newer draw superseded this one
  const view = $("view");
  const ctx = view.getContext("2d");
  const out = ctx.createImageData(view.width, view.height);
  const alpha = Number($("opacity").value) / 100;
  const colours = {};
  for (const l of state.preview.labels) colours[l.index] = rgb(colour(l.index));
  const px = out.data;
  for (let i = 0; i < px.length; i += 4) {
    const k = labels[i];  // grey PNG: the label index in every channel
    let r = image[i], g = image[i + 1], b = image[i + 2];
    if (k > 0 && alpha > 0 && state.visible.has(k) && colours[k]) {
      const c = colours[k];
      r = r * (1 - alpha) + c[0] * alpha;
      g = g * (1 - alpha) + c[1] * alpha;
      b = b * (1 - alpha) + c[2] * alpha;
    }
    px[i] = r; px[i + 1] = g; px[i + 2] = b; px[i + 3] = 255;
  }
  ctx.putImageData(out, 0, 0);
  $("slice-label").textContent = `${index + 1} / ${state.preview.slices}`;
  viewer.dataset.state = "ready";
  viewer.dataset.slice = String(index);
}

function setup() {
  $("upload-form").addEventListener("submit", upload);
  $("slice").addEventListener("input", (e) => { state.slice = Number(e.target.value); draw(); });
  $("opacity").addEventListener("input", (e) => { $("opacity-label").textContent = `${e.target.value} %`; draw(); });
  $("view").addEventListener("wheel", (e) => {
    if (!state.preview || state.preview.slices < 2) return;
    e.preventDefault();
    const next = Math.min(state.preview.slices - 1, Math.max(0, state.slice + Math.sign(e.deltaY)));
    if (next !== state.slice) { state.slice = next; $("slice").value = String(next); draw(); }
  }, { passive: false });
  loadModels().catch((e) => showError(`cannot list the models: ${e.message}`));
}

document.addEventListener("DOMContentLoaded", setup);
