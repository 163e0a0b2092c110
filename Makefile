# The README's two commands: `make demo` (set up, then run the main job on the embedded default
# data) and `make test` (set up, then run the tests). Both need Python 3.11+, make and a running
# Docker engine; the base image is made with debootstrap (installed here when run as root).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup test demo bench clean

# debootstrap makes the local base image of the algorithm containers (no registry needed).
SYSTEM_STAMP := $(VENV)/.system-stamp

$(SYSTEM_STAMP):
	@if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; \
	  else echo "note: install debootstrap (sudo apt-get install debootstrap) to build the base image"; fi; fi
	mkdir -p $(VENV) && touch $(SYSTEM_STAMP)

$(STAMP): pyproject.toml $(SYSTEM_STAMP)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	-$(BIN)/python -m pip uninstall --quiet --yes harness 2>/dev/null  # the old distribution name (or PyPI's other `harness`)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/harness run algorithms --results results

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) .cache
