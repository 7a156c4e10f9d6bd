# Two commands for a newcomer: `make demo` (the main job on tiny weights) and `make test`.
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test test-fast lint pack bench realsize coldstart gpu-kit reliability image image-test image-size image-clean clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

# The node pack as artists install it: dist/wan_serverless.zip (comfy node pack, validated) and the
# model-fetch wheel it requires (docs/editor.md, "Install into your ComfyUI").
pack: setup
	$(PY) scripts/pack.py

# The type checker and the linter alone (`make test` runs them too: tests/test_static.py).
lint: setup
	$(PY) -m mypy
	$(PY) -m ruff check .

bench: setup
	$(PY) -m bench

# Full-size stand-ins (~28 GB, generated under .cache/realsize, deleted afterwards) through the worker on CPU.
realsize: setup
	$(PY) -m bench.realsize

# The GPU run's kit (.gpukit, ignored, fails above 60 MiB): wheels the GPU machine lacks, ComfyUI 0.8.0, the
# project, city96's pack (CITY96_GGUF_GIT=/path/to/ComfyUI-GGUF.git). docs/benchmarks.md, "GPU run in one window".
gpu-kit: setup
	$(PY) -m bench.gpu_kit

# A cold start on a volume throttled to 200 MB/s (loop device + cgroup; root), WORKER_PRELOAD off vs cache.
coldstart: setup
	flock /tmp/heavy.lock $(PY) -m bench.coldstart

reliability: setup
	RELIABILITY_REPORT=docs/reliability.md $(PY) -m pytest -m slow tests/reliability

# The worker image, built here without a Docker engine (buildah; docs/deploy.md, "Building here").
IMAGE ?= localhost/wan-serverless:local
image:
	flock /tmp/heavy.lock env IMAGE=$(IMAGE) scripts/image.sh build

# A job inside the built image over runpod's local API (tiny weights, CPU).
image-test: setup
	flock /tmp/heavy.lock env WAN_IMAGE=$(IMAGE) $(PY) -m pytest -m image -p no:cacheprovider -s tests/test_image.py

# Its size, unpacked and compressed as a registry stores it (minutes: gzip of 9 GB).
image-size:
	flock /tmp/heavy.lock env IMAGE=$(IMAGE) scripts/image.sh size

image-clean:
	scripts/image.sh clean

clean:
	rm -rf .demo .cache .pytest_cache dist
