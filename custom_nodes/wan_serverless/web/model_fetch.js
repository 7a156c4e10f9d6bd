// Fetch on first use, in the graph editor.
//
// 1. Labels: model choices that are not on disk yet show as "⤓ name (size, downloads on first run)".
//    Only the label changes: the widget's value, and so the saved workflow, keeps the plain file name.
//    The pack's loaders describe such choices in their input options (`model_fetch.missing`, see
//    nodes.py `model_input`); for every other loader input (`*_name`) the server's status is used.
// 2. The models panel replaces the frontend's Missing Models dialog (which offers browser downloads
//    and refuses .gguf files, contradicting what the server does): on loading a workflow it shows,
//    from POST /model_fetch/plan, each model file the workflow uses, where it comes from, how large
//    it is and which folder it goes into; a button starts the downloads on the server now
//    (POST /model_fetch/pull), and a live display shows bytes, rate and ETA. Downloads run on the
//    server, so after a page reload the panel picks them up again from GET /model_fetch/status.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const MARK = "\u2913";
const missingByInput = new Map(); // "NodeType/input" -> {name: {label, size, state, done}}
const missingByName = new Map(); // name -> label, from /model_fetch/status (any loader)

function remember(nodeData) {
  for (const group of ["required", "optional"]) {
    for (const [input, spec] of Object.entries(nodeData?.input?.[group] ?? {})) {
      const info = Array.isArray(spec) ? spec[1]?.model_fetch : undefined;
      if (info) missingByInput.set(`${nodeData.name}/${input}`, info.missing ?? {});
    }
  }
}

