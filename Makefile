# pfgm-lite: one-command setup, lab and tests.
#   make lab     start JupyterLab on notebooks/ (creates .venv on first use)
#   make test    unit tests and notebooks (quick mode), one pytest run
#   make test-browser  the widgets in a real JupyterLab, in headless Chromium (tests/browser)
# See README.md for the rest.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BROWSER_STAMP := $(VENV)/.installed-browser
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
# Debian's Chromium for `make test-browser` (.ci/run installs it); Playwright never downloads a browser.
CHROMIUM ?= /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

# Extra arguments for `make lab`, e.g. LAB_ARGS="--no-browser --port=8899".
LAB_ARGS ?=
# Extra arguments for pytest, e.g. PYTEST_ARGS="-x -k physics".
PYTEST_ARGS ?=
# Notebooks for `make notebooks` / `make quick`; NB=notebooks/03_x.ipynb runs one.
NB ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
NBVAL      := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
NBCONVERT  := $(BIN)/jupyter nbconvert --to notebook --execute \
              --ExecutePreprocessor.kernel_name=python3 \
              --ExecutePreprocessor.timeout=1800 \
              --ExecutePreprocessor.record_timing=False

.PHONY: all install lab test unit lint nbval notebooks quick student test-browser clean distclean

all: test

install: $(STAMP) $(LAB_OVERRIDES)

# Reinstall only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[lab,test]'
	touch $@

# The project's JupyterLab settings (no news pop-up), where JupyterLab reads default overrides:
# <sys-prefix>/share/jupyter/lab/settings/overrides.json.
$(LAB_OVERRIDES): lab-settings/overrides.json | $(STAMP)
	mkdir -p $(@D)
	cp $< $@

lab: $(STAMP) $(LAB_OVERRIDES)
	$(BIN)/jupyter lab notebooks/ $(ALLOW_ROOT) $(LAB_ARGS)

test: $(STAMP)
	PFGM_LITE_QUICK=1 $(BIN)/python -m pytest tests notebooks --ignore=tests/browser $(NBVAL) --durations=10 $(PYTEST_ARGS)

unit: $(STAMP)
	PFGM_LITE_QUICK=1 $(BIN)/python -m pytest tests --ignore=tests/browser $(PYTEST_ARGS)

# ruff over the package, tests, benchmarks and notebooks (make test runs it too: tests/test_lint.py)
lint: $(STAMP)
	$(BIN)/python -m ruff check pfgm_lite tests benchmarks notebooks conftest.py

nbval: $(STAMP)
	PFGM_LITE_QUICK=1 $(BIN)/python -m pytest notebooks $(NBVAL) $(PYTEST_ARGS)

# Full mode, outputs saved in place (these are the outputs nbval compares against).
notebooks: $(STAMP)
	@set -e; for nb in $(NB); do \
	  echo "== $$nb (full)"; \
	  env -u CI PFGM_LITE_QUICK=0 $(NBCONVERT) --inplace "$$nb"; \
	done

# Quick mode, nothing saved: a smoke run of every notebook.
quick: $(STAMP)
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for nb in $(NB); do \
	  echo "== $$nb (quick)"; \
	  PFGM_LITE_QUICK=1 $(NBCONVERT) --output-dir "$$tmp" "$$nb"; \
	done

# The student edition: solutions replaced by stubs, written to student/ (git-ignored). See README.
student: $(STAMP)
	$(BIN)/python -m pfgm_lite.teaching.student --source notebooks --out student

# The widgets in a real JupyterLab: tests/browser (not part of `make test`). Installs the `browser`
# extra (Playwright) once; Chromium is Debian's (`apt-get install chromium`, see .ci/run).
$(BROWSER_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -e '.[browser]'
	touch $@

test-browser: $(BROWSER_STAMP) $(LAB_OVERRIDES)
	@test -x "$(CHROMIUM)" || { echo "make test-browser: no Chromium at $(CHROMIUM); install Debian's:" \
	  "apt-get update && apt-get install -y chromium (or pass CHROMIUM=/path/to/chromium)" >&2; exit 1; }
	PFGM_LITE_QUICK=1 PFGM_LITE_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest tests/browser --durations=5 $(PYTEST_ARGS)

clean:
	find . -path ./$(VENV) -prune -o \
	  \( -name __pycache__ -o -name .ipynb_checkpoints -o -name .pytest_cache \) \
	  -type d -print -exec rm -rf {} +
	rm -rf build dist *.egg-info .coverage htmlcov

distclean: clean
	rm -rf $(VENV)
