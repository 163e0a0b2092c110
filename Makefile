# The README's two commands: `make demo` (set up, then run the main job on the embedded default
# data) and `make test` (set up, then run the tests). Both need Python 3.11+, make and a running
# Docker engine; the base image is made with debootstrap and fakeroot, the host's or Debian's
# packages that the harness fetches itself (apt-get download): no root needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.test-stamp
RESULTS ?= results

.PHONY: setup lint test test-fast demo bench clean

# The demo needs the harness and its dependencies only; the tests add their extras on top.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	-$(BIN)/python -m pip uninstall --quiet --yes harness 2>/dev/null  # the old distribution name (or PyPI's other `harness`)
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps panoptica==2.1.7  # the panoptic oracle; its numpy<2.3 pin would move ours
	touch $(TEST_STAMP)

setup: $(TEST_STAMP)

# ruff and mypy (configured in pyproject.toml), before the tests of `make test` (CI); not in test-fast.
lint: $(TEST_STAMP)
	$(BIN)/python -m ruff check -q harness tests benchmarks
	$(BIN)/python -m mypy

# pytest-xdist: one worker a logical core (TEST_JOBS=0: no workers, one process; or a number). Each test
# module runs on one worker (--dist loadscope): its module-scoped images, containers, phantom runs and
# Chromium are made once, and two modules run side by side.
TEST_JOBS ?= logical
XDIST := -n $(TEST_JOBS) --dist loadscope

test: $(TEST_STAMP) lint
	$(BIN)/python -m pytest -q $(XDIST)

# The fast tier: everything that needs neither Docker nor a browser nor a long wait (see README).
test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -q $(XDIST) -m "not docker and not browser and not slow"

demo: $(STAMP)
	$(BIN)/harness run algorithms --results $(RESULTS)

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) .cache