function bytes(n) {
  if (n === null || n === undefined) return "size unknown";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n, i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "";
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

// --- the panel -------------------------------------------------------------------------------------

const STYLE = `
#wan-model-fetch{position:fixed;top:96px;right:16px;z-index:1100;width:min(600px,calc(100vw - 32px));max-height:calc(100vh - 200px);
 overflow:auto;background:var(--comfy-menu-bg,#202020);color:var(--fg-color,#ddd);border:1px solid var(--border-color,#555);
 border-radius:8px;box-shadow:0 6px 24px rgba(0,0,0,.5);font:13px/1.4 sans-serif;padding:12px 14px}
#wan-model-fetch h3{margin:0 0 6px;font-size:15px;display:flex;justify-content:space-between;align-items:center}
#wan-model-fetch .wan-mf-close{background:none;border:none;color:inherit;font-size:18px;cursor:pointer}
#wan-model-fetch table{width:100%;border-collapse:collapse;margin:6px 0}
#wan-model-fetch td{padding:4px 6px;border-top:1px solid var(--border-color,#444);vertical-align:top}
#wan-model-fetch .wan-mf-name{font-weight:600;word-break:break-all}
#wan-model-fetch .wan-mf-dim{opacity:.7;font-size:12px;word-break:break-all}
#wan-model-fetch .wan-mf-bar{height:6px;background:#444;border-radius:3px;margin-top:3px}
#wan-model-fetch .wan-mf-bar>div{height:6px;background:#4caf50;border-radius:3px}
#wan-model-fetch .wan-mf-bad{color:#ff7070}
#wan-model-fetch .wan-mf-ok{color:#7ccf7c}
#wan-model-fetch button.wan-mf-pull{padding:6px 12px;border-radius:6px;border:1px solid var(--border-color,#555);
 background:#2d6cdf;color:#fff;cursor:pointer}
#wan-model-fetch button.wan-mf-pull:disabled{opacity:.5;cursor:default}`;

const state = { workflow: null, rows: [], timer: null, dismissed: false, message: "" };

function panel() {
  let el = document.getElementById("wan-model-fetch");
  if (!el) {
    if (!document.getElementById("wan-model-fetch-style")) {
      const style = document.createElement("style");
      style.id = "wan-model-fetch-style";
      style.textContent = STYLE;
      document.head.appendChild(style);
    }
    el = document.createElement("div");
    el.id = "wan-model-fetch";
    document.body.appendChild(el);
  }
  return el;
}

function hide() {
  document.getElementById("wan-model-fetch")?.remove();
}

function progressText(r) {
  const done = r.done ?? 0, total = r.total ?? r.size;
  const parts = [`${bytes(done)} of ${bytes(total)}`];
  if (r.rate) parts.push(`${bytes(r.rate)}/s`);
  if (r.eta_s !== null && r.eta_s !== undefined) parts.push(`ETA ${duration(r.eta_s)}`);
  if (r.phase && r.phase !== "download") parts.push(r.phase);
  return parts.join(" · ");
}

function cell(text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  return td;
}

function stateCell(r) {
  const td = document.createElement("td");
  td.className = `wan-mf-state wan-mf-${r.state}`;
  if (r.state === "downloading" || (r.state === "partial" && r.total)) {
    td.textContent = (r.state === "partial" ? "paused, resumes: " : "") + progressText(r);
    const bar = document.createElement("div");
    bar.className = "wan-mf-bar";
    const fill = document.createElement("div");
    const total = r.total ?? r.size;
    fill.style.width = total ? `${Math.min(100, (100 * (r.done ?? 0)) / total).toFixed(1)}%` : "0%";
    bar.appendChild(fill);
    td.appendChild(bar);
  } else if (r.state === "present") {
    td.textContent = "\u2713 on disk";
    td.classList.add("wan-mf-ok");
  } else if (r.state === "missing") {
    td.textContent = `${MARK} downloads on first run` + (r.error ? ` (last try failed: ${r.error})` : "");
  } else if (r.state === "refused") {
    td.textContent = `\u2717 not downloaded: ${r.reason}`;
    td.classList.add("wan-mf-bad");
  } else {
    td.textContent = `\u2717 ${r.reason ?? r.state}`;
    td.classList.add("wan-mf-bad");
  }
  return td;
}

function render() {
  const rows = state.rows;
  const pending = rows.filter((r) => !["present", "refused", "unknown"].includes(r.state));
  const blocked = rows.filter((r) => ["refused", "unknown"].includes(r.state));
  if (state.dismissed || (!pending.length && !blocked.length)) {
    hide();
    return;
  }
  const el = panel();
  el.replaceChildren();
  const h = document.createElement("h3");
  h.textContent = `${MARK} Models for this workflow`;
  const close = document.createElement("button");
  close.className = "wan-mf-close";
  close.title = "Close (downloads continue on the server)";
  close.textContent = "\u00d7";
  close.onclick = () => { state.dismissed = true; hide(); };
  h.appendChild(close);
  el.appendChild(h);
  const toGet = pending.reduce((n, r) => n + Math.max(0, (r.size ?? 0) - (r.done ?? 0)), 0);
  const intro = document.createElement("div");
  intro.className = "wan-mf-intro";
  intro.textContent = pending.length
    ? `${pending.length} file(s), ${bytes(toGet)} to download. The server fetches them when you press Run ` +
      `(no browser download); or start now:`
    : "Some models cannot be fetched:";
  el.appendChild(intro);
  const table = document.createElement("table");
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.name = r.name;
    tr.dataset.state = r.state;
    const what = document.createElement("td");
    const name = document.createElement("div");
    name.className = "wan-mf-name";
    name.textContent = r.name;
    const where = document.createElement("div");
    where.className = "wan-mf-dim";
    where.textContent = `into ${r.directory}` + (r.target ? ` (${r.target})` : "") +
      (r.source ? ` \u2190 ${r.source}` : "") + (r.origin === "workflow" ? " (URL from the workflow)" : "");
    what.append(name, where);
    tr.append(what, cell(bytes(r.size ?? r.total), "wan-mf-size"), stateCell(r));
    table.appendChild(tr);
  }
  el.appendChild(table);
  const foot = document.createElement("div");
  const pull = document.createElement("button");
  pull.className = "wan-mf-pull";
  const startable = pending.filter((r) => r.state !== "downloading");
  pull.textContent = startable.length ? `Download ${startable.length} now on the server` : "Downloading on the server\u2026";
  pull.disabled = !startable.length;
  pull.onclick = () => startPull(startable);
  foot.appendChild(pull);
  if (state.message) {
    const msg = document.createElement("span");
    msg.className = "wan-mf-bad";
    msg.style.marginLeft = "8px";
    msg.textContent = state.message;
    foot.appendChild(msg);
  }
  el.appendChild(foot);
}

