# Two set-up commands for a fresh machine: `make app` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: app test test-fast system-packages lint format screenshots figures notebooks docs clean

$(STAMP): requirements.txt requirements-test.txt requirements-nodeps.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "the pinned requirements need Python 3.11 or newer: $(PYTHON) is " + sys.version.split()[0] + "; give another with PYTHON=python3.12 make ...")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	# torchvision (for timm, test-only) without its dependencies, so that it cannot pull another torch
	$(PY) -m pip install --quiet --no-deps $$(grep -E '^torchvision==' requirements-test.txt)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Debian/Ubuntu's chromium (browser tests, PNG export) and dataset-fashion-mnist (training, probes, studies):
# installed with apt-get where we may (root, or `sudo -n true`), else named in one line; the tests that need
# a missing one skip with that line, and the suite ends by counting them
system-packages:
	@$(PYTHON) scripts/system_packages.py install

app: system-packages $(STAMP)  ## serve the app at http://localhost:8501 on the built-in demo checkpoints (offline)
	$(PY) -m app.serve --server.port 8501 --server.address localhost

test: system-packages $(STAMP)  ## the whole suite: slow, timm, gpu and browser tests run where the machine allows
	$(PY) -m pytest

test-fast: system-packages $(STAMP)  ## skip the slow tests
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

screenshots: $(STAMP)  ## regenerate the README's screenshots from the running app
	$(PY) scripts/screenshots.py

figures: $(STAMP)  ## every measured figure of the README and docs/ from its results file (--check: compare)
	$(PY) scripts/docs_figures.py

notebooks: $(STAMP)  ## re-execute docs/notebooks and store their outputs, each figure also as PNG (needs chromium)
	$(PY) scripts/run_notebooks.py

docs: $(STAMP)  ## the static site in site/, offline: docs/*.md and the API and command-line reference (mkdocs.yml)
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
