# The two commands a fresh machine needs: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# A CPU build of torch: pinned so pip takes the local CPU wheel instead of a CUDA build.
TORCH   ?= torch==2.13.0

.PHONY: setup test lint bench demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/pip install -q -e '.[dev]'
	# Debian's Chromium (browser tests) and FluidSynth (SoundFont rendering); tests skip without them.
	bash scripts/install-system-deps.sh $(VENV) || echo "no chromium/fluidsynth: their tests will be skipped"
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check src tests

test: setup lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/mambakit bench ssm --json out/bench/ssm.json
	$(BIN)/mambakit bench drums --json out/bench/drums.json
	$(BIN)/mambakit bench timbre --json out/bench/timbre.json
	$(BIN)/mambakit bench lm --weights fp32,bf16,int8 --json out/bench/lm.json
	$(BIN)/mambakit bench lm --batch 8 --json out/bench/lm_b8.json

MINUTES ?= 1
demo: setup
	$(BIN)/mambakit demo --out out/demo --minutes $(MINUTES)

clean:
	rm -rf out .pytest_cache .ruff_cache