async function startPull(rows) {
  state.message = "";
  const body = { names: rows.map((r) => `${r.directory}/${r.name}`) };
  if (state.workflow) body.workflow = state.workflow;
  try {
    const resp = await api.fetchApi("/model_fetch/pull", { method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json" } });
    if (!resp.ok) state.message = (await resp.json()).error ?? `HTTP ${resp.status}`;
  } catch (e) {
    state.message = String(e);
  }
  await refresh();
}

async function refresh() {
  try {
    if (state.workflow) {
      const resp = await api.fetchApi("/model_fetch/plan", { method: "POST", body: JSON.stringify({ workflow: state.workflow }),
        headers: { "Content-Type": "application/json" } });
      if (resp.ok) state.rows = (await resp.json()).models;
    } else {
      // No workflow known (e.g. right after a reload): show what the server is downloading.
      const resp = await api.fetchApi("/model_fetch/status");
      if (resp.ok) state.rows = (await resp.json()).models.filter((r) => r.state === "downloading");
    }
    for (const r of state.rows) if (r.state === "present") missingByName.delete(r.name); // labels follow
  } catch (e) {
    console.warn("model_fetch: cannot refresh the models panel", e);
  }
  render();
  schedule();
}

function schedule() {
  clearTimeout(state.timer);
  const busy = state.rows.some((r) => r.state === "downloading");
  const open = !!document.getElementById("wan-model-fetch");
  if (busy || open) state.timer = setTimeout(refresh, busy ? 1000 : 3000);
}

async function showPlan(workflow) {
  state.workflow = workflow && typeof workflow === "object" ? structuredClone(workflow) : null;
  state.dismissed = false;
  state.message = "";
  await refresh();
}

async function learnMissing() {
  try {
    const resp = await api.fetchApi("/model_fetch/status");
    if (!resp.ok) return;
    const doc = await resp.json();
    missingByName.clear();
    for (const r of doc.models) {
      if (r.state !== "present" && r.state !== "unverified") {
        missingByName.set(r.name, `${MARK} ${r.name}  (${r.size != null ? bytes(r.size) + ", " : ""}downloads on first run)`);
      }
    }
    if (doc.models.some((r) => r.state === "downloading") && !document.getElementById("wan-model-fetch")) {
      await refresh(); // a reload during downloads: show them again
    }
  } catch (e) {
    console.warn("model_fetch: status unavailable", e);
  }
}

app.registerExtension({
  name: "wan_serverless.model_fetch",
  async init() {
    // Our panel stands in for the frontend's Missing Models dialog on every load that would show it.
    const original = app.loadGraphData.bind(app);
    app.loadGraphData = async function (graphData, clean, restoreView, workflow, options = {}) {
      const wanted = options?.showMissingModelsDialog ?? true;
      const result = await original(graphData, clean, restoreView, workflow, { ...options, showMissingModelsDialog: false });
      if (wanted) showPlan(graphData ?? app.graph?.serialize?.());
      return result;
    };
  },
  async setup() {
    await learnMissing();
    api.addEventListener("execution_start", () => { learnMissing(); if (state.workflow) refresh(); });
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    remember(nodeData);
  },
  nodeCreated(node) {
    for (const widget of node.widgets ?? []) {
      const key = `${node.comfyClass}/${widget.name}`;
      if (!widget.options) continue;
      if (missingByInput.has(key)) {
        widget.options.getOptionLabel = (value) => {
          if (value === null || value === undefined) return "";
          const entry = missingByInput.get(key)?.[value];
          return entry?.label ?? String(value);
        };
      } else if (widget.type === "combo" && /_name\d*$/.test(widget.name) && !widget.options.getOptionLabel) {
        widget.options.getOptionLabel = (value) =>
          value === null || value === undefined ? "" : missingByName.get(value) ?? String(value);
      }
    }
  },
});
