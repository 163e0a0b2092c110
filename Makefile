# The README's two commands: `make demo` (set up, then run the main job on the embedded default
# data) and `make test` (set up, then run the tests). Both need Python 3.11+, make and a running
# Docker engine; the base image is made with debootstrap and fakeroot, the host's or Debian's
# packages that the harness fetches itself (apt-get download): no root needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup test demo bench clean

$(STAMP): pyproject.toml
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
