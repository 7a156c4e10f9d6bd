#!/usr/bin/env bash
# Start the worker: check storage (warn, don't die), run the worker
# (which starts and supervises ComfyUI). Used as the image's CMD and locally.
#   scripts/start.sh                 # RunPod serverless loop
#   scripts/start.sh --serve         # local API server (POST http://localhost:8000/runsync)
#   SERVE_API_LOCALLY=true scripts/start.sh   # the same, as worker-comfyui's image is told
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$here/.venv/bin/python" ] && [ -z "${VIRTUAL_ENV:-}" ]; then
  PATH="$here/.venv/bin:$PATH"   # local use: the project's environment
fi

# Caches go to the network volume when one is mounted (the container disk is small and ephemeral).
if [ -d /runpod-volume ]; then
  export HF_HOME="${HF_HOME:-/runpod-volume/.cache/huggingface}"
  export XDG_CACHE_HOME="${XDG_CACHE_HOME:-/runpod-volume/.cache}"
  export UV_CACHE_DIR="${UV_CACHE_DIR:-/runpod-volume/.cache/uv}"
fi

base="${WORKER_COMFY_BASE_DIR:-/tmp/comfyui-worker}"
mkdir -p "$base"

if ! model-fetch doctor; then
  echo "start.sh: model-fetch doctor reported problems (see above); starting anyway" >&2
fi

# worker-comfyui's switch for its local API server (http://localhost:8000/runsync, /docs).
case "${SERVE_API_LOCALLY:-}" in
  1|[Tt][Rr][Uu][Ee]|[Yy][Ee][Ss]|[Oo][Nn])
    case " $* " in *" --serve "*) ;; *) set -- --serve "$@" ;; esac ;;
esac

exec python -m worker "$@"
