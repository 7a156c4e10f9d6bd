# Two commands for a newcomer: `make demo` (the main job on tiny weights) and `make test`.
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test test-fast bench realsize reliability clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

bench: setup
	$(PY) -m bench

# Full-size stand-ins (~28 GB, generated under .cache/realsize, deleted afterwards) through the worker on CPU.
realsize: setup
	$(PY) -m bench.realsize

reliability: setup
	RELIABILITY_REPORT=docs/reliability.md $(PY) -m pytest -m slow tests/reliability

clean:
	rm -rf .demo .cache .pytest_cache
