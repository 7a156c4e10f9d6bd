# syntax=docker/dockerfile:1.7
# WAN 2.2 I2V serverless worker: ComfyUI v0.8.0 + our node pack + worker + model-fetch.
# Models are not baked by default: they are fetched on the first request onto the network volume.
#   docker build -t wan-serverless .
#   docker build --build-arg BAKE_MODELS=1 --secret id=hf_token,env=HF_TOKEN -t wan-serverless:baked .

# torch 2.9.1's PyPI wheels are built for CUDA 12.8 (NVIDIA driver >= 570) and bring their own CUDA
# runtime libraries (nvidia-* packages), so the CUDA 12.8 "base" flavour is enough; the "runtime"
# flavour would add ~2.5 GB of duplicate libraries.
# Every network source is a build arg, so a machine without registry access can pass local ones
# (`make image`, docs/deploy.md): BASE_IMAGE, UV_IMAGE, COMFYUI_REPO.
ARG BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9
FROM ${UV_IMAGE} AS uv

FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_COMPILE_BYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# System packages: git (ComfyUI clone), ffmpeg (video encoding), GL/glib for OpenCV-style deps.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git ffmpeg libgl1 libglib2.0-0 curl \
    && rm -rf /var/lib/apt/lists/*

# uv (pinned) installs Python 3.11 and the locked dependencies in parallel.
COPY --from=uv /uv /usr/local/bin/uv
RUN uv venv --python 3.11 /opt/venv

# Dependencies: torch 2.9.1 + torchvision 0.24.1 + torchaudio 2.9.1 (pinned together), ComfyUI's requirements and
# ours, from requirements/runtime.lock.txt (no test tools). Rebuilt only when the lock changes.
COPY requirements/runtime.lock.txt /tmp/lock.txt
RUN --mount=type=cache,target=/root/.cache/uv uv pip install --python /opt/venv/bin/python -r /tmp/lock.txt

# ComfyUI at the pinned tag (17 MB: after the dependencies, so a tag change does not reinstall them).
ARG COMFYUI_VERSION=v0.8.0
ARG COMFYUI_REPO=https://github.com/comfyanonymous/ComfyUI
RUN git clone --depth 1 --branch "${COMFYUI_VERSION}" "${COMFYUI_REPO}" /comfyui

# Our code last: a code change rebuilds only the layers below (seconds).
WORKDIR /app
COPY pyproject.toml README.md ./
COPY model_fetch ./model_fetch
COPY worker ./worker
COPY custom_nodes ./custom_nodes
COPY workflows ./workflows
COPY scripts/start.sh ./scripts/start.sh
RUN uv pip install --python /opt/venv/bin/python --no-deps --config-settings editable_mode=compat -e . \
    && ln -s /app/custom_nodes/wan_serverless /comfyui/custom_nodes/wan_serverless

ENV COMFYUI_DIR=/comfyui \
    MODEL_FETCH_VOLUME_DIR=/runpod-volume/models \
    MODEL_FETCH_LOCAL_DIR=/models \
    WORKER_COMFY_BASE_DIR=/comfyui \
    WORKER_COMFY_PORT=8188 \
    WORKER_SERVE_HOST=0.0.0.0 \
    WORKER_EXPECT_GPU=1

# Optional: bake the model set into the image (/models), through the same fetcher.
# BAKE_MODELS=1 pulls the built-in WAN 2.2 manifest; BAKE_MANIFEST=path also pulls a manifest from the context
# (a pull with --manifest covers that manifest's files only, see docs/model-fetch.md).
ARG BAKE_MODELS=0
ARG BAKE_MANIFEST=
RUN --mount=type=secret,id=hf_token,required=false \
    HF_TOKEN="$(cat /run/secrets/hf_token 2>/dev/null || true)" && export HF_TOKEN MODEL_FETCH_MODELS_DIR=/models \
    && if [ "${BAKE_MODELS}" = "1" ]; then model-fetch pull && model-fetch verify; fi \
    && if [ -n "${BAKE_MANIFEST}" ]; then \
      model-fetch pull --manifest "/app/${BAKE_MANIFEST}" && model-fetch verify --manifest "/app/${BAKE_MANIFEST}"; \
    fi

EXPOSE 8000
CMD ["/app/scripts/start.sh"]
