# Two set-up commands for a fresh machine: `make app` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: app test test-fast lint format screenshots clean

$(STAMP): requirements.txt requirements-test.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	# torchvision (for timm, test-only) without its dependencies, so that it cannot pull another torch
	$(PY) -m pip install --quiet --no-deps $$(grep -E '^torchvision==' requirements-test.txt)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

app: $(STAMP)  ## serve the app at http://localhost:8501 on the built-in demo checkpoints (offline)
	$(VENV)/bin/streamlit run app/main.py --server.port 8501 --server.address localhost

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

screenshots: $(STAMP)  ## regenerate the README's screenshots from the running app
	$(PY) scripts/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
