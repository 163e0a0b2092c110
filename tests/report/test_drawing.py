"""Figures and pages drawn by forked workers: the same bytes as drawn in one process, errors
reach the caller, and no fork while another thread runs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness.report.drawing import WORKERS_ENV, Drawer, available_workers
from tests.report.conftest import REPO_ROOT, copy_fixture


def _boom(text: str) -> str:
    raise ValueError(f"cannot draw {text}")


def _pid(_: int) -> int:
    return os.getpid()


# Run in a fresh interpreter: a thread left running by an earlier test in this process (pytest
# runs hundreds) would, rightly, keep the Drawer from forking.
_SAME_FILES = """
import os, sys
from dataclasses import replace
from pathlib import Path
from harness.ranking import FLARE22_RANKING
from harness.report import load_report_inputs
from harness.report.builder import render_report_files
from harness.report.drawing import WORKERS_ENV, Drawer
inputs = load_report_inputs(Path(sys.argv[1]))
os.environ[WORKERS_ENV] = "1"
serial = render_report_files(inputs, config=replace(FLARE22_RANKING, n_draws=50))
os.environ[WORKERS_ENV] = "3"
with Drawer() as drawer:
    assert drawer.parallel, "no fork in a fresh interpreter"
parallel = render_report_files(inputs, config=replace(FLARE22_RANKING, n_draws=50))
assert sorted(parallel) == sorted(serial) and len(serial) > 2, sorted(serial)
print("differ:", [name for name in serial if serial[name] != parallel[name]])
"""

# Only the Drawer is imported (not this module, which imports pytest and the whole report): the
# forked workers find _boom and _pid in the script's __main__, as they find any caller's function.
_ERRORS = """
import os
from harness.report.drawing import Drawer
def _boom(text):
    raise ValueError(f"cannot draw {text}")
def _pid(_):
    return os.getpid()
with Drawer(workers=2) as drawer:
    assert drawer.parallel
    pids = {drawer.draw(_pid, k).result() for k in range(4)}
    failed = drawer.draw(_boom, "the map")
    try:
        failed.result()
    except ValueError as exc:
        print("raised:", exc)
print("elsewhere:", os.getpid() not in pids)
"""


def _fresh(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in os.environ.items() if k != WORKERS_ENV})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_workers_give_the_same_files_as_one_process(tmp_path: Path) -> None:
    out = _fresh(_SAME_FILES, str(copy_fixture(tmp_path / "results")))
    assert "differ: []" in out


def test_a_workers_error_reaches_the_caller() -> None:
    out = _fresh(_ERRORS)
    assert "raised: cannot draw the map" in out and "elsewhere: True" in out


def test_no_fork_while_another_thread_runs() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with Drawer(workers=4) as drawer:
            assert not drawer.parallel
            assert drawer.draw(_pid, 0).result() == os.getpid()
            with pytest.raises(ValueError, match="cannot draw x"):
                drawer.draw(_boom, "x").result()
    finally:
        stop.set()
        other.join()


def test_workers_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKERS_ENV, "1")
    assert available_workers() == 1 and not Drawer().parallel
    monkeypatch.setenv(WORKERS_ENV, "zero")  # malformed: the default
    assert 1 <= available_workers() <= min(4, len(os.sched_getaffinity(0)))
