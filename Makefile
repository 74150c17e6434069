# pfgm-lite: one-command setup, lab and tests.
#   make lab     start JupyterLab on notebooks/ (creates .venv on first use)
#   make test    unit tests and notebooks (quick mode), one pytest run
# See README.md for the rest.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

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

.PHONY: all install lab test unit nbval notebooks quick clean distclean

all: test

install: $(STAMP)

# Reinstall only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[lab,test]'
	touch $@

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(ALLOW_ROOT) $(LAB_ARGS)

test: $(STAMP)
	PFGM_LITE_QUICK=1 $(BIN)/python -m pytest tests notebooks $(NBVAL) --durations=10 $(PYTEST_ARGS)

unit: $(STAMP)
	PFGM_LITE_QUICK=1 $(BIN)/python -m pytest tests $(PYTEST_ARGS)

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

clean:
	find . -path ./$(VENV) -prune -o \
	  \( -name __pycache__ -o -name .ipynb_checkpoints -o -name .pytest_cache \) \
	  -type d -print -exec rm -rf {} +
	rm -rf build dist *.egg-info .coverage htmlcov

distclean: clean
	rm -rf $(VENV)
