// Fetch on first use, in the graph editor.
//
// 1. Labels: model choices that are not on disk yet show as "⤓ name (size, downloads on first run)".
//    Only the label changes: the widget's value, and so the saved workflow, keeps the plain file name.
//    The pack's loaders describe such choices in their input options (`model_fetch.missing`, see
//    nodes.py `model_input`); for every other loader input (`*_name`) the server's status is used.
//    When a download finishes the node definitions are read again (GET /object_info), so the labels
//    follow the disk without a reload, and the Model Library reads its folders again.
// 2. Models no source knows, and workflow URLs the server refuses, are marked on their nodes (red
//    outline, "✗ name (not on disk, no source)") as the editor marks its own validation errors.
// 3. The models panel (model_panel.js) replaces the frontend's Missing Models dialog, which offers
//    browser downloads and refuses .gguf files, contradicting what the server does. It opens by itself
//    only when the workflow has something to download or something refused; View › "Models for this
//    workflow" (command WanServerless.ShowModels) opens it at any time.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { MARK, bytes, refresh, reopenModels, showPlan, state } from "./model_panel.js";

const missingByInput = new Map(); // "NodeType/input" -> {name: {label, size, state, done}}
const missingByName = new Map(); // name -> label, from /model_fetch/status (any loader)
const blockedByName = new Map(); // name -> label, for models no source knows or refused (from the plan)
const COMMAND = "WanServerless.ShowModels";

function remember(nodeData) {
  for (const group of ["required", "optional"]) {
    for (const [input, spec] of Object.entries(nodeData?.input?.[group] ?? {})) {
      const info = Array.isArray(spec) ? spec[1]?.model_fetch : undefined;
      if (info) missingByInput.set(`${nodeData.name}/${input}`, info.missing ?? {});
    }
  }
}

async function learnMissing() {
  try {
    const resp = await api.fetchApi("/model_fetch/status");
    if (!resp.ok) return [];
    const doc = await resp.json();
    missingByName.clear();
    for (const r of doc.models) {
      if (r.state !== "present" && r.state !== "unverified") {
        missingByName.set(r.name, `${MARK} ${r.name}  (${r.size != null ? bytes(r.size) + ", " : ""}downloads on first run)`);
      }
    }
    return doc.models;
  } catch (e) {
    console.warn("model_fetch: status unavailable", e);
    return [];
  }
}

/** The editor's Model Library caches each folder's file list once it is read (on start-up, and on
 * loading a workflow that names models), so files downloaded since stay unlisted until its refresh
 * button: read the folders again, as that button does (the frontend's "models" store). */
async function reloadModelLibrary() {
  try {
    const pinia = document.getElementById("vue-app")?.__vue_app__?.config?.globalProperties?.$pinia;
    await pinia?._s?.get("models")?.loadModelFolders?.();
  } catch (e) {
    console.warn("model_fetch: cannot refresh the Model Library", e);
  }
}

/** Read the node definitions again (labels of the pack's loaders) and the status (other loaders). */
async function relabel() {
  try {
    const defs = await api.getNodeDefs();
    for (const def of Object.values(defs)) remember(def);
  } catch (e) {
    console.warn("model_fetch: cannot read the node definitions", e);
  }
  await learnMissing();
  await reloadModelLibrary();
  app.graph?.setDirtyCanvas?.(true, true);
}

/** Mark the nodes that use a model no source knows (or a refused URL); unmark the rest. */
function markNodes(rows) {
  blockedByName.clear();
  const marked = new Set();
  for (const r of rows) {
    if (r.state !== "unknown" && r.state !== "refused") continue;
    blockedByName.set(r.name, `\u2717 ${r.name}  (${r.state === "refused" ? "URL refused" : "not on disk, no source"})`);
    for (const id of r.nodes ?? []) marked.add(String(id));
  }
  for (const node of app.graph?.nodes ?? []) {
    const mine = marked.has(String(node.id));
    if (mine) node.has_errors = true;
    else if (node.wanModelMark) node.has_errors = false;
    node.wanModelMark = mine;
  }
  app.graph?.setDirtyCanvas?.(true, true);
}

state.onRows.push((rows, finished) => {
  markNodes(rows);
  if (finished) relabel();
});

function label(key, value) {
  if (value === null || value === undefined) return "";
  return blockedByName.get(value) ?? missingByInput.get(key)?.[value]?.label ?? missingByName.get(value) ?? String(value);
}

let changed = null;
function modelChanged() { // a dropdown moved to another model: the panel follows (once per burst of changes)
  clearTimeout(changed);
  changed = setTimeout(() => refresh(), 200);
}

app.registerExtension({
  name: "wan_serverless.model_fetch",
  commands: [{ id: COMMAND, label: "Models for this workflow", menubarLabel: "Models for this workflow",
               icon: "pi pi-download", function: () => reopenModels() }],
  menuCommands: [{ path: ["View"], commands: [COMMAND] }],
  async init() {
    // Our panel stands in for the frontend's Missing Models dialog on every load that would show it.
    const original = app.loadGraphData.bind(app);
    app.loadGraphData = async function (graphData, clean, restoreView, workflow, options = {}) {
      const wanted = options?.showMissingModelsDialog ?? true;
      const result = await original(graphData, clean, restoreView, workflow, { ...options, showMissingModelsDialog: false });
      if (wanted) showPlan(); else refresh({ announce: false });
      return result;
    };
  },
  async setup() {
    const models = await learnMissing();
    if (models.some((r) => r.state === "downloading") && !state.open) await showPlan(); // a reload during downloads
    api.addEventListener("execution_start", () => refresh());
    for (const event of ["execution_success", "execution_error", "execution_interrupted"]) {
      api.addEventListener(event, () => relabel()); // downloads a run made may have finished
    }
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    remember(nodeData);
  },
  nodeCreated(node) {
    for (const widget of node.widgets ?? []) {
      const key = `${node.comfyClass}/${widget.name}`;
      if (!widget.options || widget.type !== "combo") continue;
      const ours = missingByInput.has(key);
      if (!ours && (!/_name\d*$/.test(widget.name) || widget.options.getOptionLabel)) continue;
      widget.options.getOptionLabel = (value) => label(key, value);
      const callback = widget.callback;
      widget.callback = function (...args) {
        const out = callback?.apply(this, args);
        modelChanged();
        return out;
      };
    }
  },
});
