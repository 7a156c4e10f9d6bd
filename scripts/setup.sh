#!/usr/bin/env bash
# Create .venv with the pinned dependencies (requirements/lock.txt) and locate ComfyUI 0.8.0.
# Idempotent: does nothing when the lock and pyproject.toml have not changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
UV_VERSION=0.13.9
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "!!! Python 3.11+ is required (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }

want=$(cat requirements/lock.txt pyproject.toml scripts/setup.sh | sha256sum | cut -c1-64)
stamp=.venv/.setup-done
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  start=$(date +%s)
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  # uv installs the lock in parallel and ignores machine-wide pip find-links (which may hold a
  # CPU-only torch that no torchvision matches).
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  .venv/bin/uv pip install --quiet --python .venv/bin/python -r requirements/lock.txt
  # compat: a plain path .pth (setuptools' default import-hook finder adds ~15 ms to every start)
  .venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps --config-settings editable_mode=compat -e .
  echo "$want" > "$stamp"
  echo "environment ready in $(( $(date +%s) - start ))s: .venv"
fi

# The editor test drives Debian's chromium through Playwright (no browser download): install it
# when missing and apt-get can (root or passwordless sudo); otherwise say how.
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if command -v apt-get >/dev/null && { [ -z "$sudo" ] || sudo -n true 2>/dev/null; }; then
    echo "installing chromium (Debian package) for the editor test" >&2
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  else
    echo "!!! $CHROMIUM is missing: install Debian's chromium (apt-get install chromium) for the editor test" >&2
  fi
fi

# ComfyUI: $COMFYUI_DIR, ./.comfyui or /comfyui, else a clone of tag v0.8.0 where the network allows.
# Missing ComfyUI is not fatal here: the tests that need it are skipped with one loud line.
.venv/bin/python -m worker.comfyui_home >/dev/null || true
