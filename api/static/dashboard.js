// livedub dashboard: polls /v1/streams and the selected stream; no build step.
const body = document.body;
const refreshMs = Number(body.dataset.refresh || 2000);
let selected = new URLSearchParams(location.search).get("stream");

const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const ms = (v) => (v === undefined || v === null ? "" : `${Math.round(v)} ms`);
const badge = (s) => `<span class="badge ${esc(s)}">${esc(s)}</span>`;
const offset = (s) => s.last_av_offset_start_ms === null || s.last_av_offset_start_ms === undefined ? "" :
  `${s.last_av_offset_start_ms} / ${s.last_av_offset_end_ms} ms`;
const g2g = (s) => (s.last_glass_to_glass_s ? `${s.last_glass_to_glass_s.toFixed(2)} s` : "");

// The stream API needs a viewer or operator token: asked once, kept for this browser tab only. A link may
// carry it in the fragment (#token=...), which never reaches a server; it is taken and removed.
const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromLink) {
  sessionStorage.setItem("livedub-token", fromLink);
  history.replaceState(null, "", location.pathname + location.search);
}

function token() {
  let t = sessionStorage.getItem("livedub-token");
  if (!t) {
    t = (prompt("livedub token (viewer or operator):") || "").trim();
    if (t) sessionStorage.setItem("livedub-token", t);
  }
  return t;
}

