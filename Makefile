# Every target bootstraps its own virtual environment (.venv) with pinned versions.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast test-heavy latency lint bench golden golden-update clean

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
	$(PY) -m pytest -m "not slow and not heavy"

## Runs of many minutes (the verbatim demo walkthrough, ~15-20 min on 2 cores).
test-heavy: $(STAMP)
	$(PY) -m pytest -m heavy

## The README's main job: the latency benchmark on an embedded default (no data, random weights).
## Keeps its JSON and Markdown records under results/ (git-ignored), one pair per run, and says
## where. A quick answer: make latency LATENCY_ARGS="--variant fcn8s --backend torch".
LATENCY_ARGS ?=
latency: $(STAMP)
	@t=$$(date -u +%Y%m%dT%H%M%SZ); $(PY) cli.py latency --output results/latency-$$t.json \
		--output results/latency-$$t.md $(LATENCY_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache

## pytest-benchmark suite (not part of `make test`).
bench: $(STAMP)
	$(PY) -m pytest benchmarks/ --benchmark-only

## Golden suite (docs/ci.md): every variant x backend on generated data vs
## reference_results/ci/golden.json; GitHub-markdown tables + backend parity; exit 1 on a regression.
golden: $(STAMP)
	$(PY) cli.py golden --format github

## Accept an intended change of the golden outputs (then commit reference_results/ci/golden.json).
golden-update: $(STAMP)
	$(PY) cli.py golden --update

clean:
	rm -rf $(VENV) .benchmarks .pytest_cache .ruff_cache *.egg-info
