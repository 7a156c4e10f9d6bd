// The models panel (loaded by model_fetch.js): what the open workflow needs, from POST /model_fetch/plan.
//
// One row per model file: where it comes from, its size, the folder it goes into and its state
// (✓ on disk, ⤓ downloads on first run, progress while the server downloads it, paused with the bytes
// kept, ✗ refused or unknown). The rows follow the graph on screen: it is serialized again on every
// refresh, so a dropdown change or a removed node shows at once. The one button says what it does
// ("Download N now on the server", "Resume N …") and is absent when there is nothing to start; a
// downloading row has a Stop button (POST /model_fetch/cancel: the server keeps its .part and the
// next Run resumes it). Rate and ETA are smoothed (EMA). The panel opens by itself only when the
// workflow gains something to download or something refused; reopenModels() opens it on request.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

export const MARK = "\u2913";
const EMA = 0.25; // weight of each new rate sample (one per refresh, about one a second)
const TO_FETCH = ["missing", "partial", "downloading"];
const BLOCKED = ["refused", "unknown"];

export function bytes(n) {
  if (n === null || n === undefined) return "size unknown";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n, i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "";
  if (s < 60) return `${Math.max(5, Math.ceil(s / 5) * 5)} s`; // 5 s steps: no flicker of the last digit
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round((s % 60) / 10) * 10} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

const STYLE = `
#wan-model-fetch{position:fixed;top:96px;right:16px;z-index:1100;width:min(600px,calc(100vw - 32px));max-height:calc(100vh - 140px);
 display:flex;flex-direction:column;background:var(--comfy-menu-bg,#202020);color:var(--fg-color,#ddd);border:1px solid var(--border-color,#555);
 border-radius:8px;box-shadow:0 6px 24px rgba(0,0,0,.5);font:13px/1.4 sans-serif;padding:12px 14px}
#wan-model-fetch h3{margin:0 0 6px;font-size:15px;display:flex;justify-content:space-between;align-items:center}
#wan-model-fetch .wan-mf-close{background:none;border:none;color:inherit;font-size:18px;cursor:pointer}
#wan-model-fetch .wan-mf-list{flex:1 1 auto;min-height:0;overflow:auto}
#wan-model-fetch table{width:100%;border-collapse:collapse;margin:6px 0}
#wan-model-fetch td{padding:4px 6px;border-top:1px solid var(--border-color,#444);vertical-align:top}
#wan-model-fetch .wan-mf-name{font-weight:600;word-break:break-all}
#wan-model-fetch .wan-mf-dim{opacity:.7;font-size:12px;word-break:break-all}
#wan-model-fetch .wan-mf-bar{height:6px;background:#444;border-radius:3px;margin-top:3px}
#wan-model-fetch .wan-mf-bar>div{height:6px;background:#4caf50;border-radius:3px}
#wan-model-fetch .wan-mf-bad{color:#ff7070}
#wan-model-fetch .wan-mf-ok{color:#7ccf7c}
#wan-model-fetch .wan-mf-foot{flex:none;padding-top:6px;border-top:1px solid var(--border-color,#444)}
#wan-model-fetch button.wan-mf-pull,#wan-model-fetch button.wan-mf-stop{padding:6px 12px;border-radius:6px;
 border:1px solid var(--border-color,#555);background:#2d6cdf;color:#fff;cursor:pointer}
#wan-model-fetch button.wan-mf-stop{padding:2px 8px;margin-top:4px;background:#6b2b2b}`;

// open: shown now; announced: the to-fetch/blocked keys the panel has opened for (it opens again only for new ones)
export const state = { rows: [], timer: null, ticket: 0, open: false, announced: new Set(), message: "", ema: new Map(),
                       onRows: [] };

const key = (r) => `${r.directory}/${r.name}`;

