#!/usr/bin/env bash
# Build the worker image without a Docker engine or registry access (buildah, chroot isolation),
# from local stand-ins for the Dockerfile's three network sources. docs/deploy.md, "Building here".
#   scripts/image.sh build     # base (mmdebstrap) + uv (PyPI wheel) + ComfyUI (git daemon) -> image
#   scripts/image.sh size      # unpacked and gzip-compressed size of the built image
#   scripts/image.sh clean     # remove the image, its build cache and the storage
# Settings: IMAGE (tag), IMAGE_WORK (scratch dir), IMAGE_STORAGE (containers storage root).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/wan-serverless:local}
WORK=${IMAGE_WORK:-/var/tmp/wan-image}
STORAGE=${IMAGE_STORAGE:-/var/tmp/wan-image-storage}
BASE=localhost/wan-base:bookworm
UV_IMAGE=localhost/uv:0.13.9
UV_VERSION=0.13.9
COMFYUI_VERSION=v0.8.0
# One storage for buildah and podman; overlay (native or fuse-overlayfs) stores each layer once.
STORE=(--root "$STORAGE/root" --runroot "$STORAGE/run" --storage-driver overlay)
bah() { buildah "${STORE[@]}" "$@"; }

mkdir -p "$WORK"

# The base: Debian bookworm (Ubuntu's archive and NVIDIA's registry are out of reach here) with
# python3.11 for uv to find (uv would download its own from GitHub) and the machine's CA certificates
# with SSL_CERT_FILE/PIP_CERT, so downloads inside the build pass the TLS proxy. Never in the Dockerfile.
base_image() {
  if bah inspect --type image "$BASE" >/dev/null 2>&1; then return; fi
  # shellcheck disable=SC2016  # the hooks' "$1" (the new root) is expanded by mmdebstrap
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,python3 \
    --customize-hook='cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null || true' \
    --customize-hook='chroot "$1" update-ca-certificates' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$WORK/base.tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
  local ctr
  ctr=$(bah from scratch)
  bah add "$ctr" "$WORK/base.tar" /
  bah config --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    --env REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  bah commit --rm "$ctr" "$BASE" >/dev/null
  rm -f "$WORK/base.tar"
}

# uv: the same release as ghcr.io/astral-sh/uv, from its PyPI wheel (/uv and /uvx in an empty image).
uv_image() {
  if bah inspect --type image "$UV_IMAGE" >/dev/null 2>&1; then return; fi
  rm -rf "$WORK/uv" && mkdir -p "$WORK/uv"
  python3 -m pip download --quiet --no-deps --only-binary :all: --platform manylinux_2_17_x86_64 \
    --dest "$WORK/uv" "uv==$UV_VERSION"
  python3 -m zipfile -e "$WORK"/uv/uv-*.whl "$WORK/uv/x"
  local ctr
  ctr=$(bah from scratch)
  bah copy --chmod 0755 "$ctr" "$WORK"/uv/x/uv-*.data/scripts/uv "$WORK"/uv/x/uv-*.data/scripts/uvx /
  bah commit --rm "$ctr" "$UV_IMAGE" >/dev/null
}

# ComfyUI at the pinned tag, from /comfyui (an export without .git) as a git repository served by
# `git daemon` on loopback for the build's `git clone --depth 1 --branch v0.8.0`.
comfyui_repo() {
  local src=${COMFYUI_DIR:-/comfyui} repo="$WORK/git/ComfyUI"
  if ! git -C "$repo" rev-parse -q --verify "refs/tags/$COMFYUI_VERSION" >/dev/null 2>&1; then
    rm -rf "$repo" && mkdir -p "$repo"
    cp -a "$src/." "$repo/"
    git -C "$repo" init -q
    find "$repo" -name __pycache__ -prune -exec rm -rf {} +
    git -C "$repo" add --force -A  # also what ComfyUI's .gitignore hides but its repo tracks (custom_nodes/, models/)
    git -C "$repo" -c user.name=local -c user.email=local@localhost commit -q -m "ComfyUI $COMFYUI_VERSION (from $src)"
    git -C "$repo" tag "$COMFYUI_VERSION"
  fi
  GIT_PORT=${IMAGE_GIT_PORT:-19418}  # fixed: the URL is a build arg, part of the layer cache key
  git daemon --reuseaddr --export-all --listen=127.0.0.1 --port="$GIT_PORT" --base-path="$WORK/git" "$WORK/git" &
  GIT_PID=$!
  trap 'kill "$GIT_PID" 2>/dev/null || true' EXIT
  sleep 1
}

build() {
  base_image
  uv_image
  comfyui_repo
  local start
  start=$(date +%s)
  bah build --isolation chroot --network host --layers --force-rm \
    --build-arg BASE_IMAGE="$BASE" --build-arg UV_IMAGE="$UV_IMAGE" \
    --build-arg COMFYUI_REPO="git://127.0.0.1:$GIT_PORT/ComfyUI" \
    -t "$IMAGE" -f Dockerfile .
  echo "image: $IMAGE built in $(( $(date +%s) - start ))s (base and uv images excluded)"
}

size() {
  bah images --format '{{.Name}}:{{.Tag}} unpacked {{.Size}}' "$IMAGE"
  # Compressed as a registry stores it: each layer's files as a gzip'd tar (default level), streamed
  # (a `buildah push` to a directory would first write every layer uncompressed to /var/tmp).
  local dirs layer total=0 n start
  start=$(date +%s)
  dirs=$(podman "${STORE[@]}" image inspect --format '{{.GraphDriver.Data.UpperDir}}:{{.GraphDriver.Data.LowerDir}}' "$IMAGE")
  IFS=: read -ra layers <<<"$dirs"
  for layer in "${layers[@]}"; do
    n=$(tar -C "$layer" -cf - . | gzip -6 | wc -c)
    total=$((total + n))
  done
  echo "compressed (gzip -6 per layer, ${#layers[@]} layers): $((total / 1000000)) MB in $(( $(date +%s) - start ))s"
}

clean() {
  bah rm --all >/dev/null 2>&1 || true
  bah rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$STORAGE" "$WORK" /var/tmp/buildah-cache /var/tmp/buildah-cache-* 2>/dev/null || true
}

case "${1:-build}" in
  build) build ;;
  size) size ;;
  clean) clean ;;
  store) echo "${STORE[@]}" ;;
  *) echo "usage: $0 build|size|clean|store" >&2; exit 2 ;;
esac
