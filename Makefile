# Thin wrapper: set-up, data, tests, book. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= cpu
CHAPTERS ?=
FASHION_DIR := /usr/share/datasets/fashion-mnist
MATHJAX_VERSION := 3.2.2
MATHJAX := book/_static/mathjax/tex-mml-chtml.js
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: setup data mathjax test unit smoke nbval book execute html offline bench clean help

help:
	@echo "make test   - set up, fetch data, unit tests, smoke-execute every chapter, nbval"
	@echo "make book   - set up, fetch data, execute chapters (PROFILE=$(PROFILE)), render HTML"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[book,test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

data:
	@if [ -f $(FASHION_DIR)/t10k-labels-idx1-ubyte.gz ]; then \
	  echo "Fashion-MNIST found in $(FASHION_DIR)"; \
	elif command -v apt-get >/dev/null; then \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "Fashion-MNIST missing: install Debian's dataset-fashion-mnist or set MCUTILS_DATA (see README)"; \
	fi

unit: setup data
	$(PY) -m pytest -q tests

# smoke and nbval use the fixed speed plan (no calibration), so nbval's re-run repeats
# the smoke run bit for bit; the runner runs chapters in single-thread workers, one per
# core, and nbval's kernels get the same single-thread environment
smoke: setup data
	MCUTILS_CALIBRATE=0 $(PY) -m mcutils.book execute --profile smoke --output build/smoke $(if $(CHAPTERS),--chapters $(CHAPTERS))

nbval: smoke
	MCUTILS_CALIBRATE=0 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider --nbval-lax build/smoke

test: unit smoke nbval

execute: setup data
	$(PY) -m mcutils.book execute --profile $(PROFILE) --output book/chapters $(if $(CHAPTERS),--chapters $(CHAPTERS))

# MathJax is served from the built site, so formulas render without a network: the
# npm registry's tarball of MathJax $(MATHJAX_VERSION), unpacked once into a git-ignored folder.
mathjax: $(MATHJAX)

$(MATHJAX):
	@command -v npm >/dev/null || { command -v apt-get >/dev/null && \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq npm; } || \
	  { echo "npm is needed once to fetch MathJax (apt-get install npm)"; exit 1; }
	@tmp=$$(mktemp -d) && \
	  npm pack --silent --pack-destination $$tmp mathjax@$(MATHJAX_VERSION) >/dev/null && \
	  tar xzf $$tmp/mathjax-$(MATHJAX_VERSION).tgz -C $$tmp && \
	  rm -rf book/_static/mathjax && mkdir -p book/_static && \
	  mv $$tmp/package/es5 book/_static/mathjax && \
	  cp $$tmp/package/LICENSE book/_static/mathjax/LICENSE && rm -rf $$tmp
	@echo "MathJax $(MATHJAX_VERSION) in book/_static/mathjax"

html: setup mathjax
	rm -rf _build/html
	$(PY) -m mcutils.book totals
	$(VENV)/bin/jupyter-book build . -W --keep-going
	$(PY) -m mcutils.book offline _build/html
	$(PY) -m mcutils.book pages _build/html
	@echo "Book: $(abspath _build/html/index.html)"

# fails if a built page loads a script (or style sheet) from the network
offline:
	$(PY) -m mcutils.book offline _build/html

# the HTML is rendered even when a chapter failed or an expected claim was not reproduced
# (the book shows the verdicts); make still exits non-zero afterwards
book:
	@$(MAKE) --no-print-directory execute; rc=$$?; \
	  $(MAKE) --no-print-directory html || exit 1; \
	  if [ $$rc -ne 0 ]; then echo "make book: the runner reported failures (above); the book was rendered anyway"; fi; \
	  exit $$rc

bench: setup data
	for b in benchmarks/*.py; do case $$b in *glue_diff.py|*book_workers.py) continue;; esac; $(PY) $$b || exit 1; done

clean:
	rm -rf _build build book/chapters book/_static/mathjax