function smooth(r) {
  if (r.state !== "downloading") { state.ema.delete(key(r)); return r; }
  const prev = state.ema.get(key(r));
  const rate = r.rate ? (prev ? prev + EMA * (r.rate - prev) : r.rate) : prev;
  if (rate) state.ema.set(key(r), rate);
  const total = r.total ?? r.size;
  return { ...r, rate, eta_s: rate && total ? Math.max(0, (total - (r.done ?? 0)) / rate) : null };
}

function progressText(r) {
  const parts = [`${bytes(r.done ?? 0)} of ${bytes(r.total ?? r.size)}`];
  if (r.rate) parts.push(`${bytes(r.rate)}/s`);
  if (r.eta_s !== null && r.eta_s !== undefined) parts.push(`ETA ${duration(r.eta_s)}`);
  if (r.phase && r.phase !== "download") parts.push(r.phase);
  return parts.join(" \u00b7 ");
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function stateCell(r) {
  const td = el("td", `wan-mf-state wan-mf-${r.state}`);
  if (r.state === "downloading" || (r.state === "partial" && r.total)) {
    td.textContent = (r.state === "partial" ? "paused, the next Run resumes it: " : "") + progressText(r);
    const bar = el("div", "wan-mf-bar"), fill = el("div");
    const total = r.total ?? r.size;
    fill.style.width = total ? `${Math.min(100, (100 * (r.done ?? 0)) / total).toFixed(1)}%` : "0%";
    bar.appendChild(fill);
    td.appendChild(bar);
    if (r.state === "downloading") {
      const stop = el("button", "wan-mf-stop", "Stop");
      stop.title = "Stop this download on the server; what has arrived is kept and the next Run resumes it";
      stop.onclick = () => cancel([key(r)]);
      td.appendChild(stop);
    }
  } else if (r.state === "present") {
    td.textContent = "\u2713 on disk";
    td.classList.add("wan-mf-ok");
  } else if (r.state === "missing") {
    td.textContent = `${MARK} downloads on first run` + (r.error ? ` (last try failed: ${r.error})` : "");
  } else {
    td.textContent = `\u2717 ${r.state === "refused" ? "not downloaded: " : ""}${r.reason ?? r.state}`;
    td.classList.add("wan-mf-bad");
  }
  return td;
}

function hide() {
  document.getElementById("wan-model-fetch")?.remove();
}

function panel() {
  let box = document.getElementById("wan-model-fetch");
  if (!box) {
    if (!document.getElementById("wan-model-fetch-style")) {
      const style = el("style");
      style.id = "wan-model-fetch-style";
      style.textContent = STYLE;
      document.head.appendChild(style);
    }
    box = el("div");
    box.id = "wan-model-fetch";
    document.body.appendChild(box);
  }
  return box;
}

function intro(rows) {
  const pending = rows.filter((r) => ["missing", "partial"].includes(r.state));
  const running = rows.filter((r) => r.state === "downloading");
  const blocked = rows.filter((r) => BLOCKED.includes(r.state));
  const parts = [];
  if (running.length) parts.push(`${running.length} file(s) downloading on the server. They go on when you close this ` +
    "panel or cancel the run; Stop keeps what has arrived for the next Run.");
  if (pending.length) {
    const toGet = pending.reduce((n, r) => n + Math.max(0, (r.size ?? 0) - (r.done ?? 0)), 0);
    parts.push(`${pending.length} file(s), ${bytes(toGet)} to download. The server fetches them when you press Run ` +
      "(no browser download).");
  }
  if (blocked.length) parts.push(`${blocked.length} model(s) cannot be fetched: the run fails until they are on disk.`);
  if (!parts.length) parts.push("Every model this workflow uses is on disk.");
  return parts.join(" ");
}

function render() {
  const rows = state.rows;
  if (!state.open) { hide(); return; }
  const box = panel();
  box.replaceChildren();
  const h = el("h3", null, `${MARK} Models for this workflow`);
  const close = el("button", "wan-mf-close", "\u00d7");
  close.title = "Close (downloads continue on the server; View \u203a Models for this workflow reopens it)";
  close.onclick = () => { state.open = false; hide(); };
  h.appendChild(close);
  box.append(h, el("div", "wan-mf-intro", intro(rows)));
  const list = el("div", "wan-mf-list"), table = el("table");
  for (const r of rows) {
    const tr = el("tr");
    tr.dataset.name = r.name;
    tr.dataset.state = r.state;
    const what = el("td");
    const where = `into ${r.directory}` + (r.target ? ` (${r.target})` : "") + (r.source ? ` \u2190 ${r.source}` : "") +
      (r.origin === "workflow" ? " (URL from the workflow)" : "");
    what.append(el("div", "wan-mf-name", r.name), el("div", "wan-mf-dim", where));
    tr.append(what, el("td", "wan-mf-size", bytes(r.size ?? r.total)), stateCell(r));
    table.appendChild(tr);
  }
  list.appendChild(table);
  box.appendChild(list);
  const foot = el("div", "wan-mf-foot");
  const startable = rows.filter((r) => ["missing", "partial"].includes(r.state));
  if (startable.length) {
    const resume = startable.every((r) => r.state === "partial");
    const pull = el("button", "wan-mf-pull",
      `${resume ? "Resume" : "Download"} ${startable.length} ${resume ? "download(s)" : "file(s)"} now on the server`);
    pull.onclick = () => startPull(startable);
    foot.appendChild(pull);
  }
  if (state.message) {
    const msg = el("span", "wan-mf-bad", state.message);
    msg.style.marginLeft = "8px";
    foot.appendChild(msg);
  }
  if (foot.childNodes.length) box.appendChild(foot);
}

async function post(path, body) {
  const resp = await api.fetchApi(path, { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" } });
  const doc = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(doc.error ?? `HTTP ${resp.status}`);
  return doc;
}

function currentWorkflow() {
  try { return app.graph?.serialize?.() ?? null; } catch (e) { return null; }
}

async function startPull(rows) {
  state.message = "";
  try {
    await post("/model_fetch/pull", { names: rows.map(key), workflow: currentWorkflow() ?? undefined });
  } catch (e) {
    state.message = String(e.message ?? e);
  }
  await refresh();
}

async function cancel(names) {
  state.message = "";
  try {
    await post("/model_fetch/cancel", { names });
  } catch (e) {
    state.message = String(e.message ?? e);
  }
  await refresh();
}

/** Read the plan of the graph on screen; open the panel when something new is to fetch or refused. */
export async function refresh({ announce = true } = {}) {
  const workflow = currentWorkflow();
  const ticket = ++state.ticket; // refreshes overlap (timer, events, clicks): only the latest answer counts
  let models = null;
  try {
    models = workflow ? (await post("/model_fetch/plan", { workflow })).models : [];
  } catch (e) {
    console.warn("model_fetch: cannot refresh the models panel", e);
  }
  if (ticket !== state.ticket) return;
  const before = new Set(state.rows.filter((r) => r.state === "downloading").map(key));
  if (models !== null) state.rows = models.map(smooth);
  if (announce) {
    const news = state.rows.filter((r) => (TO_FETCH.includes(r.state) || r.state === "refused") && !state.announced.has(key(r)));
    if (news.length) state.open = true;
    for (const r of news) state.announced.add(key(r));
  }
  const finished = [...before].some((k) => !state.rows.some((r) => key(r) === k && r.state === "downloading"));
  for (const cb of state.onRows) cb(state.rows, finished);
  render();
  schedule();
}

function schedule() {
  clearTimeout(state.timer);
  const busy = state.rows.some((r) => r.state === "downloading");
  if (busy || state.open) state.timer = setTimeout(refresh, busy ? 1000 : 3000);
}

/** A workflow was loaded: forget what was announced, and show its plan (the panel opens only if needed). */
export async function showPlan() {
  state.announced.clear();
  state.open = false;
  state.message = "";
  state.ema.clear();
  await refresh();
}

/** Open the panel on request (the View menu's "Models for this workflow"). */
export async function reopenModels() {
  state.open = true;
  render();
  await refresh();
}
