# syntax=docker/dockerfile:1.7
# WAN 2.2 I2V serverless worker: ComfyUI v0.8.0 + our node pack + worker + model-fetch.
# Models are not baked by default: they are fetched on the first request onto the network volume.
#   docker build -t wan-serverless .
#   docker build --build-arg BAKE_MODELS=1 --secret id=hf_token,env=HF_TOKEN -t wan-serverless:baked .

# torch's CUDA wheels bring their own CUDA runtime libraries (nvidia-* packages), so the CUDA
# "base" flavour is enough; the "runtime" flavour would add ~2.5 GB of duplicate libraries.
ARG BASE_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04
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
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
RUN uv venv --python 3.11 /opt/venv

# ComfyUI at the pinned tag.
ARG COMFYUI_VERSION=v0.8.0
RUN git clone --depth 1 --branch "${COMFYUI_VERSION}" https://github.com/comfyanonymous/ComfyUI /comfyui

# Dependencies: torch 2.13.0 + torchvision 0.28.0 (pinned together), ComfyUI's requirements and
# ours, from requirements/runtime.lock.txt (no test tools). Rebuilt only when the lock changes.
COPY requirements/runtime.lock.txt /tmp/lock.txt
RUN --mount=type=cache,target=/root/.cache/uv uv pip install --python /opt/venv/bin/python -r /tmp/lock.txt

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
    WORKER_COMFY_PORT=8188

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

EXPOSE 8188
CMD ["/app/scripts/start.sh"]
