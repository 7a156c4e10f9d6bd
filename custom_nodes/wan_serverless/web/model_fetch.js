// Fetch on first use, in the graph editor: model choices that are not on disk yet are shown as
// "⤓ name (size, downloads on first run)". Only the label changes: the widget's value, and so the
// saved workflow, keeps the plain file name. The server describes such choices in the input's
// options under `model_fetch.missing` (see nodes.py `model_input`); a node-definition refresh
// (the R key) updates them.
import { app } from "../../scripts/app.js";

const missingByInput = new Map(); // "NodeType/input" -> {name: {label, size, state, done}}

function remember(nodeData) {
  for (const group of ["required", "optional"]) {
    for (const [input, spec] of Object.entries(nodeData?.input?.[group] ?? {})) {
      const info = Array.isArray(spec) ? spec[1]?.model_fetch : undefined;
      if (info) missingByInput.set(`${nodeData.name}/${input}`, info.missing ?? {});
    }
  }
}

app.registerExtension({
  name: "wan_serverless.model_fetch",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    remember(nodeData);
  },
  nodeCreated(node) {
    for (const widget of node.widgets ?? []) {
      const key = `${node.comfyClass}/${widget.name}`;
      if (!missingByInput.has(key) || !widget.options) continue;
      widget.options.getOptionLabel = (value) => {
        if (value === null || value === undefined) return "";
        const entry = missingByInput.get(key)?.[value];
        return entry?.label ?? String(value);
      };
    }
  },
});
