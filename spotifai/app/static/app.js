// spotifai Song Recommender: search as you type, pick a song, listen to the most similar songs.
// Every text from the server is inserted with textContent (never parsed as HTML), so titles cannot inject markup.
"use strict";

const PAGE_SIZE = 20;
const SIMILAR_K = 10;
const DEBOUNCE_MS = 200;

const $ = (id) => document.getElementById(id);
const els = {
  q: $("q"), status: $("search-status"), results: $("results"), more: $("more"),
  empty: $("empty"), selected: $("selected"), selTitle: $("sel-title"), selMeta: $("sel-meta"),
  selPlay: $("sel-play"), selAudio: $("sel-audio"), similar: $("similar"), simStatus: $("similar-status"),
  preview: $("preview-audio"), file: $("file"), drop: $("drop"), upStatus: $("upload-status"),
};
const MAX_UPLOAD_BYTES = 32 * 1024 * 1024;

let query = "";
let nextOffset = null;
let searchSeq = 0;      // responses of superseded searches are dropped
let selectSeq = 0;
let debounceTimer = null;
let selectedId = null;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function metaLine(t) {
  return [t.artist, t.album].filter((x) => x).join(" · ") || "Unknown artist";
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    const err = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    err.status = response.status;
    err.retry = response.headers.has("retry-after");
    throw err;
  }
  return body;
}

// ------------------------------------------------------------------------------------------ search

function scheduleSearch() {
  clearTimeout(debounceTimer);
  debounceTimer = setTimeout(() => runSearch(els.q.value.trim(), 0), DEBOUNCE_MS);
}

async function runSearch(q, offset) {
  const seq = ++searchSeq;
  if (offset === 0) query = q;
  if (!q) {
    els.results.replaceChildren();
    els.more.hidden = true;
    els.status.textContent = "";
    nextOffset = null;
    return;
  }
  els.status.textContent = offset === 0 ? "Searching…" : "Loading more…";
  els.more.disabled = true;
  try {
    const params = new URLSearchParams({ q, limit: String(PAGE_SIZE), offset: String(offset) });
    const page = await getJSON(`/api/search?${params}`);
    if (seq !== searchSeq) return;
    if (offset === 0) els.results.replaceChildren();
    for (const track of page.results) els.results.appendChild(resultItem(track));
    nextOffset = page.next_offset;
    els.more.hidden = nextOffset === null;
    const shown = els.results.children.length;
    els.status.textContent = shown === 0 ? "No songs found." : `${shown} song${shown === 1 ? "" : "s"}${nextOffset === null ? "" : " so far"}`;
    markActive();
  } catch (err) {
    if (seq === searchSeq) els.status.textContent = `Search failed: ${err.message}`;
  } finally {
    els.more.disabled = false;
  }
}

function resultItem(track) {
  const li = el("li");
  li.dataset.id = String(track.id);
  const button = el("button", "track");
  button.type = "button";
  button.appendChild(el("span", "title", track.title));
  button.appendChild(el("span", "meta", metaLine(track)));
  button.addEventListener("click", () => selectTrack(track.id));
  li.appendChild(button);
  return li;
}

function markActive() {
  for (const li of els.results.children) li.classList.toggle("active", li.dataset.id === String(selectedId));
}

// --------------------------------------------------------------------------------- selected + similar

async function selectTrack(id) {
  const seq = ++selectSeq;
  selectedId = id;
  markActive();
  stopPreview();
  history.replaceState(null, "", `#track=${encodeURIComponent(id)}`);
  els.empty.hidden = true;
  els.selected.hidden = false;
  els.similar.replaceChildren();
  els.simStatus.textContent = "Finding similar songs…";
  try {
    const track = await getJSON(`/api/tracks/${encodeURIComponent(id)}`);
    if (seq !== selectSeq) return;
    els.selTitle.textContent = track.title;
    els.selMeta.textContent = metaLine(track);
    els.selAudio.pause();
    if (track.audio_url) {
      els.selAudio.src = track.audio_url;
      els.selPlay.disabled = false;
    } else {
      els.selAudio.removeAttribute("src");
      els.selPlay.disabled = true;
    }
    setPlaying(els.selPlay, false);
  } catch (err) {
    if (seq === selectSeq) { els.selTitle.textContent = "Song not found"; els.selMeta.textContent = err.message; }
    els.simStatus.textContent = "";
    return;
  }
  try {
    const sim = await getSimilar(id, seq);
    if (seq !== selectSeq) return;
    for (const t of sim.results) els.similar.appendChild(similarItem(t));
    els.simStatus.textContent = sim.results.length ? "" : "No similar songs in the index.";
  } catch (err) {
    if (seq === selectSeq) els.simStatus.textContent = `No recommendations: ${err.message}`;
  }
}

