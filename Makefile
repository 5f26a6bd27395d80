# Two set-up commands for a fresh machine: `make test` (and, with the app, `make app`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-fast lint format clean

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	# torchvision (for timm, test-only) without its dependencies, so that it cannot pull another torch
	$(PY) -m pip install --quiet --no-deps $$(grep -E '^torchvision==' requirements-test.txt)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

test: $(STAMP)  ## the whole suite: slow, timm, gpu and browser tests run where the machine allows
	$(PY) -m pytest

test-fast: $(STAMP)  ## skip the slow tests
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