async function getJSON(url) {
  const r = await fetch(url, {cache: "no-store", headers: {Authorization: `Bearer ${token()}`}});
  if (r.status === 401) sessionStorage.removeItem("livedub-token");  // asked again on the next refresh
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

function renderStreams(streams) {
  const rows = streams.map((s) => `<tr class="stream ${s.stream_id === selected ? "selected" : ""}" data-id="${esc(s.stream_id)}">
    <td>${esc(s.stream_id)}</td><td>${badge(s.state)}</td><td>${s.segment_count}</td><td>${s.published_count}</td>
    <td>${g2g(s)}</td><td>${offset(s)}</td><td>${esc(s.reason)}</td></tr>`);
  document.querySelector("#streams tbody").innerHTML = rows.join("");
  document.querySelectorAll("tr.stream").forEach((tr) => tr.addEventListener("click", () => {
    selected = tr.dataset.id;
    history.replaceState(null, "", `?stream=${encodeURIComponent(selected)}`);
    tick();
  }));
  if (!selected && streams.length) selected = streams[0].stream_id;
}

function renderDetail(s) {
  document.getElementById("detail").hidden = false;
  document.getElementById("sid").textContent = s.stream_id;
  const st = document.getElementById("state");
  st.textContent = s.state;
  st.className = `badge ${s.state}`;
  document.getElementById("summary").textContent =
    `output delay ${s.output_delay_s ?? "?"} s · glass-to-glass ${g2g(s) || "?"} · A/V offset (start/end) ${offset(s) || "?"}` +
    (s.sts_estimate_s != null ? ` · units allow ${s.sts_estimate_s} s for STS` : "") +
    (s.hear_estimate_s != null ? ` and ${s.hear_estimate_s} s for hearing the input` : "") +
    ` · ${s.published_count} of ${s.segment_count} pieces out` + (s.reason ? ` · ${s.reason}` : "");
  const rtmp = body.dataset.rtmp, hls = body.dataset.hls;
  const input = `${rtmp}/live//${s.stream_id}/in`, output = `${rtmp}/live//${s.stream_id}/out`;
  let links = `input <code>${esc(input)}</code> · output <code>${esc(output)}</code>`;
  if (hls) links += ` · <a href="${esc(hls.replace("{id}", s.stream_id))}">HLS preview</a>`;
  document.getElementById("links").innerHTML = links;
  document.querySelector("#segments tbody").innerHTML = s.segments.map((g) => {
    const t = g.timings_ms || {};
    return `<tr class="segment" data-seq="${g.sequence}"><td>${g.sequence}</td>
      <td>${g.start_s.toFixed(2)}–${g.end_s.toFixed(2)} s</td><td>${badge(g.status)}</td><td>${g.reason_code ? `<code>${esc(g.reason_code)}</code> ` : ""}${esc(g.reason)}</td>
      <td class="transcript">${esc(g.transcript)}</td><td class="translation">${esc(g.translated_text)}</td>
      <td>${ms(t.extract)}</td><td>${ms(t.sts_rtt)}</td><td>${ms(t.collect)}</td><td>${ms(t.remux)}</td></tr>`;
  }).join("");
}

// Speech mode: the last minute of the timeline, pieces (cut at keyframes) against units (speech) and
// where each dub was placed; then the units themselves.
function bar(cls, start, end, t0, span, title) {
  const left = Math.max(0, (start - t0) / span * 100), width = Math.max(0.3, (end - Math.max(start, t0)) / span * 100);
  return `<div class="bar ${esc(cls)}" style="left:${left}%;width:${width}%" title="${esc(title)}"></div>`;
}

function renderUnits(s) {
  const units = s.units || [];
  document.getElementById("units").hidden = !units.length;
  if (!units.length) return;
  const end = Math.max(...s.segments.map((g) => g.end_s), ...units.map((u) => u.end_s));
  const span = 60, t0 = Math.max(0, end - span);
  const recent = (xs) => xs.filter((x) => x.end_s > t0);
  document.getElementById("timeline").innerHTML =
    `<div class="lane"><span>pieces</span>${recent(s.segments).map((g) => bar(g.status, g.start_s, g.end_s, t0, span,
      `piece ${g.sequence} ${g.start_s.toFixed(2)}–${g.end_s.toFixed(2)} s ${g.status}`)).join("")}</div>` +
    `<div class="lane"><span>speech</span>${recent(units).map((u) => bar(u.status, u.start_s, u.end_s, t0, span,
      `unit ${u.sequence} ${u.start_s.toFixed(2)}–${u.end_s.toFixed(2)} s ${u.status} ${u.reason || ""}`)).join("")}</div>` +
    `<div class="lane"><span>dubs</span>${recent(units).filter((u) => u.dub_start_s !== null && u.dub_start_s !== undefined)
      .map((u) => bar("dub", u.dub_start_s, u.dub_end_s, t0, span, `dub of unit ${u.sequence}: lag ${u.lag_s} s, ×${u.stretch_ratio}`))
      .join("")}</div>` + `<div class="axis">${t0.toFixed(0)} s … ${end.toFixed(0)} s</div>`;
  document.querySelector("#unit-table tbody").innerHTML = units.slice(-50).reverse().map((u) => {
    const t = u.timings_ms || {};
    return `<tr class="unit" data-seq="${u.sequence}"><td>${u.sequence}</td>
      <td>${u.start_s.toFixed(2)}–${u.end_s.toFixed(2)} s</td><td>${badge(u.status)}</td><td>${u.reason_code ? `<code>${esc(u.reason_code)}</code> ` : ""}${esc(u.reason)}</td>
      <td class="transcript">${esc(u.transcript)}</td><td class="translation">${esc(u.translated_text)}</td>
      <td>${u.lag_s ?? ""}</td><td>${u.stretch_ratio ?? ""}</td><td>${ms(t.sts_rtt)}</td><td>${ms(t.collect)}</td></tr>`;
  }).join("");
}

const DETAIL_LIMIT = 120;

async function tick() {
  try {
    const {streams} = await getJSON("/v1/streams");
    renderStreams(streams);
    if (selected) {
      // the newest pieces and units only: a stream hours old has thousands of each (the API pages them)
      const s = await getJSON(`/v1/streams/${encodeURIComponent(selected)}?limit=${DETAIL_LIMIT}`);
      renderDetail(s);
      renderUnits(s);
    }
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    document.getElementById("updated").textContent = `error: ${err.message}`;
  }
}

tick();
setInterval(tick, refreshMs);