// The index opens in the background when the server starts: retry while it answers 503.
async function getSimilar(id, seq) {
  const url = `/api/tracks/${encodeURIComponent(id)}/similar?k=${SIMILAR_K}`;
  for (let attempt = 0; ; attempt++) {
    try {
      return await getJSON(url);
    } catch (err) {
      if (err.status !== 503 || !err.retry || attempt >= 30 || seq !== selectSeq) throw err;
      els.simStatus.textContent = "The index is still opening…";
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

function similarItem(t) {
  const li = el("li");
  li.dataset.id = String(t.id);
  const play = el("button", "play", "▶");
  play.type = "button";
  play.setAttribute("aria-label", `Play ${t.title}`);
  play.disabled = t.has_audio === false;
  play.addEventListener("click", () => togglePreview(t.id, play));
  const info = el("button", "track");
  info.type = "button";
  info.title = "Show songs similar to this one";
  info.appendChild(el("span", "title", t.title));
  info.appendChild(el("span", "meta", metaLine(t)));
  info.addEventListener("click", () => selectTrack(t.id));
  const sim = el("span", "sim", t.similarity.toFixed(3));
  sim.title = "cosine similarity of the two songs' vectors (1 = same direction); the bar places it between "
    + "the query's 50th most similar song (empty) and an identical song (full)";
  const bar = el("span", "bar");
  const fill = el("span");
  const relative = typeof t.relative === "number" ? t.relative : t.similarity;
  fill.style.width = `${Math.max(0, Math.min(1, relative)) * 100}%`;
  bar.appendChild(fill);
  sim.appendChild(bar);
  li.append(play, info, sim);
  return li;
}

// ------------------------------------------------------------------------------ similar to a file

async function similarToFile(file) {
  const seq = ++selectSeq;
  selectedId = null;
  markActive();
  stopPreview();
  els.upStatus.classList.remove("error");
  if (file.size > MAX_UPLOAD_BYTES) {
    els.upStatus.classList.add("error");
    els.upStatus.textContent = `${file.name}: larger than 32 MB`;
    return;
  }
  els.upStatus.textContent = `Listening to ${file.name}…`;
  try {
    const response = await fetch(`/api/similar-to-file?k=${SIMILAR_K}`, {
      method: "POST", body: file, headers: { "Content-Type": "application/octet-stream", Accept: "application/json" },
    });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (seq !== selectSeq) return;
    if (!response.ok) throw new Error(body && typeof body.detail === "string" ? body.detail : response.statusText);
    els.upStatus.textContent = "";
    els.empty.hidden = true;
    els.selected.hidden = false;
    els.selTitle.textContent = file.name;
    els.selMeta.textContent = "your file (not in the library)";
    els.selAudio.pause();
    els.selAudio.removeAttribute("src");
    els.selPlay.disabled = true;
    els.similar.replaceChildren();
    for (const t of body.results) els.similar.appendChild(similarItem(t));
    els.simStatus.textContent = body.results.length ? "" : "No similar songs in the index.";
  } catch (err) {
    if (seq !== selectSeq) return;
    els.upStatus.classList.add("error");
    els.upStatus.textContent = `${file.name}: ${err.message}`;
  } finally {
    els.file.value = "";
  }
}

els.file.addEventListener("change", () => { if (els.file.files.length) similarToFile(els.file.files[0]); });
els.drop.addEventListener("dragover", (event) => { event.preventDefault(); els.drop.classList.add("over"); });
els.drop.addEventListener("dragleave", () => els.drop.classList.remove("over"));
els.drop.addEventListener("drop", (event) => {
  event.preventDefault();
  els.drop.classList.remove("over");
  if (event.dataTransfer.files.length) similarToFile(event.dataTransfer.files[0]);
});

// ---------------------------------------------------------------------------------------- playback

function setPlaying(button, playing) {
  button.classList.toggle("playing", playing);
  button.textContent = playing ? "❚❚" : "▶";
}

function safePlay(audio) {
  const p = audio.play();
  if (p && p.catch) p.catch(() => {});
}

let previewButton = null;

function stopPreview() {
  els.preview.pause();
  if (previewButton) setPlaying(previewButton, false);
  previewButton = null;
}

function togglePreview(id, button) {
  if (previewButton === button && !els.preview.paused) { stopPreview(); return; }
  stopPreview();
  els.preview.src = `/api/tracks/${encodeURIComponent(id)}/audio`;
  previewButton = button;
  setPlaying(button, true);
  safePlay(els.preview);
}

els.selPlay.addEventListener("click", () => {
  if (els.selAudio.paused) safePlay(els.selAudio); else els.selAudio.pause();
});
els.selAudio.addEventListener("play", () => setPlaying(els.selPlay, true));
els.selAudio.addEventListener("pause", () => setPlaying(els.selPlay, false));
els.selAudio.addEventListener("ended", () => setPlaying(els.selPlay, false));
els.preview.addEventListener("ended", stopPreview);
// Only one song plays at a time.
document.addEventListener("play", (event) => {
  for (const audio of document.querySelectorAll("audio")) {
    if (audio !== event.target) audio.pause();
  }
  if (event.target !== els.preview && previewButton) { setPlaying(previewButton, false); previewButton = null; }
}, true);

// ------------------------------------------------------------------------------------------- wiring

els.q.addEventListener("input", scheduleSearch);
els.q.addEventListener("keydown", (event) => {
  if (event.key === "Enter") { clearTimeout(debounceTimer); runSearch(els.q.value.trim(), 0); }
});
els.more.addEventListener("click", () => { if (nextOffset !== null) runSearch(query, nextOffset); });

// A link such as /#q=night%20drive&track=12 restores a search and a selection.
(function restoreFromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const q = params.get("q");
  const track = params.get("track");
  if (q) { els.q.value = q; runSearch(q.trim(), 0); }
  if (track && /^\d+$/.test(track)) selectTrack(Number(track));
})();
