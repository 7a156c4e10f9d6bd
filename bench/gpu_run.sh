#!/usr/bin/env bash
# The GPU benchmark in one command on the borrowed GPU machine (no network, Python 3.12 + torch there):
# installs the kit's wheels with --no-index, unpacks ComfyUI, the project and city96's pack, generates
# the full-size stand-ins, then runs the variants in priority order while the time budget holds,
# writing the figures to $OUT after each one (docs/benchmarks.md, "GPU run in one window").
#
#   bash bench/gpu_run.sh [KIT]          KIT: the folder `make gpu-kit` built (default: .gpukit)
#
# Settings (environment): OUT (default ./gpu-out), GPU_RUN_BUDGET_S (seconds for the whole run, default
# 540), GPU_RUN_VARIANTS (default "ours city96 resident budget24 fp8"), GPU_RUN_SMOKE=1 (CPU, reduced
# dims: the rehearsal), PYTHON (default python3), GPU_RUN_WORK (scratch, default /tmp/gpukit-run).
set -uo pipefail
T0=$(date +%s)
here=$(cd "$(dirname "$0")/.." && pwd)
kit_arg=${1:-$here/.gpukit}
OUT=${OUT:-$PWD/gpu-out}
WORK=${GPU_RUN_WORK:-/tmp/gpukit-run}
BUDGET=${GPU_RUN_BUDGET_S:-540}
VARIANTS=${GPU_RUN_VARIANTS:-ours city96 resident budget24 fp8}
PY=${PYTHON:-python3}
SMOKE=()
[ "${GPU_RUN_SMOKE:-0}" = 1 ] && SMOKE=(--smoke)
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_run.log") 2>&1

elapsed() { echo $(( $(date +%s) - T0 )); }
phase() { printf '%-34s %5ss   (at %ss)\n' "$1" "$2" "$(elapsed)" | tee -a "$OUT/phases.txt"; }
free_gib() { df -P --block-size=1G "$WORK" | awk 'NR==2 {print $4}'; }
die() { echo "gpu_run: $*" >&2; phase "stopped: $*" 0; exit 1; }

[ -f "$kit_arg/kit.json" ] || die "no kit at $kit_arg (kit.json missing): build it with \`make gpu-kit\`"
KIT=$(cd "$kit_arg" && pwd)

# 1. What the figures were measured on.
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"; echo "kernel: $(uname -r)"; echo "cores: $(nproc)"
  free -g | sed -n 2p | awk '{print "memory: " $2 " GiB"}'; df -h "$(dirname "$WORK")" | tail -1 | awk '{print "disk free: " $4}'
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /'
    nvidia-smi | grep -o 'CUDA Version: [0-9.]*' | sed 's/^/driver /'
  else
    echo "gpu: none (nvidia-smi not found)"
  fi
  "$PY" -c 'import sys, torch; print("python:", sys.version.split()[0]); print("torch:", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
  sed -n 's/^  "\(python_version\|comfyui_version\|project\|city96_commit\|total_bytes\)": \(.*\),$/kit \1: \2/p' "$KIT/kit.json"
} > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

# 2. The wheels, offline, into a scratch site folder (the machine's own packages stay as they are).
want=$(sed -n 's/^  "python_version": "\(.*\)",$/\1/p' "$KIT/kit.json")
have=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$want" = "$have" ] || die "the kit holds wheels for Python $want, $PY is $have: build it with --python-version $have"
t=$(date +%s)
rm -rf "$WORK"
mkdir -p "$WORK/frontend" || die "cannot create $WORK"
"$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
  --target "$WORK/site" "$KIT"/wheels/*.whl || die "pip install --no-index of the kit's wheels failed"
phase "install wheels (--no-index)" $(( $(date +%s) - t ))

# 3. ComfyUI 0.8.0, the project, city96's pack.
t=$(date +%s)
for a in comfyui project ComfyUI-GGUF; do
  [ -f "$KIT/$a.tar.gz" ] && { tar -xzf "$KIT/$a.tar.gz" -C "$WORK" || die "cannot unpack $a.tar.gz"; }
done
# the pack imports model_fetch as an installed package (its model-fetch wheel is built from these files)
ln -sfn "$WORK/project/model_fetch" "$WORK/site/model_fetch" || die "cannot install model_fetch into $WORK/site"
phase "unpack ComfyUI, project, city96" $(( $(date +%s) - t ))
export PYTHONPATH="$WORK/site" COMFYUI_DIR="$WORK/comfyui" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cd "$WORK/project" || die "no project in the kit"
BENCH=("$PY" -m bench.gpu "${SMOKE[@]}" --results "$OUT/gpu.json" --out "$OUT/gpu.md"
       "--comfy-arg=--front-end-root=$WORK/frontend")
[ -d "$WORK/ComfyUI-GGUF" ] && BENCH+=(--city96-dir "$WORK/ComfyUI-GGUF")

# 4. The stand-ins (fp8 ones only when that variant's turn comes).
read -r -a gguf_variants <<< "${VARIANTS//fp8/}"
[ ${#gguf_variants[@]} -gt 0 ] || gguf_variants=(fp8)  # fp8 alone: its stand-ins, and the shared ones
t=$(date +%s)
"$PY" -m bench.gpu "${SMOKE[@]}" --prepare-only --variants "${gguf_variants[@]}" || die "generating the stand-ins failed"
gen=$(( $(date +%s) - t ))
phase "generate stand-ins" $gen

# 5. The variants, in priority order, while the budget holds; figures land in $OUT after each.
last=0
weights="$WORK/project/.cache/gpu/weights"
[ ${#SMOKE[@]} -gt 0 ] && weights="$WORK/project/.cache/gpu-smoke/weights"
for v in $VARIANTS; do
  left=$(( BUDGET - $(elapsed) - 15 ))
  need=$(( last + last / 10 ))
  [ "$v" = fp8 ] && need=$(( need + gen * 12 / 10 ))  # its own stand-ins are generated first
  if [ "$left" -lt "$need" ] || [ "$left" -lt 30 ]; then
    "${BENCH[@]}" --variants "$v" --skip "skipped: time (${left}s left of the ${BUDGET}s budget, ~${need}s needed)" >/dev/null
    phase "variant $v: skipped (time)" 0
    continue
  fi
  if [ "$v" = fp8 ] && [ ${#SMOKE[@]} -eq 0 ] && [ "$(free_gib)" -lt 32 ]; then
    echo "fp8: under 32 GiB free; removing the GGUF UNET stand-ins, which fp8 does not use"
    rm -f "$weights"/*.gguf
    if [ "$(free_gib)" -lt 32 ]; then
      "${BENCH[@]}" --variants "$v" --skip "skipped: disk (fp8 stand-ins need ~30 GiB)" >/dev/null
      phase "variant $v: skipped (disk)" 0
      continue
    fi
  fi
  t=$(date +%s)
  timeout -k 10 "$left" "${BENCH[@]}" --variants "$v" --deadline-s $(( left - 10 ))
  rc=$?
  last=$(( $(date +%s) - t ))
  phase "variant $v (exit $rc)" $last
  log="$WORK/project/.cache/gpu${SMOKE:+-smoke}/run/$v/comfyui.log"
  [ -f "$log" ] && { echo "== $v (exit $rc)"; tail -n 40 "$log"; } >> "$OUT/comfyui_tails.log"
done

phase "total" "$(elapsed)"
[ -f "$OUT/gpu.md" ] && cat "$OUT/gpu.md"
[ -f "$OUT/gpu.json" ] || exit 1
