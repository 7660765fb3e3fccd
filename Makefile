# Every target bootstraps its own virtual environment (.venv) with pinned versions.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast latency lint bench golden clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

## The README's test command: lint, then the whole test suite.
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

## Unit tests only (skips tests marked slow).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

## The README's main job: the latency benchmark on an embedded default (no data, random weights).
latency: $(STAMP)
	$(PY) cli.py latency

lint: $(STAMP)
	$(PY) -m ruff check .

## pytest-benchmark suite (not part of `make test`).
bench: $(STAMP)
	$(PY) -m pytest benchmarks/ --benchmark-only

clean:
	rm -rf $(VENV) .benchmarks .pytest_cache .ruff_cache *.egg-info
